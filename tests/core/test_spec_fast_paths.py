"""The depth limit and the NUL rule, checked on any JSON: spec.py skips the walk over a body with fewer
brackets than the limit, and the NUL walk when the encoded message has no escaped NUL; neither shortcut may
change what is refused. The reference depth and NUL search here are written out plainly, by recursion."""

from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connector.core import spec

RECEIVED = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# Text that holds NUL, the six characters of its JSON escape, backslashes, brackets: what could fool a shortcut.
texts = st.lists(st.sampled_from(["a", "\x00", "\\", "u0000", "{", "[", '"', "é"]), max_size=6).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=20,
)


def depth(value: Any) -> int:
    children = list(value.values()) if isinstance(value, dict) else value if isinstance(value, list) else None
    if children is None:
        return 1
    return 1 + max((depth(child) for child in children), default=0)


def holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(holds_nul(key) or holds_nul(child) for key, child in value.items())
    if isinstance(value, list):
        return any(holds_nul(child) for child in value)
    return False


@given(document=json_values, limit=st.integers(1, 6))
def test_a_body_is_refused_exactly_when_it_is_nested_deeper_than_the_limit(document, limit):
    body = orjson.dumps(document)
    if depth(document) > limit:
        with pytest.raises(spec.SpecError, match=f"nested deeper than the limit of {limit} levels"):
            spec.parse_json(body, limit)
    else:
        assert spec.parse_json(body, limit) == document


@pytest.mark.parametrize("body", [b'"{{{{{{"', b'{"k": "[[[[[[["}', b'["{", "[", "{"]'])
def test_brackets_inside_strings_do_not_count_as_depth(body):
    assert spec.parse_json(body, 3) == orjson.loads(body)


@given(properties=st.dictionaries(texts, json_values, max_size=3))
def test_a_message_is_refused_exactly_when_a_key_or_value_holds_a_nul(properties):
    message = {"type": "track", "userId": "u1", "event": "E", "properties": properties}
    if holds_nul(properties):
        with pytest.raises(spec.SpecError, match="NUL character"):
            spec.normalise_message(message, RECEIVED)
    else:
        assert spec.normalise_message(message, RECEIVED)["properties"] == properties


def test_the_text_of_a_nul_escape_is_kept_as_text():
    message = {"type": "track", "userId": "u1", "event": "E", "properties": {"note": "\\u0000"}}
    assert spec.normalise_message(message, RECEIVED)["properties"] == {"note": "\\u0000"}
