"""Segment's size limits, measured on the wire: non-ASCII profiles near both limits all arrive.

The fake Segment refuses a request body over 500,000 bytes and a message over 32,768
bytes, as Segment does; segment-analytics-python's transport writes `json.dumps`
output, where every non-ASCII character is a 6-byte escape (an emoji 12 bytes).
"""

from typing import Any

from connector.core.models import DeadLetter
from tests.support.app import basic_auth, drain
from tests.support.delivery import rows
from tests.support.fake_segment import configure, send_all

NOVEL = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。🐈"  # 33 characters, one emoji
SEGMENT_REQUEST_LIMIT = 500_000
SEGMENT_MESSAGE_LIMIT = 32_768


def bio(characters: int) -> str:
    return (NOVEL * (characters // len(NOVEL) + 1))[:characters]


async def post_users(client, users: list[dict[str, Any]]) -> None:
    for start in range(0, len(users), 10):
        response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": users[start : start + 10]})
        assert response.status_code == 200 and "rejected" not in response.json(), response.text


async def test_non_ascii_profiles_near_both_limits_are_all_delivered_within_them(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["name", "bio"])
    # About 10 KB of UTF-8 each, about 20 KB as the transport writes it: 200 of them are ~4 MB on the wire.
    users = [
        {"type": "identify", "userId": f"u-{n}", "traits": {"name": "Zoë Ünal", "bio": bio(3_400)}} for n in range(200)
    ]
    # Just under the message limit on the wire (each character here is a 6-byte escape)...
    users += [
        {"type": "identify", "userId": f"near-{n}", "traits": {"name": "Zoë Ünal", "bio": "ü" * (5_395 + n)}}
        for n in range(10)
    ]
    # ... and one just over it: half that size as compact UTF-8, so the inbound takes it.
    users.append({"type": "identify", "userId": "too-big", "traits": {"name": "Zoë", "bio": "ü" * 5_600}})
    await post_users(client, users)
    await drain(runtime)

    await send_all(runtime)

    delivered = {message["userId"] for message in segment_api.messages}
    assert delivered == {user["userId"] for user in users} - {"too-big"}
    assert len(segment_api.messages) == len(users) - 1
    assert max(segment_api.body_sizes) <= SEGMENT_REQUEST_LIMIT
    assert len(segment_api.body_sizes) == len(segment_api.bodies)  # no request refused
    assert max(segment_api.message_sizes) <= SEGMENT_MESSAGE_LIMIT
    assert max(segment_api.message_sizes) > SEGMENT_MESSAGE_LIMIT - 400  # really near the limit
    assert sum(segment_api.body_sizes) > 4_000_000 and len(segment_api.body_sizes) >= 9  # several full batches
    [letter] = await rows(runtime, DeadLetter.__table__)
    assert letter.message["userId"] == "too-big"
    assert "32768" in letter.reason and letter.status_code is None
    assert await rows(runtime) == []
