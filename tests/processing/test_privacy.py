"""Privacy: erasing a person leaves nothing of them in any table, and keeps them out afterwards.

A profile is built through real traffic (/v1/batch and /segment, the worker, the sender against
the fake Segment), then erased; every column of every table, cast to text, is searched for each
of its identifiers and trait values. Later messages for it are dropped as `suppressed` until
the identifier is taken off the suppression list.
"""

import asyncio
import hashlib
from urllib.parse import quote

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import SQLModel

from connector.core.models import Account, ActivityEntry, DeadLetter, DeliveryState, IdentityAudit, OutboxItem, utcnow
from connector.core.spec import clean_id
from connector.flow import journal
from connector.outbound import sender
from tests.support.app import admin_auth, basic_auth, drain, wait_until
from tests.support.database import journal_status_counts, stored_counts
from tests.support.fake_segment import configure, send_all, user_id_of

ADA = {"userId": "ada-42"}
ADA_ANONYMOUS = "anon-ada-7f3"
ADA_EMAIL = "Ada.Lovelace@Example.org"
# Everything that names Ada or came from her: none of it may remain anywhere after the erasure.
ADA_NEEDLES = [
    "ada-42",
    "anon-ada-7f3",
    "ada.lovelace@example.org",
    "ada lovelace",
    "vermilion-7c2",
    "reports-ada",
    "vip_ada",
    "ada-only-page",
]
BOB_NEEDLES = ["bob-7", "bob@example.com", "reports-bob"]
PRO = {"attribute": "traits.plan", "op": "eq", "value": "pro"}


async def post(client, *messages, path="/v1/batch"):
    body = {"batch": list(messages)} if path == "/v1/batch" else list(messages)
    response = await client.post(path, headers=basic_auth(), json=body)
    assert response.status_code == 200 and "rejected" not in response.json(), response.text
    return response


async def find(client, **query):
    return await client.get("/api/users", headers=admin_auth(), params=query)


async def search(runtime, needles):
    """{needle: [table.column, ...]} for every column of every table holding the needle, cast to text."""
    found: dict[str, list[str]] = {}
    async with runtime.engine.connect() as conn:
        for table in SQLModel.metadata.sorted_tables:
            for column in table.columns:
                text = sa.func.lower(sa.cast(column, sa.Text))
                for needle in needles:
                    if await conn.scalar(sa.select(sa.func.count()).select_from(table).where(text.like(f"%{needle}%"))):
                        found.setdefault(needle, []).append(f"{table.name}.{column.name}")
    return found


async def suppressed_count(client):
    response = await client.get("/metrics", headers=admin_auth())
    return sum(
        sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == "connector_processed_total" and sample.labels.get("outcome") == "suppressed"
    )


async def build_ada_and_bob(client, runtime, segment_api):
    """Ada's and Bob's profiles through real traffic, with something in every table that can hold them."""
    await client.post("/api/segments", headers=admin_auth(), json={"name": "Power Users", "rule": PRO})
    await configure(
        runtime,
        segment_api,
        handle_accounts=True,
        synchronized_segments=["Power Users"],
        synchronized_properties=["email", "plan"],
        send_events=["Report Exported"],
        entered_exited_events=True,
        segment_membership_traits=True,
    )
    await post(
        client,
        {"type": "page", "anonymousId": ADA_ANONYMOUS, "name": "ada-only-page"},
        {
            "type": "identify",
            **ADA,
            "traits": {"email": ADA_EMAIL, "name": "Ada Lovelace", "plan": "pro", "favourite_colour": "vermilion-7c2"},
        },
        {"type": "identify", **ADA, "anonymousId": ADA_ANONYMOUS},  # merges the anonymous profile
        {"type": "group", **ADA, "groupId": "acme-g1", "traits": {"name": "Acme Corp", "domain": "acme.example"}},
        {
            "type": "track",
            **ADA,
            "event": "Report Exported",
            "properties": {"feature": "reports-ada", "eventFlag": "positive"},
        },
        {"type": "identify", "userId": "bob-7", "traits": {"email": "bob@example.com", "plan": "free"}},
        {"type": "group", "userId": "bob-7", "groupId": "acme-g1"},
        {"type": "track", "userId": "bob-7", "event": "Report Exported", "properties": {"feature": "reports-bob"}},
        # Bob's user_id with Ada's anonymous id: two user_ids, so a conflict is audited naming both.
        {"type": "track", "userId": "bob-7", "anonymousId": ADA_ANONYMOUS, "event": "Clicked"},
    )
    await post(
        client,
        {
            "type": "track",
            **ADA,
            "event": "Audience Entered",
            "properties": {"audience_key": "vip_ada"},
            "messageId": "ada-audience-1",
        },
        path="/segment",
    )
    await drain(runtime)
    await send_all(runtime)  # delivery_state for both
    segment_api.fail(400, 1)  # Segment refuses the next batch: Ada's event becomes a dead letter
    await post(client, {"type": "track", **ADA, "event": "Report Exported", "properties": {"feature": "reports-ada"}})
    await drain(runtime)
    await send_all(runtime)
    await post(client, {"type": "identify", **ADA, "traits": {"plan": "pro", "seen": "vermilion-7c2"}})
    await drain(runtime)  # an outbox row waits for Ada
    await post(client, {"type": "track", **ADA, "event": "Report Exported", "properties": {"feature": "reports-ada"}})
    # ... and this one is still pending in the journal when she is erased.
    ada, bob = await user_id_of(runtime, "ada-42"), await user_id_of(runtime, "bob-7")
    async with runtime.engine.begin() as conn:  # the activity log, as its writer records it
        acme = await conn.scalar(sa.select(Account.__table__.c.id))
        await conn.execute(
            ActivityEntry.__table__.insert(),
            [
                {
                    "entity": "user",
                    "entity_id": ada,
                    "action": "incoming.user.success",
                    "message_id": "ada-audience-1",
                    "details": {"traits": {"name": "Ada Lovelace"}},
                    "created_at": utcnow(),
                },
                {
                    "entity": "account",
                    "entity_id": acme,
                    "action": "incoming.account.success",
                    "message_id": "ada-audience-1",
                    "details": {"by": "ada-42"},
                    "created_at": utcnow(),
                },
                {
                    "entity": "user",
                    "entity_id": bob,
                    "action": "incoming.user.success",
                    "message_id": None,
                    "details": {"traits": {"email": "bob@example.com"}},
                    "created_at": utcnow(),
                },
            ],
        )
    return ada, bob


async def test_an_erased_person_leaves_nothing_in_any_table_and_stays_out_until_unsuppressed(
    client, runtime, segment_api
):
    ada, _bob = await build_ada_and_bob(client, runtime, segment_api)
    before = await search(runtime, ADA_NEEDLES)
    for table in (
        "users",
        "user_identifiers",
        "events",
        "inbound_journal",
        "feature_usage",
        "identity_audit",
        "audience_memberships",
        "dead_letters",
        "activity_log",
    ):
        assert any(place.startswith(table + ".") for places in before.values() for place in places), table
    async with runtime.engine.connect() as conn:
        keys = set((await conn.execute(sa.select(OutboxItem.__table__.c.key))).scalars())
        delivered = set((await conn.execute(sa.select(DeliveryState.__table__.c.key))).scalars())
    assert f"user:{ada}" in keys and f"identify:{ada}" in delivered
    assert (await find(client, user_id="ada-42")).json()["segments"] == ["Power Users"]
    bob_before = (await find(client, user_id="bob-7")).json()
    sent_before = len(segment_api.messages)

    response = await client.delete("/api/users", headers=admin_auth(), params={"email": "ADA.lovelace@example.org"})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == ada
    assert response.json()["erased"]["events"] >= 3
    # Her message still pending was blanked and settled with her erasure: it is never applied.
    assert "pending" not in await journal_status_counts(runtime.engine)

    assert await search(runtime, ADA_NEEDLES) == {}
    async with runtime.engine.connect() as conn:
        keys = set((await conn.execute(sa.select(OutboxItem.__table__.c.key))).scalars())
        delivered = set((await conn.execute(sa.select(DeliveryState.__table__.c.key))).scalars())
        left = {  # rows of users only: an account may have the same number as Ada's id
            name: await conn.scalar(sa.text(f"SELECT count(*) FROM {name} WHERE {where} AND entity_id = {ada}"))
            for name, where in (
                ("segment_memberships", "segment_id IN (SELECT id FROM segments WHERE entity = 'user')"),
                ("segment_transitions", "entity = 'user'"),
                ("feature_usage", "entity = 'user'"),
                ("activity_log", "entity = 'user'"),
            )
        }
        account = (await conn.execute(sa.select(Account.__table__))).one()
        erased = (
            await conn.execute(sa.select(IdentityAudit.__table__).where(IdentityAudit.__table__.c.action == "erase"))
        ).all()
    # Keys of Ada's profile only: an account or an event may have the same number as her id.
    assert f"user:{ada}" not in keys
    assert {f"identify:{ada}", f"group:{ada}"} & delivered == set()
    assert left == {"segment_memberships": 0, "segment_transitions": 0, "feature_usage": 0, "activity_log": 0}
    # The account is the company's: it stays, with Bob, without Ada.
    assert (account.group_id, account.traits["name"]) == ("acme-g1", "Acme Corp")
    assert len(erased) == 1 and erased[0].created_at is not None
    assert erased[0].details["profiles"] == [ada] and erased[0].details["users"] == 1

    # Bob is untouched, and no Segment Exited (nor anything else naming Ada) goes out.
    bob_after = (await find(client, user_id="bob-7")).json()
    assert bob_after["traits"] == bob_before["traits"] and bob_after["account"]["group_id"] == "acme-g1"
    assert [e["event"] for e in bob_after["recent_events"]] == [e["event"] for e in bob_before["recent_events"]]
    assert set(await search(runtime, BOB_NEEDLES)) == set(BOB_NEEDLES)
    await drain(runtime)
    await send_all(runtime)
    after = segment_api.messages[sent_before:]
    assert not [m for m in after if m.get("event") == "Segment Exited"]
    assert not [m for m in after if any(needle in str(m).lower() for needle in ADA_NEEDLES)]

    # Later messages for any of her identifiers: 200, dropped as suppressed, no profile, no payload kept.
    suppressed_before = await suppressed_count(client)
    await post(
        client,
        {"type": "identify", **ADA, "traits": {"name": "Ada Lovelace"}},
        {"type": "page", "anonymousId": ADA_ANONYMOUS, "name": "ada-only-page"},
        {"type": "identify", "userId": "someone-new", "traits": {"email": ADA_EMAIL}},
    )
    await post(client, {"type": "track", **ADA, "event": "Came Back"}, path="/segment")
    await drain(runtime)
    assert await suppressed_count(client) - suppressed_before == 4
    assert (await find(client, user_id="ada-42")).status_code == 404
    assert (await find(client, user_id="someone-new")).status_code == 404
    assert await search(runtime, ADA_NEEDLES) == {}

    listed = (await client.get("/api/suppressions", headers=admin_auth())).json()
    hashes = {(entry["kind"], entry["hash"]) for entry in listed["suppressions"]}
    assert hashes == {
        ("user_id", hashlib.sha256(b"ada-42").hexdigest()),
        ("anonymous_id", hashlib.sha256(b"anon-ada-7f3").hexdigest()),
        ("email", hashlib.sha256(b"ada.lovelace@example.org").hexdigest()),
    }
    assert listed["total"] == 3

    # Off the list, her user_id comes back as a new profile; the other identifiers stay suppressed.
    assert (await client.delete("/api/suppressions/ada-42", headers=admin_auth())).status_code == 204
    assert (await client.delete("/api/suppressions/ada-42", headers=admin_auth())).status_code == 404
    await post(
        client,
        {"type": "identify", **ADA, "traits": {"plan": "free"}},
        {"type": "page", "anonymousId": ADA_ANONYMOUS, "name": "still-suppressed"},
    )
    await drain(runtime)
    back = await find(client, user_id="ada-42")
    assert back.status_code == 200 and back.json()["id"] != ada
    assert back.json()["traits"] == {"plan": "free"} and back.json()["identifiers"]["anonymous_id"] == []


async def test_a_new_visitor_carrying_an_erased_email_only_in_context_traits_is_dropped_as_suppressed(client, runtime):
    await post(client, {"type": "identify", **ADA, "traits": {"email": ADA_EMAIL, "name": "Ada Lovelace"}})
    await drain(runtime)
    response = await client.delete("/api/users", headers=admin_auth(), params={"user_id": "ada-42"})
    assert response.status_code == 200, response.text
    suppressed_before = await suppressed_count(client)

    # As analytics.js sends a track once the page knows who it is: the email in context.traits, not in traits.
    await post(
        client,
        {
            "type": "track",
            "anonymousId": "anon-new-visitor",
            "event": "Report Exported",
            "properties": {"feature": "reports-ada"},
            "context": {"traits": {"email": "ada.lovelace@EXAMPLE.org"}},
        },
    )
    await drain(runtime)

    assert (await find(client, anonymous_id="anon-new-visitor")).status_code == 404
    assert await stored_counts(runtime) == {
        "inbound_journal": 2,  # the identify and the track, both blanked
        "users": 0,
        "user_identifiers": 0,
        "events": 0,
        "accounts": 0,
    }
    assert await search(runtime, [*ADA_NEEDLES, "anon-new-visitor"]) == {}
    assert await suppressed_count(client) - suppressed_before == 1


async def test_an_erasure_settles_every_pending_message_of_the_person_however_many_slices_they_take(
    client, runtime, monkeypatch
):
    monkeypatch.setattr(journal, "SETTLE_SLICE", 2)  # the slices SQLite's parameter limit calls for, made small
    await post(client, {"type": "identify", **ADA, "traits": {"email": ADA_EMAIL}})
    await drain(runtime)
    await post(client, *({"type": "track", **ADA, "event": "Report Exported"} for _ in range(5)))
    assert await journal_status_counts(runtime.engine) == {"pending": 5, "processed": 1}

    response = await client.delete("/api/users", headers=admin_auth(), params={"user_id": "ada-42"})

    assert response.status_code == 200, response.text
    assert await journal_status_counts(runtime.engine) == {"processed": 6}


async def test_a_delete_message_on_segment_erases_what_came_before_it_even_unprocessed(client, runtime):
    await post(client, {"type": "identify", "userId": "ada-42", "traits": {"name": "Ada Lovelace"}})
    await drain(runtime)
    await post(
        client,
        {"type": "track", "userId": "ada-42", "event": "Report Exported", "properties": {"feature": "reports-ada"}},
        {"type": "delete", "userId": "ada-42", "messageId": "delete-1"},
        {"type": "identify", "userId": "ada-42", "traits": {"favourite_colour": "vermilion-7c2"}},
        path="/segment",
    )
    await post(client, {"type": "identify", "userId": "bob-7", "traits": {"email": "bob@example.com"}})
    await drain(runtime)
    assert (await find(client, user_id="ada-42")).status_code == 404
    assert (await find(client, user_id="bob-7")).status_code == 200
    assert await search(runtime, ADA_NEEDLES) == {}
    assert len((await client.get("/api/suppressions", headers=admin_auth())).json()["suppressions"]) == 1


async def test_a_delete_message_for_someone_unknown_still_keeps_them_out(client, runtime):
    await post(client, {"type": "delete", "userId": "ada-42"}, path="/segment")
    await post(client, {"type": "identify", "userId": "ada-42", "traits": {"name": "Ada Lovelace"}})
    await drain(runtime)
    assert (await find(client, user_id="ada-42")).status_code == 404


async def test_delete_is_a_segment_message_with_a_user_id_only(client):
    response = await client.post("/segment", headers=basic_auth(), json={"type": "delete", "anonymousId": "a-1"})
    assert response.status_code == 400 and response.json()["field"] == "userId"
    response = await client.post(
        "/v1/batch", headers=basic_auth(), json={"batch": [{"type": "delete", "userId": "ada-42"}]}
    )
    # Deletions come from Segment, on /segment: on /v1 (where a browser's public write key is good) one is refused.
    refused = response.json()["rejected"][0]
    assert response.status_code == 400 and refused["status"] == 400 and refused["field"] == "type"
    assert (
        await client.post("/segment", headers=basic_auth(), json={"type": "forget", "userId": "u"})
    ).status_code == 501


@pytest.mark.parametrize("how", ["id", "user_id", "anonymous_id", "email"])
async def test_a_user_is_erased_by_internal_id_or_by_each_kind_of_identifier(client, runtime, how):
    await post(
        client,
        {"type": "identify", "userId": "ada-42", "anonymousId": ADA_ANONYMOUS, "traits": {"email": ADA_EMAIL}},
        {"type": "identify", "userId": "bob-7", "traits": {"email": "bob@example.com"}},
    )
    await drain(runtime)
    ada = await user_id_of(runtime, "ada-42")
    if how == "id":
        response = await client.delete(f"/api/users/{ada}", headers=admin_auth())
    else:
        value = {"user_id": "ada-42", "anonymous_id": ADA_ANONYMOUS, "email": ADA_EMAIL}[how]
        response = await client.delete("/api/users", headers=admin_auth(), params={how: value})
    assert response.status_code == 200, response.text
    assert response.json()["suppressed"] == 3
    assert (await client.get(f"/api/users/{ada}", headers=admin_auth())).status_code == 404
    assert await search(runtime, ADA_NEEDLES) == {}
    assert (await find(client, user_id="bob-7")).status_code == 200


@pytest.mark.parametrize("query", [{"user_id": "nobody"}, {"anonymous_id": "nobody"}, {"email": "no@body.org"}])
async def test_erasing_someone_unknown_is_a_404_and_suppresses_nothing(client, query):
    response = await client.delete("/api/users", headers=admin_auth(), params=query)
    assert response.status_code == 404 and "message" in response.json()
    assert (await client.delete("/api/users/12345", headers=admin_auth())).status_code == 404
    assert (await client.delete("/api/users", headers=admin_auth())).status_code == 400
    assert (await client.get("/api/suppressions", headers=admin_auth())).json() == {"total": 0, "suppressions": []}
    assert (await client.delete("/api/suppressions/nobody", headers=admin_auth())).status_code == 404


# Any id a sender may use: printable text of any script, with slashes, percent signs and spaces.
ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=40).filter(
    lambda value: clean_id(value) == value
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user_id=ids)
async def test_any_user_id_is_erased_suppressed_and_let_back_in_by_its_raw_value(client, runtime, user_id):
    await post(client, {"type": "identify", "userId": user_id, "traits": {"plan": "pro"}})
    await drain(runtime)
    assert (await client.delete("/api/users", headers=admin_auth(), params={"user_id": user_id})).status_code == 200
    await post(client, {"type": "identify", "userId": user_id, "traits": {"plan": "team"}})
    await drain(runtime)
    assert (await find(client, user_id=user_id)).status_code == 404
    listed = (await client.get("/api/suppressions", headers=admin_auth(), params={"limit": 500})).json()
    assert {"kind": "user_id", "hash": hashlib.sha256(user_id.encode()).hexdigest()} in [
        {"kind": entry["kind"], "hash": entry["hash"]} for entry in listed["suppressions"]
    ]
    # "." and ".." percent-encoded in full: a client removes them as dot segments of the path (RFC 3986, 5.2.4)
    path_value = quote(user_id, safe="").replace(".", "%2E")
    response = await client.delete(f"/api/suppressions/{path_value}", headers=admin_auth())
    assert response.status_code == 204, response.text
    await post(client, {"type": "identify", "userId": user_id, "traits": {"plan": "free"}})
    await drain(runtime)
    assert (await find(client, user_id=user_id)).json()["traits"] == {"plan": "free"}


async def test_a_person_erased_while_their_messages_are_on_the_wire_leaves_no_dead_letter_or_delivery_state(
    client, runtime, segment_api
):
    # Ada's identify is too big for Segment once the transport escapes her bio (16 KB in, 48 KB out:
    # a dead letter when the round is recorded); Bob's is
    # sent to a Segment that stalls, and Ada is erased meanwhile: the round must not write her back.
    await configure(runtime, segment_api, synchronized_segments=["ALL"], synchronized_properties=["email", "bio"])
    await post(
        client,
        {"type": "identify", "userId": "ada-42", "traits": {"email": ADA_EMAIL, "bio": "é" * 8_000}},
        {"type": "identify", "userId": "bob-7", "traits": {"email": "bob@example.com"}},
    )
    await drain(runtime)
    ada = await user_id_of(runtime, "ada-42")
    segment_api.stall(3.0, count=1)
    sending = asyncio.create_task(sender.Sender(runtime).send_once())
    await wait_until(lambda: segment_api.requests >= 1)
    response = await client.delete("/api/users", params={"user_id": "ada-42"}, headers=admin_auth())
    assert response.status_code == 200, response.text
    assert not sending.done(), "the erasure must happen while the round is on the wire"
    assert (await sending).dead_lettered == 1  # Ada's identify: refused for its size, not recorded
    async with runtime.engine.connect() as conn:
        assert (await conn.execute(sa.select(DeadLetter.__table__))).all() == []
        states = (await conn.execute(sa.select(DeliveryState.__table__.c.key))).scalars().all()
        entries = (
            await conn.execute(
                sa.select(ActivityEntry.__table__.c.action).where(
                    ActivityEntry.__table__.c.entity == "user", ActivityEntry.__table__.c.entity_id == ada
                )
            )
        ).all()
    bob = await user_id_of(runtime, "bob-7")
    assert states == [f"identify:{bob}"]
    assert entries == []
    assert [message["userId"] for message in segment_api.messages] == ["bob-7"]
