"""The Public API client (connector/service/public_api.py) against the fake Public API, without a database: the
regions' addresses and how Segment's throttling is waited out."""

import pytest

from connector.service.public_api import PublicApi, PublicApiError, base_url
from tests.support.fake_public_api import OWNER_TOKEN, FakePublicApi


def test_each_region_has_segments_address_and_the_environment_overrides_both():
    assert base_url("us", None) == "https://api.segmentapis.com"
    assert base_url("eu", None) == "https://eu1.api.segmentapis.com"
    assert base_url("eu", "http://127.0.0.1:9999/") == "http://127.0.0.1:9999"


class Sleeps:
    """What the client waited, instead of waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


async def test_throttling_as_segment_answers_it_is_waited_out_for_the_time_its_body_names(public_api: FakePublicApi):
    """Segment's 429 has no Retry-After: the wait is the error's `data.msBeforeNext` (docs.segmentapis.com)."""
    public_api.fail(429, count=2, prefix="GET /", ms_before_next=2500)
    sleeps = Sleeps()
    async with PublicApi(public_api.url, OWNER_TOKEN, sleep=sleeps) as api:
        assert (await api.workspace())["name"] == "Acme"
    assert sleeps.seconds == [2.5, 2.5]


async def test_a_retry_after_header_wins_over_the_body(public_api: FakePublicApi):
    public_api.fail(429, count=1, prefix="GET /", retry_after=3, ms_before_next=9000)
    sleeps = Sleeps()
    async with PublicApi(public_api.url, OWNER_TOKEN, sleep=sleeps) as api:
        await api.workspace()
    assert sleeps.seconds == [3.0]


async def test_a_throttle_longer_than_a_request_should_wait_is_segment_unavailable_with_the_wait_in_words(
    public_api: FakePublicApi,
):
    """A minute's window (Segment's own example is 57,647 ms) is not sat through inside an admin request."""
    public_api.fail(429, count=5, prefix="GET /", ms_before_next=57_647)
    sleeps = Sleeps()
    async with PublicApi(public_api.url, OWNER_TOKEN, sleep=sleeps) as api:
        with pytest.raises(PublicApiError) as refused:
            await api.workspace()
    assert sleeps.seconds == []
    assert refused.value.kind == "unavailable" and refused.value.status == 429
    assert "try again in 58 s" in refused.value.message
