"""The processing stage: apply a batch of journal rows to users, accounts and events.

Journal order includes privacy: a `delete` message erases the person where it stands in the
journal (what came before it is applied first, then erased), and a message naming a suppressed
identifier is dropped (counted as `suppressed`, its payload blanked). The suppression list is
read once per batch, after the batch has leased its partitions (`processing/privacy.py` says why
the processor, not the inbound append). A person's messages may sit in several partitions, so an
erasure first waits until no other batch is in flight (journal.hold_all): a batch that started
before it has committed, and every batch after it reads the suppression list it wrote.

The caller (connector/service/batch.py) owns the transaction: this stage writes, and never commits.
"""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.kinds import MessageType
from connector.core.logs import get_logger
from connector.core.metrics import ERASED, PROCESSED
from connector.core.models import utcnow
from connector.core.settings import ConnectorSettings
from connector.flow import journal
from connector.flow.changes import Changes, Erasure
from connector.processing import privacy
from connector.processing.apply import BatchApplier, Incoming
from connector.processing.identity import Claim, lookup

log = get_logger()


async def apply_journal(conn: AsyncConnection, rows: list[Any], settings: ConnectorSettings) -> Changes:
    """Apply journal rows (id, payload, source) in order; return what changed. Runs of messages between
    `delete` messages go to the batch applier; suppressed messages are dropped and their payloads blanked."""
    changes = Changes()
    claims = [privacy.message_claims(row.payload) for row in rows]
    suppressed = await privacy.suppressed(conn, set().union(*claims))
    run: list[Incoming] = []
    dropped: list[int] = []
    for row, named in zip(rows, claims, strict=True):
        message = row.payload
        if suppressed & named:
            dropped.append(row.id)
            changes.skipped += 1
            PROCESSED.labels(message["type"], "suppressed").inc()
            log.info("incoming.message.skip", reason="suppressed", type=message["type"], journal_id=row.id)
        elif message["type"] == MessageType.DELETE:
            await apply_messages(conn, run, settings, changes)
            run = []
            await journal.hold_all(conn)
            erasure = await erase(conn, [], named, changes, via="message")
            suppressed |= erasure.claims
            changes.processed += 1
            PROCESSED.labels(MessageType.DELETE, "success").inc()
        else:
            run.append(Incoming(message, row.source, row.id))
    await apply_messages(conn, run, settings, changes)
    await journal.blank(conn, dropped)
    return changes


async def erase(conn: AsyncConnection, user_ids: list[int], claims: set[Claim], changes: Changes, via: str) -> Erasure:
    """Erase these profiles and those holding `claims` in processing's tables; `changes` forgets them and carries
    the erasure to the other stages (service/ composes the rest, then privacy.record). The caller holds the
    journal."""
    owners = sorted(set(user_ids) | set((await lookup(conn, sorted(claims))).values()))
    erasure = await privacy.erase(conn, owners, claims, utcnow())
    changes.users -= set(erasure.users)
    changes.events = [event_id for event_id in changes.events if event_id not in erasure.events]
    changes.accounts |= erasure.accounts
    if not erasure.users and not erasure.claims:
        return erasure
    ERASED.labels(via).inc(len(erasure.users))
    erasure.via = via
    changes.erasures.append(erasure)
    return erasure


async def apply_messages(
    conn: AsyncConnection, messages: list[Incoming], settings: ConnectorSettings, changes: Changes
) -> None:
    """Apply journal messages in journal order (rows this transaction leased: events read from them)."""
    await BatchApplier(conn, settings, changes).apply(messages)
