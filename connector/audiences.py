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

from connector.db import insert
from connector.models import AudienceMembership
from connector.spec import format_timestamp

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


async def apply_identify(conn: AsyncConnection, user_id: int, message: dict[str, Any], at: datetime) -> None:
    flags = {key: value for key, value in (message.get("traits") or {}).items() if isinstance(value, bool)}
    if not flags:
        return
    keys = set(
        await conn.scalars(sa.select(memberships.c.audience).distinct().where(memberships.c.audience.in_(list(flags))))
    )
    if (declared := personas_audience(message)) in flags:
        keys.add(declared)
    await _record(conn, [(user_id, key, flags[key], at) for key in sorted(keys)])


async def apply_track(conn: AsyncConnection, user_id: int, message: dict[str, Any], at: datetime) -> None:
    if message["type"] != "track" or message.get("event") not in (ENTERED, EXITED):
        return
    key = _key((message.get("properties") or {}).get("audience_key")) or personas_audience(message)
    if key is not None:
        await _record(conn, [(user_id, key, message["event"] == ENTERED, at)])


async def _record(conn: AsyncConnection, changes: list[tuple[int, str, bool, datetime]]) -> None:
    await _upsert(
        conn,
        [
            {
                "user_id": user_id,
                "audience": key,
                "entered_at": at if member else None,
                "exited_at": None if member else at,
            }
            for user_id, key, member, at in changes
        ],
    )


async def _upsert(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    if not rows:
        return
    statement = insert(memberships, conn.dialect.name)
    new, old = statement.excluded, memberships.c
    await conn.execute(
        statement.on_conflict_do_update(
            index_elements=["user_id", "audience"],
            set_={
                "entered_at": _latest(old.entered_at, new.entered_at),
                "exited_at": _latest(old.exited_at, new.exited_at),
            },
        ),
        rows,
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
            .where(memberships.c.user_id.in_(sorted(found)))
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
