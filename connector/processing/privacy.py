"""Erasure of a person, and the suppression list that keeps them forgotten.

An erasure removes profiles and everything derived from them, in the caller's transaction. `erase`
does it in processing's tables and the shared ones: identifiers, events, activity entries, user
usage, audiences, outbox rows, and the payloads of every journal message of any of their
identifiers (blanked to `{}` and marked processed, so a pending one is never applied and a
Segment retry of it is still a duplicate). The caller (service/) then has the other stages
forget the same users through their tables' owners (segment memberships and transitions, delivery
state, the dead letters that carry their identifiers) and calls `record`: the identity audit keeps
the fact and time, one `erase` row with counts and internal ids only; older audit rows about the
profile lose their details.

Decisions, and why:

- No `Segment Exited`, no farewell identify: an erasure ends memberships silently. Anything
  sent would carry the person's identifiers to Segment after they asked to be forgotten;
  the deletion belongs in Segment's own deletion request (which is how a `delete` message
  reaches us in the first place).
- The account stays (it is the company's, not the person's), without the link. Its usage
  rows are recounted from the events that remain, so they equal what `usage rebuild` gives.
- Suppression is applied by the processor, not at the inbound append: the journal is the
  one order of things, so a `delete` journaled after an identify erases it, and a message
  journaled after the `delete` is dropped, whatever the processor had reached. The check is
  one lookup of hashes per batch (`suppressed`), and a suppressed message's journal payload
  is blanked in the same transaction, so no personal data lingers. Only a SHA-256 of each
  identifier is kept on the list.
"""

import hashlib
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of, insert, is_postgres
from connector.core.kinds import Entity, MessageType, OutboxKind
from connector.core.logs import get_logger
from connector.core.models import Event, IdentityAudit, Segment, Suppression, User, UserIdentifier
from connector.core.spec import clean_id
from connector.flow import activity, journal, outbox
from connector.flow.changes import Erasure
from connector.processing.identity import ANONYMOUS_ID, EMAIL, PREVIOUS_USER_ID, USER_ID, Claim
from connector.profile import audiences, usage

CHUNK = 1000
KINDS = (USER_ID, ANONYMOUS_ID, EMAIL)

users = User.__table__
identifiers = UserIdentifier.__table__
events = Event.__table__
audit = IdentityAudit.__table__
segments = Segment.__table__
suppressions = Suppression.__table__
log = get_logger()


def value_hash(value: str) -> str:
    """What the suppression list keeps of an identifier (a lone surrogate from a URL hashes too)."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def suppressed_email(value: Any) -> str | None:
    """An email as the suppression list compares it: trimmed and lower-cased. Not the validating
    normalisation of identity.py: this runs on every message of every batch, and must be cheap."""
    return value.strip().lower() if isinstance(value, str) and "@" in value else None


def message_claims(message: dict[str, Any]) -> set[Claim]:
    """Every identifier a message names: its ids, an alias's previousId (either kind), its emails.

    The emails count whatever `identify_by_email` says: a suppressed address must not come back as a trait. Both
    `traits.email` and `context.traits.email` count, on every type: a group call's traits are the group's (an
    account trait), but its context.traits name the person, whom identity.py claims by them.
    """
    claims: set[Claim] = set()
    if user_id := clean_id(message.get("userId")):
        claims.add((USER_ID, user_id))
    if anonymous_id := clean_id(message.get("anonymousId")):
        claims.add((ANONYMOUS_ID, anonymous_id))
    if message.get("type") == MessageType.ALIAS and (previous := clean_id(message.get("previousId"))):
        claims |= {(USER_ID, previous), (ANONYMOUS_ID, previous)}
    for traits in (message.get("traits"), (message.get("context") or {}).get("traits")):
        if isinstance(traits, dict) and (email := suppressed_email(traits.get("email"))):
            claims.add((EMAIL, email))
    return claims


async def let_in(conn: AsyncConnection, value: str) -> bool:
    """Take an identifier (its raw value: an id as sent, or an email in any case) off the suppression list;
    False if it was not on it."""
    hashes = {value_hash(value), value_hash(value.strip())}  # ids are stored trimmed
    if email := suppressed_email(value):
        hashes.add(value_hash(email))
    removed = await conn.execute(suppressions.delete().where(suppressions.c.value_hash.in_(sorted(hashes))))
    return bool(removed.rowcount)


async def suppressed(conn: AsyncConnection, claims: set[Claim]) -> set[Claim]:
    """The claims on the suppression list: one query (on SQLite, one per thousand distinct values)."""
    hashed = {(kind, value_hash(value)): (kind, value) for kind, value in claims}
    wanted = sorted({digest for _, digest in hashed})
    if is_postgres(conn):  # one array parameter (db.any_of): 3x faster than a thousand IN parameters
        conditions = [any_of(conn, suppressions.c.value_hash, wanted)]
    else:
        conditions = [
            suppressions.c.value_hash.in_(wanted[start : start + CHUNK]) for start in range(0, len(wanted), CHUNK)
        ]
    found: set[Claim] = set()
    for condition in conditions if wanted else []:
        rows = await conn.execute(sa.select(suppressions.c.kind, suppressions.c.value_hash).where(condition))
        found |= {hashed[(row.kind, row.value_hash)] for row in rows if (row.kind, row.value_hash) in hashed}
    return found


async def erase(conn: AsyncConnection, user_ids: list[int], claims: set[Claim], now: datetime) -> Erasure:
    """Erase these profiles and suppress their identifiers and `claims` (which may belong to no profile), in the
    tables processing owns and the shared ones (flow/, profile/); the caller has the other stages forget the
    erasure's users (service/batch.py) and then calls `record`.

    The caller holds the journal (the processor's lock): nothing is applied meanwhile. The first
    statement writes, so on SQLite the transaction holds the write lock before it reads anything.
    """
    erasure = Erasure(claims=set(claims))
    found = await conn.execute(
        users.update().where(users.c.id.in_(user_ids)).values(updated_at=now).returning(users.c.id)
    )
    erasure.users = sorted(found.scalars())
    if not erasure.users and not claims:
        return erasure
    # A full recompute (FOR UPDATE) must not re-add a membership meanwhile.
    await conn.execute(sa.select(segments.c.id).with_for_update(read=True))
    for user_id in erasure.users:
        await _erase_profile(conn, user_id, erasure)
    await _suppress(conn, erasure.claims, now)
    blanked = await journal.blank_naming(conn, erasure.values(USER_ID, ANONYMOUS_ID), erasure.values(EMAIL))
    erasure.count("journal", len(blanked))
    erasure.count("activity", await activity.forget_messages(conn, sorted(set(blanked))))
    return erasure


async def record(conn: AsyncConnection, erasure: Erasure, now: datetime) -> None:
    """The identity audit keeps the fact of an erasure (counts and internal ids only), and the log says it."""
    await conn.execute(
        audit.insert().values(
            action="erase",
            kept_user_id=erasure.users[0] if erasure.users else None,
            details={"profiles": erasure.users, **erasure.counts},
            created_at=now,
        )
    )
    log.info("privacy.erased", via=erasure.via, profiles=len(erasure.users), **erasure.counts)


async def _erase_profile(conn: AsyncConnection, user_id: int, erasure: Erasure) -> None:
    held = await _claims_of(conn, user_id, erasure)
    stored = (await conn.execute(sa.select(events.c.id, *usage.EVENT_COLUMNS).where(events.c.user_id == user_id))).all()
    erasure.events |= {event.id for event in stored}
    recount = {
        (row["entity_id"], row["feature"], row["day"])
        for event in stored
        for row in usage.event_rows(event)
        if row["entity"] == Entity.ACCOUNT
    }
    erasure.count("activity", await activity.forget(conn, Entity.USER, user_id))
    erasure.count("usage", await usage.forget_user(conn, user_id))
    erasure.count("audiences", await audiences.forget_user(conn, user_id))
    keys = [outbox.outbox_key(OutboxKind.USER, user_id)]
    keys += [outbox.outbox_key(OutboxKind.EVENT, event.id) for event in stored]
    erasure.count("outbox", await outbox.discard(conn, keys))
    await _scrub_audit(conn, user_id, [value for kind, value in held if kind in (USER_ID, PREVIOUS_USER_ID)], erasure)
    await _delete(conn, events.delete().where(events.c.user_id == user_id), erasure, "events")
    await _delete(conn, identifiers.delete().where(identifiers.c.user_id == user_id), erasure, "identifiers")
    await _delete(conn, users.delete().where(users.c.id == user_id), erasure, "users")
    if recount:
        await usage.recount_accounts(conn, recount)
        erasure.accounts |= {account_id for account_id, _, _ in recount}


async def _claims_of(conn: AsyncConnection, user_id: int, erasure: Erasure) -> list[Any]:
    """The profile's identifiers and its email trait join the erasure's claims; returns its identifier rows."""
    traits = (await conn.execute(sa.select(users.c.traits).where(users.c.id == user_id))).scalar_one()
    held = (
        await conn.execute(sa.select(identifiers.c.kind, identifiers.c.value).where(identifiers.c.user_id == user_id))
    ).all()
    for kind, value in held:
        erasure.claims.add((USER_ID if kind == PREVIOUS_USER_ID else kind, value))
    if email := suppressed_email(traits.get("email")):
        erasure.claims.add((EMAIL, email))
    return list(held)


async def _scrub_audit(conn: AsyncConnection, user_id: int, user_id_values: list[str], erasure: Erasure) -> None:
    """Audit rows about the profile keep action, time and internal ids, not what they named; a conflict
    recorded on another profile loses this person's user_id from its list."""
    own = sa.or_(audit.c.kept_user_id == user_id, audit.c.merged_user_id == user_id)
    await _delete(conn, audit.update().where(own).values(details={}, message_id=None), erasure, "audit")
    for value in user_id_values:
        pattern = _like_escape(orjson.dumps(value).decode())
        rows = (
            await conn.execute(
                sa.select(audit.c.id, audit.c.details).where(
                    audit.c.action == "conflict", sa.cast(audit.c.details, sa.Text).like(f"%{pattern}%", escape="\\")
                )
            )
        ).all()
        for row in rows:
            if value not in row.details.get("user_ids", []):
                continue
            details = {
                **row.details,
                "user_ids": [other for other in row.details["user_ids"] if other != value],
                "profiles": [other for other in row.details.get("profiles", []) if other != user_id],
            }
            await conn.execute(audit.update().where(audit.c.id == row.id).values(details=details))
            erasure.count("audit", 1)


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


async def _suppress(conn: AsyncConnection, claims: set[Claim], now: datetime) -> None:
    rows = [
        {"kind": kind, "value_hash": value_hash(value), "created_at": now}
        for kind, value in sorted(claims)
        if kind in KINDS
    ]
    if rows:
        await conn.execute(insert(suppressions, conn.dialect.name).on_conflict_do_nothing(), rows)


async def _delete(conn: AsyncConnection, statement: Any, erasure: Erasure, name: str) -> None:
    erasure.count(name, (await conn.execute(statement)).rowcount)
