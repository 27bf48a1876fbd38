"""A batch is applied as a set (processing/apply.py): it must end exactly where the same messages end when
each is applied on its own, in journal order.

One message per batch is the plain reading of the rules (identity.py, accounts.py, traits.py); a batch
folds merges, renames, account claims and links in memory and writes each kind of row once. Streams
are drawn with the hard cases close together: anonymous visits joined later, two user_ids meeting on
one anonymousId (a conflict, never a merge), aliases and renames, group calls whose accounts claim one
domain, company emails that link users by domain, equal timestamps.
"""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import SQLModel, col

from connector.core import spec
from connector.core.models import Account, Event, IdentityAudit, User, UserIdentifier
from connector.inbound.writer import journal_row
from connector.service.batch import process_batch
from tests.support.database import append_to_journal, journal_status_counts

RECEIVED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
TIMES = ["2024-06-01T10:00:00Z", "2024-06-01T10:00:00Z", "2024-06-01T09:00:00Z", "2024-06-01T11:00:00Z"]
USER_IDS = ["u1", "u2", "u3"]
ANONYMOUS_IDS = ["a1", "a2", "a3"]
GROUP_IDS = ["g1", "g2"]
DOMAINS = ["acme.example", "globex.example", None]


@st.composite
def messages(draw: st.DrawFn, index: int) -> dict[str, Any]:
    ids: dict[str, str] = {}
    if draw(st.booleans()):
        ids["userId"] = draw(st.sampled_from(USER_IDS))
    if not ids or draw(st.booleans()):
        ids["anonymousId"] = draw(st.sampled_from(ANONYMOUS_IDS))
    kind = draw(st.sampled_from(["identify", "identify", "track", "track", "alias", "group"]))
    message: dict[str, Any] = {"messageId": f"m{index}", "timestamp": draw(st.sampled_from(TIMES))}
    if kind == "alias":
        message.update(
            type="alias",
            userId=draw(st.sampled_from([*USER_IDS, "u4"])),
            previousId=draw(st.sampled_from(USER_IDS + ANONYMOUS_IDS)),
        )
    elif kind == "track":
        message.update(type="track", event="Used", properties={"feature": draw(st.sampled_from(["a", "b"]))}, **ids)
    elif kind == "group":
        domain = draw(st.sampled_from(DOMAINS))
        traits: dict[str, Any] = {"plan": draw(st.sampled_from(["x", "y"]))} | ({"domain": domain} if domain else {})
        message.update(type="group", groupId=draw(st.sampled_from(GROUP_IDS)), traits=traits, **ids)
    else:
        traits = draw(st.dictionaries(st.sampled_from(["plan", "seats"]), st.integers(0, 2), max_size=2))
        if draw(st.booleans()):
            traits["email"] = f"{draw(st.sampled_from(['ada', 'bob']))}@{draw(st.sampled_from(DOMAINS[:2]))}"
        message.update(type="identify", traits=traits, **ids)
    return message


@st.composite
def streams(draw: st.DrawFn) -> list[dict[str, Any]]:
    return [draw(messages(index)) for index in range(draw(st.integers(1, 14)))]


async def reset(runtime: Any) -> None:
    keep = {"settings_versions", "credentials"}
    async with runtime.engine.begin() as conn:
        for table in reversed(SQLModel.metadata.sorted_tables):
            if table.name not in keep:
                await conn.execute(table.delete())


async def state_after(runtime: Any, stream: list[dict[str, Any]], batch_size: int) -> dict[str, Any]:
    """What the stream leaves, in terms that do not depend on row ids."""
    await reset(runtime)
    await append_to_journal(
        runtime.engine, [journal_row(spec.normalise_message(m, RECEIVED), RECEIVED, "api") for m in stream]
    )
    current = await runtime.settings.current()
    while (changes := await process_batch(runtime.engine, current, limit=batch_size)).processed + changes.skipped:
        assert changes.failed == 0
    async with runtime.engine.connect() as conn:
        claims: dict[int, set[tuple[str, str]]] = {}
        for row in await conn.execute(
            sa.select(col(UserIdentifier.user_id), col(UserIdentifier.kind), col(UserIdentifier.value))
        ):
            claims.setdefault(row.user_id, set()).add((row.kind, row.value))
        events: dict[int, set[str]] = {}
        for row in await conn.execute(sa.select(col(Event.user_id), col(Event.message_id))):
            events.setdefault(row.user_id, set()).add(row.message_id)
        accounts = {
            row.id: (row.group_id, row.domain, tuple(sorted(row.traits.items())))
            for row in await conn.execute(
                sa.select(col(Account.id), col(Account.group_id), col(Account.domain), col(Account.traits))
            )
        }
        users = (
            await conn.execute(sa.select(col(User.id), col(User.traits), col(User.account_id), col(User.account_link)))
        ).all()
        audits = sorted((await conn.scalars(sa.select(col(IdentityAudit.action)))).all())
    assert set(await journal_status_counts(runtime.engine)) == {"processed"}
    return {
        "profiles": {
            (
                frozenset(claims.get(user.id, ())),
                tuple(sorted(user.traits.items())),
                frozenset(events.get(user.id, ())),
                accounts[user.account_id] if user.account_id else None,
                user.account_link,
            )
            for user in users
        },
        "accounts": set(accounts.values()),
        "audits": audits,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=streams())
async def test_a_stream_applied_as_one_batch_ends_as_it_does_applied_one_message_at_a_time(runtime, stream):
    await runtime.settings.save({"handle_accounts": True, "link_accounts_by_domain": True, "identify_by_email": True})
    one_at_a_time = await state_after(runtime, stream, batch_size=1)
    assert await state_after(runtime, stream, batch_size=500) == one_at_a_time
