"""Carry a batch's changes forward, inside the same transaction as the changes themselves.

So a committed profile change always has its outbox row: a crash can never leave a
change that is stored but never sent.
"""

from sqlalchemy.ext.asyncio import AsyncConnection

from connector import outbox
from connector.changes import Changes
from connector.segments import membership
from connector.settings import ConnectorSettings


async def propagate(conn: AsyncConnection, settings: ConnectorSettings, changes: Changes) -> None:
    await membership.refresh(conn, changes)
    await outbox.enqueue(conn, outbox.USER, changes.users - changes.merged_away)
    await outbox.enqueue(conn, outbox.ACCOUNT, changes.accounts)
    await outbox.enqueue(conn, outbox.EVENT, changes.events)
