"""What the connector sends to Segment, pinned where mutation testing found the builders loose:
segment trait names, an account's domain and groupId as traits, the Entered/Exited timestamp, and
what a round reports as skipped. Expected messages are written out by hand.
"""

from datetime import UTC, datetime

from connector.core.models import SegmentTransition
from connector.outbound.sender import Sender
from tests.support.api import post_batch
from tests.support.app import drain
from tests.support.fake_segment import add_segment, add_transition, configure, of_type, send_all, user_id_of

transitions = SegmentTransition.__table__


async def test_a_group_sends_its_group_id_as_a_trait_when_the_traits_lack_it(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_account_segments=["ALL"],
        handle_accounts=True,
        synchronized_account_properties=["group_id", "industry", "domain"],
        synchronized_properties=["account.group_id", "account.industry"],
    )
    await post_batch(client, {"type": "group", "userId": "u-1", "groupId": "g-7", "traits": {"industry": "Software"}})
    await drain(runtime)
    await send_all(runtime)
    [group] = of_type(segment_api.messages, "group")
    assert group["groupId"] == "g-7"
    assert group["traits"] == {"group_id": "g-7", "industry": "Software"}
    [identify] = of_type(segment_api.messages, "identify")
    assert identify["traits"]["account_group_id"] == "g-7" and identify["traits"]["account_industry"] == "Software"


async def test_a_trait_named_like_the_group_id_wins_over_the_group_id(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_account_segments=["ALL"],
        handle_accounts=True,
        synchronized_account_properties=["group_id"],
    )
    await post_batch(client, {"type": "group", "userId": "u-1", "groupId": "g-7", "traits": {"group_id": "legacy-7"}})
    await drain(runtime)
    await send_all(runtime)
    [group] = of_type(segment_api.messages, "group")
    assert group["traits"] == {"group_id": "legacy-7"}


async def test_an_account_found_by_email_domain_is_sent_with_its_domain(client, runtime, segment_api):
    await configure(
        runtime,
        segment_api,
        synchronized_segments=["ALL"],
        synchronized_account_segments=["ALL"],
        handle_accounts=True,
        link_accounts_by_domain=True,
        synchronized_account_properties=["domain", "group_id", "industry"],
        synchronized_properties=["account.domain"],
    )
    await post_batch(client, {"type": "identify", "userId": "u-1", "traits": {"email": "ada@acme-robotics.io"}})
    await drain(runtime)
    await send_all(runtime)
    [group] = of_type(segment_api.messages, "group")
    assert group["groupId"] == "acme-robotics.io"
    assert group["traits"] == {"domain": "acme-robotics.io"}
    assert of_type(segment_api.messages, "identify")[-1]["traits"]["account_domain"] == "acme-robotics.io"


async def test_segment_entered_carries_the_time_of_the_transition(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], entered_exited_events=True)
    await post_batch(client, {"type": "identify", "userId": "u-1"})
    await drain(runtime)
    await send_all(runtime)
    user = await user_id_of(runtime, "u-1")
    segment = await add_segment(runtime, "Paying Customers", [user])
    entered = await add_transition(runtime, segment, user, "entered")
    async with runtime.engine.begin() as conn:
        await conn.execute(
            transitions.update()
            .where(transitions.c.id == entered)
            .values(at=datetime(2024, 5, 1, 10, 0, 0, 250000, tzinfo=UTC))
        )
    segment_api.messages.clear()
    rounds = await send_all(runtime)
    [track] = of_type(segment_api.messages, "track")
    assert track["event"] == "Segment Entered" and track["timestamp"] == "2024-05-01T10:00:00.250000Z"
    assert sum(result.skipped for result in rounds) == 0


async def test_a_round_that_sends_everything_reports_nothing_skipped(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"])
    await post_batch(client, {"type": "track", "userId": "u-1", "event": "Signed In"})
    await drain(runtime)
    result = await Sender(runtime).send_once()
    assert (result.claimed, result.delivered, result.skipped) == (2, 2, 0)


async def test_a_forwarded_event_keeps_its_context_and_carries_our_integration_mark(client, runtime, segment_api):
    await configure(runtime, segment_api, synchronized_segments=["ALL"], send_events=["ALL"])
    await post_batch(
        client,
        {
            "type": "track",
            "userId": "u-1",
            "event": "Signed In",
            "messageId": "m-ctx",
            "context": {
                "ip": "203.0.113.9",
                "locale": "fr-FR",
                "page": {"path": "/login"},
                "integration": {"name": "some-other-tool", "version": "9"},
            },
        },
    )
    await drain(runtime)
    await send_all(runtime)
    [track] = of_type(segment_api.messages, "track")
    mark = track["context"].pop("integration")
    assert mark["name"] == "hull-segment-connector" and mark["version"] != "9"
    assert track["context"] == {"ip": "203.0.113.9", "locale": "fr-FR", "page": {"path": "/login"}}
    assert track["integrations"] == {"Webhooks": False}
