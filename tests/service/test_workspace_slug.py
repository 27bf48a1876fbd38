"""The slug of the HTTP API source the workspace setup creates, from any `connector_name`."""

import re

from hypothesis import given
from hypothesis import strategies as st

from connector.service.workspace import slug_of

# Segment's source slugs: lower-case ASCII letters and digits, words joined by single hyphens.
SEGMENT_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")


@given(st.text(min_size=1, max_size=200))
def test_any_connector_name_gives_a_slug_segment_accepts(name):
    assert SEGMENT_SLUG.fullmatch(slug_of(name))


def test_the_default_name_is_its_own_slug_and_others_read_as_written():
    assert slug_of("hull-segment-connector") == "hull-segment-connector"
    assert slug_of("Acme's Connector (EU)") == "acme-s-connector-eu"
    assert slug_of("Über Connector") == "uber-connector"
