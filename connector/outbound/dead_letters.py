"""Dead letters: outbound messages Segment refused for good, kept to be replayed (or forgotten with a person)."""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.models import DeadLetter, utcnow

dead_letters = DeadLetter.__table__


async def forget_people(conn: AsyncConnection, user_ids: list[str], anonymous_ids: list[str], emails: list[str]) -> int:
    """The dead letters naming an erased person (by userId, anonymousId or traits.email, lower-cased) go.
    Returns how many."""
    message = dead_letters.c.message
    conditions = []
    if user_ids:
        conditions.append(message["userId"].as_string().in_(user_ids))
    if anonymous_ids:
        conditions.append(message["anonymousId"].as_string().in_(anonymous_ids))
    if emails:
        conditions.append(sa.func.lower(message["traits"]["email"].as_string()).in_(emails))
    if not conditions:
        return 0
    return (await conn.execute(dead_letters.delete().where(sa.or_(*conditions)))).rowcount


@dataclass(frozen=True)
class Letter:
    """A message Segment refused for good, why, and Segment's status when it answered."""

    message: dict[str, Any]
    reason: str
    status: int | None


async def add(conn: AsyncConnection, letters: list[Letter], now: datetime) -> None:
    if letters:
        await conn.execute(
            dead_letters.insert(),
            [
                {"message": letter.message, "reason": letter.reason, "status_code": letter.status, "created_at": now}
                for letter in letters
            ],
        )


async def waiting(conn: AsyncConnection, ids: list[int] | None = None) -> list[Any]:
    """The dead letters not replayed yet (or those of them with these ids), oldest first: id and message."""
    query = sa.select(dead_letters.c.id, dead_letters.c.message).where(dead_letters.c.replayed_at.is_(None))
    if ids is not None:
        query = query.where(dead_letters.c.id.in_(ids))
    return list((await conn.execute(query.order_by(dead_letters.c.id))).all())


async def replayed(conn: AsyncConnection, ids: list[int]) -> None:
    await conn.execute(dead_letters.update().where(dead_letters.c.id.in_(ids)).values(replayed_at=utcnow()))


async def refused_again(conn: AsyncConnection, ids: list[int], reason: str, status: int | None) -> None:
    """A replay Segment refused: the letters wait on, with its latest answer."""
    await conn.execute(
        dead_letters.update().where(dead_letters.c.id.in_(ids)).values(reason=reason, status_code=status)
    )
