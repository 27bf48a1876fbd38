"""Dead letters: outbound messages Segment refused for good, kept to be replayed (or forgotten with a person)."""

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.models import DeadLetter

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
