"""Incoming Engage audiences: who is in which audience, with the latest entry and exit times.

Segment Engage sends membership in two forms, both recorded here:

- an identify whose boolean trait, named by the audience key, is true on entry and false on
  exit. The key is the one in `context.personas` (computation_class "audience"); any other
  boolean trait counts too when its name is an audience key already on record;
- track events `Audience Entered` / `Audience Exited`, keyed by `properties.audience_key`
  (or `context.personas.computation_key`).

Only the latest entry and the latest exit are kept, each by its message timestamp: a user is a
member while the latest entry is later than the latest exit. Taking maxima makes duplicates and
out-of-order delivery harmless, and a merge keeps the latest of both sides.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of, insert_rows
from connector.core.models import AudienceMembership
from connector.core.spec import format_timestamp

ENTERED, EXITED = "Audience Entered", "Audience Exited"
memberships = AudienceMembership.__table__


def _key(value: Any) -> str | None:
    return value.strip()[:255] if isinstance(value, str) and value.strip() else None


def personas_audience(message: dict[str, Any]) -> str | None:
    personas = (message.get("context") or {}).get("personas")
    if isinstance(personas, dict) and personas.get("computation_class") == "audience":
        return _key(personas.get("computation_key"))
    return None


def is_member(entered_at: datetime | None, exited_at: datetime | None) -> bool:
    return entered_at is not None and (exited_at is None or entered_at > exited_at)


async def known_keys(conn: AsyncConnection, names: set[str]) -> set[str]:
    """Which of these names are audience keys already on record (one query for a batch)."""
    if not names:
        return set()
    found = await conn.scalars(
        sa.select(memberships.c.audience).distinct().where(any_of(conn, memberships.c.audience, sorted(names)))
    )
    return set(found)


def boolean_traits(message: dict[str, Any]) -> dict[str, bool]:
    traits = message.get("traits") or {}
    return {key: value for key, value in traits.items() if isinstance(value, bool)} if isinstance(traits, dict) else {}


def identify_changes(message: dict[str, Any], known: set[str]) -> list[tuple[str, bool]]:
    """(audience, member) pairs an identify records: its declared audience, and its boolean traits named
    by an audience key on record (`known`, which the caller keeps up to date as the batch goes)."""
    flags = boolean_traits(message)
    keys = {key for key in flags if key in known}
    declared = personas_audience(message)
    if declared is not None and declared in flags:
        keys.add(declared)
    return [(key, flags[key]) for key in sorted(keys)]


def track_change(message: dict[str, Any]) -> tuple[str, bool] | None:
    """The (audience, member) pair an `Audience Entered` / `Audience Exited` track records, if it is one."""
    if message["type"] != "track" or message.get("event") not in (ENTERED, EXITED):
        return None
    key = _key((message.get("properties") or {}).get("audience_key")) or personas_audience(message)
    return None if key is None else (key, message["event"] == ENTERED)


async def record(conn: AsyncConnection, changes: list[tuple[int, str, bool, datetime]]) -> None:
    """Record (user_id, audience, member, at) changes: one upsert, the latest entry and exit of each pair."""
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for user_id, key, member, at in changes:
        row = latest.setdefault(
            (user_id, key), {"user_id": user_id, "audience": key, "entered_at": None, "exited_at": None}
        )
        column = "entered_at" if member else "exited_at"
        if row[column] is None or at > row[column]:
            row[column] = at
    await _upsert(conn, list(latest.values()))


async def _upsert(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    await insert_rows(conn, memberships, rows, adapt=_keep_latest)


def _keep_latest(statement: Any) -> Any:
    new, old = statement.excluded, memberships.c
    return statement.on_conflict_do_update(
        index_elements=["user_id", "audience"],
        set_={
            "entered_at": _latest(old.entered_at, new.entered_at),
            "exited_at": _latest(old.exited_at, new.exited_at),
        },
    )


def _latest(old: Any, new: Any) -> Any:
    return sa.case((old.is_(None), new), (new > old, new), else_=old)


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    """Fold the loser's audiences into the target's (the caller merges the profiles)."""
    rows = [
        dict(row._mapping, user_id=target)
        for row in await conn.execute(sa.select(memberships).where(memberships.c.user_id == loser))
    ]
    await conn.execute(memberships.delete().where(memberships.c.user_id == loser))
    await _upsert(conn, rows)


async def forget_user(conn: AsyncConnection, user_id: int) -> int:
    """An erased user's audiences go; returns how many."""
    return (await conn.execute(memberships.delete().where(memberships.c.user_id == user_id))).rowcount


async def user_audiences(conn: AsyncConnection, user_id: int) -> dict[str, dict[str, Any]]:
    rows = await conn.execute(
        sa.select(memberships).where(memberships.c.user_id == user_id).order_by(memberships.c.audience)
    )
    return {
        row.audience: {
            "member": is_member(row.entered_at, row.exited_at),
            "entered_at": format_timestamp(row.entered_at) if row.entered_at else None,
            "exited_at": format_timestamp(row.exited_at) if row.exited_at else None,
        }
        for row in rows
    }


async def members_of(conn: AsyncConnection, user_ids: list[int]) -> dict[int, dict[str, bool]]:
    """Each user's audiences on record, True for those the user is in now (one query for all)."""
    found: dict[int, dict[str, bool]] = {user_id: {} for user_id in user_ids}
    if found:
        for row in await conn.execute(
            sa.select(memberships)
            .where(any_of(conn, memberships.c.user_id, sorted(found)))
            .order_by(memberships.c.user_id, memberships.c.audience)
        ):
            found[row.user_id][row.audience] = is_member(row.entered_at, row.exited_at)
    return found


def member_condition(user_id: Any, key: str) -> Any:
    """SQL: the user (a column or value) is in the audience `key` now."""
    return sa.exists().where(
        memberships.c.user_id == user_id,
        memberships.c.audience == key,
        memberships.c.entered_at.is_not(None),
        sa.or_(memberships.c.exited_at.is_(None), memberships.c.entered_at > memberships.c.exited_at),
    )
