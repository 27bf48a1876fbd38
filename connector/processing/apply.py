"""Apply a run of journal messages to users, accounts and events, as a set.

The statements a run needs do not grow with its messages:

1. Claims. Every identifier the run names is looked up at once. On PostgreSQL the profiles that hold
   them are then locked in id order and looked up again, until nothing moved (a worker on another
   partition may have merged one meanwhile); the accounts the run's group calls and company emails
   name are locked after them, in id order. Locks in one order cannot deadlock one another; a
   deadlock with anything else rolls the batch back, and the batch (service/batch.py) retries it. The accounts the
   run's users are merely linked to are not locked: what a batch writes of them (usage sums, segment
   memberships) is safe beside another batch (usage.py, segments/membership.py), and a lock on them
   would make every batch of a shared account's users wait for the one before.
2. Identity, in memory and in journal order: each message's profile by the rules of identity.py
   (`Resolver`), each group call's account (`AccountBook`). New profiles and accounts get ids from one
   statement each. A merge of two stored profiles runs now (identity.merge_users), before the run
   writes anything, so it moves only what was stored before.
3. Data, in memory and in journal order: traits by their timestamps, account links by theirs, events
   with the account of their time, audiences, the names seen (trait keys, event names), the activity log
   (an `incoming.user.success` entry per applied message, an `incoming.account.success` per group call
   that changed its account). Then each profile's persona is read again from its title trait as the run
   left it (connector/profile/persona.py).
4. Writes, one statement per kind of row: accounts, users, identifiers, events, usage, audiences,
   audits, activity, seen names.

A row another worker stored since the lookup (an identifier, a group id, a domain) makes the insert
skip it (ON CONFLICT DO NOTHING); that raises db.Contention, and service/batch.py retries the batch, whose
lookup then finds it. Two workers never create two profiles for one identifier.
"""

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import Contention, any_of, insert, insert_rows, is_postgres, recordset
from connector.core.kinds import Action, Entity, MessageType
from connector.core.logs import get_logger
from connector.core.metrics import PROCESSED
from connector.core.models import Account as AccountRow
from connector.core.models import Event, IdentityAudit, JournalEntry, User, UserIdentifier, utcnow
from connector.core.settings import ConnectorSettings
from connector.core.spec import clean_id, parse_timestamp
from connector.flow import activity, journal
from connector.flow.changes import Changes, Merge
from connector.processing import accounts, identity
from connector.processing.domains import company_domain
from connector.processing.traits import update_traits
from connector.profile import audiences, names, persona, usage

users = User.__table__
events = Event.__table__
identifiers = UserIdentifier.__table__
audit = IdentityAudit.__table__
account_rows = AccountRow.__table__
journal_rows = JournalEntry.__table__
LOCK_ATTEMPTS = 5
log = get_logger()


def event_name(message: dict[str, Any]) -> str:
    return str(message["event"]) if message["type"] == MessageType.TRACK else str(message["type"])


def event_properties(message: dict[str, Any]) -> dict[str, Any]:
    """The properties an event stores: the message's own (the same object), with a page's or screen's name and
    category added where its properties lack them (then a new dict)."""
    properties: dict[str, Any] = message.get("properties") or {}
    if message["type"] in (MessageType.PAGE, MessageType.SCREEN):
        added = {
            key: message[key] for key in ("name", "category") if message.get(key) is not None and key not in properties
        }
        if added:
            return {**properties, **added}
    return properties


# The setting that turns each kind of call off: a call of a kind turned off is skipped, not applied.
SWITCHES: dict[str, str] = {
    MessageType.PAGE: "handle_pages",
    MessageType.SCREEN: "handle_screens",
    MessageType.GROUP: "handle_accounts",
}


def disabled_reason(kind: str, settings: ConnectorSettings) -> str | None:
    """Why a call of this kind is not applied ("Handle group calls is off", the setting's title), or None."""
    switch = SWITCHES.get(kind)
    if switch is None or getattr(settings, switch):
        return None
    return f"{type(settings).model_fields[switch].title} is off"


class Profile:
    """The columns of a user that a run changes."""

    __slots__ = (
        "account_id",
        "account_link",
        "account_linked_at",
        "dirty",
        "last_seen_at",
        "new",
        "persona",
        "rescan",
        "stamps",
        "traits",
    )

    def __init__(self, row: Any = None):
        self.new = row is None
        self.traits: dict[str, Any] = dict(row.traits) if row else {}
        self.stamps: dict[str, str] = dict(row.trait_timestamps) if row else {}
        self.last_seen_at: datetime | None = row.last_seen_at if row else None
        self.account_id: int | None = row.account_id if row else None
        self.account_link: str | None = row.account_link if row else None
        self.account_linked_at: datetime | None = row.account_linked_at if row else None
        # (seniority, department) as stored: persona.py reads them from the title trait
        self.persona: tuple[str | None, str | None] = (
            (row.persona_seniority, row.persona_department) if row else (None, None)
        )
        self.dirty = False
        # The stored persona is the stored traits' (a pattern change is `connector persona rebuild`'s to
        # apply): it is read again only for a new profile, one whose traits a message or a merge changed.
        self.rescan = self.new

    def scan_persona(self) -> None:
        """The persona of the traits as they are now (after this run's messages, or a merge's)."""
        if not self.rescan:
            return
        found = persona.persona_of(self.traits, self.stamps)
        if found != self.persona:
            self.persona = found
            self.dirty = True


class Incoming(NamedTuple):
    """A journal row to apply: its message, where it came in (journal.source) and its id."""

    message: dict[str, Any]
    source: str
    journal_id: int


@dataclass
class Step:
    """One message of the run, as identity resolution left it."""

    incoming: Incoming
    profile: int  # a key of the Resolver
    account: accounts.Account | None = None  # a group call's account, or an identify's company account
    account_changed: bool = False
    account_traits_changed: list[str] = field(default_factory=list)


class BatchApplier:
    def __init__(self, conn: AsyncConnection, settings: ConnectorSettings, changes: Changes):
        self.conn = conn
        self.settings = settings
        self.changes = changes
        self.now = utcnow()
        self.profiles: dict[int, Profile] = {}
        self.survivors: set[int] = set()  # stored profiles a merge of this run added another's traits to
        self.events: list[dict[str, Any]] = []
        self.event_usage: dict[str, list[dict[str, Any]]] = {}  # by message id: what the event adds if stored
        # PostgreSQL: an event's context, and its properties where they are the message's own, are read from its
        # journal row by the INSERT (journal.PROCESSED_CONTEXT says why); SQLite stores what the message holds.
        self.events_from_journal = is_postgres(conn)
        self.audience_changes: list[tuple[int, str, bool, datetime]] = []
        self.activity: list[dict[str, Any]] = []
        self.names: set[tuple[str, str, str]] = set()  # trait keys and event names the run saw (profile/names.py)
        self.outcomes: Counter[str] = Counter()  # applied messages by type, for the metric (once per batch)

    async def apply(self, messages: list[Incoming]) -> None:
        """Apply journal messages in journal order."""
        run = []
        skipped: dict[str, list[int]] = {}
        for incoming in messages:
            message = incoming.message
            reason = disabled_reason(message["type"], self.settings)
            if reason is not None:
                skipped.setdefault(reason, []).append(incoming.journal_id)
                self.changes.skipped += 1
                PROCESSED.labels(message["type"], "skipped").inc()
                log.info(f"incoming.{message['type']}.skip", reason=reason, message_id=message["messageId"])
            else:
                run.append(incoming)
        for reason, ids in skipped.items():
            await journal.mark_skipped(self.conn, ids, reason)
        if not run:
            return
        claims = [self._claims(incoming.message) for incoming in run]
        account_claims = [self._account_claims(incoming.message) for incoming in run]
        resolver, book = await self._load(claims, account_claims)
        steps = self._resolve(run, claims, account_claims, resolver, book)
        user_of = await self._allocate(resolver, book)
        await self._run_stored_merges(resolver)
        await self._load_profiles({user_of(step.profile) for step in steps})
        known_audiences = await audiences.known_keys(
            self.conn,
            {
                key
                for incoming in run
                if incoming.message["type"] == MessageType.IDENTIFY
                for key in audiences.boolean_traits(incoming.message)
            },
        )
        for step in steps:
            self._apply(step, user_of(step.profile), known_audiences)
        await self._write(resolver, book, user_of)
        for kind, count in self.outcomes.items():
            PROCESSED.labels(kind, "success").inc(count)

    # -- 1. claims ----------------------------------------------------------------------------------

    def _claims(self, message: dict[str, Any]) -> list[identity.Claim]:
        claims = identity.claims_of(message, self.settings.identify_by_email)
        if message["type"] == MessageType.ALIAS and (previous := clean_id(message.get("previousId"))):
            claims += [(identity.USER_ID, previous), (identity.ANONYMOUS_ID, previous)]
        return claims

    def _account_claims(self, message: dict[str, Any]) -> tuple[str | None, str | None]:
        """(group id, domain) a message claims for an account."""
        if message["type"] == MessageType.GROUP:
            traits = message.get("traits") or {}
            return clean_id(message.get("groupId")), accounts.normalise_domain(traits.get("domain"))
        if message["type"] == MessageType.IDENTIFY and self.settings.link_accounts_by_domain:
            return None, company_domain(identity.message_email(message))
        return None, None

    async def _load(
        self, named: list[list[identity.Claim]], account_claims: list[tuple[str | None, str | None]]
    ) -> tuple[identity.Resolver, accounts.AccountBook]:
        claims = list(dict.fromkeys(claim for message_claims in named for claim in message_claims))
        owners = await identity.lookup(self.conn, claims)
        if is_postgres(self.conn):  # SQLite has one writer: nothing moves under this transaction
            owners = await self._lock_owners(claims, owners)
        group_ids = sorted({group_id for group_id, _ in account_claims if group_id})
        domains = sorted({domain for _, domain in account_claims if domain})
        stored = await accounts.load_for_update(self.conn, group_ids, domains)
        held = await identity.held_user_ids(self.conn, sorted(set(owners.values())))
        return identity.Resolver(owners, held), accounts.AccountBook(stored, identity.NEW)

    async def _lock_owners(
        self, claims: list[identity.Claim], owners: dict[identity.Claim, int]
    ) -> dict[identity.Claim, int]:
        """Lock the profiles holding the claims, in id order, until a lookup after the lock finds the same."""
        for _ in range(LOCK_ATTEMPTS):
            await self.conn.execute(
                sa.select(users.c.id)
                .where(any_of(self.conn, users.c.id, sorted(set(owners.values()))))
                .order_by(users.c.id)
                .with_for_update()
            )
            again = await identity.lookup(self.conn, claims)
            if again == owners:
                return owners
            owners = again
        raise Contention("the profiles of this batch kept merging elsewhere")

    # -- 2. identity --------------------------------------------------------------------------------

    def _resolve(
        self,
        run: list[Incoming],
        claims: list[list[identity.Claim]],
        account_claims: list[tuple[str | None, str | None]],
        resolver: identity.Resolver,
        book: accounts.AccountBook,
    ) -> list[Step]:
        steps = []
        for incoming, message_claims, (group_id, domain) in zip(run, claims, account_claims, strict=True):
            message = incoming.message
            message_id = message["messageId"]
            if message["type"] == MessageType.ALIAS:
                previous, new = clean_id(message.get("previousId")), clean_id(message.get("userId"))
                key = resolver.alias(previous, new, message_id)
            else:
                key = resolver.resolve(message_claims, message_id)
            step = Step(incoming, key)
            if message["type"] == MessageType.GROUP:
                step.account, step.account_changed, step.account_traits_changed = book.upsert(
                    group_id, domain, message.get("traits") or {}, message["timestamp"], message_id
                )
            elif domain:
                step.account, step.account_changed, _ = book.upsert(None, domain, {}, message["timestamp"], message_id)
            steps.append(step)
        return steps

    async def _allocate(self, resolver: identity.Resolver, book: accounts.AccountBook) -> Any:
        """Give the profiles and accounts the run created their ids; return the map key -> user id."""
        created = [
            identity.NEW + n for n in range(resolver.created) if resolver.find(identity.NEW + n) == identity.NEW + n
        ]
        ids = dict(zip(created, await identity.allocate_ids(self.conn, users, len(created)), strict=True))
        for user_id in ids.values():
            self.profiles[user_id] = Profile()
        new_accounts = book.created()
        for account, account_id in zip(
            new_accounts, await identity.allocate_ids(self.conn, account_rows, len(new_accounts)), strict=True
        ):
            account.id = account_id

        def user_of(key: int) -> int:
            root = resolver.find(key)
            return ids.get(root, root)

        return user_of

    async def _run_stored_merges(self, resolver: identity.Resolver) -> None:
        for operation in resolver.operations:
            if isinstance(operation, identity.StoredMerge):
                await identity.merge_users(
                    self.conn, operation.survivor, operation.merged, operation.message_id, self.now
                )
                self.changes.merges.append(Merge(operation.survivor, operation.merged))
                self.survivors.add(operation.survivor)
            elif not await identity.rename_user_id(
                self.conn, operation.holder, operation.previous, operation.new, operation.message_id, self.now
            ):
                raise Contention(f"user_id {operation.previous!r} moved while this batch renamed it")

    async def _load_profiles(self, user_ids: set[int]) -> None:
        wanted = sorted(user_ids - self.profiles.keys())
        if not wanted:
            return
        rows = await self.conn.execute(
            sa.select(
                users.c.id,
                users.c.traits,
                users.c.trait_timestamps,
                users.c.last_seen_at,
                users.c.account_id,
                users.c.account_link,
                users.c.account_linked_at,
                users.c.persona_seniority,
                users.c.persona_department,
            ).where(any_of(self.conn, users.c.id, wanted))
        )
        for row in rows:
            profile = self.profiles[row.id] = Profile(row)
            profile.rescan = row.id in self.survivors

    # -- 3. data ------------------------------------------------------------------------------------

    def _apply(self, step: Step, user_id: int, known_audiences: set[str]) -> None:
        message = step.incoming.message
        kind = message["type"]
        profile = self.profiles[user_id]
        timestamp = parse_timestamp(message["timestamp"], "timestamp")
        self.changes.users.add(user_id)
        details: dict[str, Any] = {"type": kind}
        if kind == MessageType.IDENTIFY:
            changed, store = update_traits(
                profile.traits, profile.stamps, message.get("traits") or {}, message["timestamp"]
            )
            profile.dirty |= store
            profile.rescan |= store
            self._saw_traits(Entity.USER, message)
            details["traits_changed"] = changed
            if step.account is not None:
                self._account_changed(step)
                if self._link(profile, step.account.id, "domain", timestamp):
                    log.info(
                        "incoming.account.domain_link",
                        user_id=user_id,
                        account_id=step.account.id,
                        domain=step.account.domain,
                    )
            for key, member in audiences.identify_changes(message, known_audiences):
                known_audiences.add(key)
                self.audience_changes.append((user_id, key, member, timestamp))
        elif kind == MessageType.GROUP and step.account is not None:
            self._saw_traits(Entity.ACCOUNT, message)
            if self._account_changed(step):
                self.activity.append(
                    activity.entry(
                        Entity.ACCOUNT,
                        step.account.id,
                        Action.ACCOUNT_PROCESSED,
                        {
                            "type": MessageType.GROUP.value,
                            "user_id": user_id,
                            "traits_changed": step.account_traits_changed,
                        },
                        message["messageId"],
                    )
                )
            linked = self._link(profile, step.account.id, "group", timestamp)
            details.update({"account_id": step.account.id, "account_linked": linked})
        elif kind in (MessageType.TRACK, MessageType.PAGE, MessageType.SCREEN):
            self._event(step.incoming, user_id, profile, timestamp)
            details["events_added"] = [event_name(message)]
            if (change := audiences.track_change(message)) is not None:
                known_audiences.add(change[0])
                self.audience_changes.append((user_id, *change, timestamp))
        self.activity.append(activity.entry(Entity.USER, user_id, Action.USER_PROCESSED, details, message["messageId"]))
        if profile.last_seen_at is None or profile.last_seen_at < timestamp:
            profile.last_seen_at = timestamp
            profile.dirty = True
        self.changes.processed += 1
        self.outcomes[kind] += 1

    def _saw_traits(self, entity: Entity, message: dict[str, Any]) -> None:
        traits = message.get("traits")
        if isinstance(traits, dict):
            self.names.update(names.seen(entity, names.TRAIT, key) for key in traits)

    def _account_changed(self, step: Step) -> bool:
        if step.account_changed and step.account is not None:
            self.changes.accounts.add(step.account.id)
        return step.account_changed

    def _link(self, profile: Profile, account_id: int, link: str, at: datetime) -> bool:
        if not accounts.link_allowed(profile, account_id, link, at):
            return False
        profile.account_id, profile.account_link, profile.account_linked_at = account_id, link, at
        profile.dirty = True
        self.changes.accounts.add(account_id)
        return True

    def _event(self, incoming: Incoming, user_id: int, profile: Profile, timestamp: datetime) -> None:
        message = incoming.message
        properties = event_properties(message)
        row = {
            "user_id": user_id,
            "account_id": profile.account_id,
            "message_id": message["messageId"],
            "type": message["type"],
            "event": event_name(message)[:255],
            "source": incoming.source,
            "timestamp": timestamp,
            "received_at": parse_timestamp(message["receivedAt"], "receivedAt"),
            "properties": properties,
        }
        if self.events_from_journal:
            row["journal_id"] = incoming.journal_id
            if properties is message.get("properties"):
                row["properties"] = None  # the INSERT reads them from the journal row
        else:
            row["context"] = message.get("context") or {}
            row["integrations"] = message.get("integrations") or None
        self.events.append(row)
        self.names.add(names.seen(Entity.USER, names.EVENT, row["event"]))
        self.event_usage[message["messageId"]] = usage.event_rows(
            _StoredEvent(message["type"], user_id, profile.account_id, timestamp, properties)
        )

    # -- 4. writes ----------------------------------------------------------------------------------

    async def _write(self, resolver: identity.Resolver, book: accounts.AccountBook, user_of: Any) -> None:
        await self._write_accounts(book)
        await self._write_users()
        await self._write_identifiers(resolver, user_of)
        usage_rows = await self._write_events()
        await audiences.record(self.conn, self.audience_changes)
        audits = [_user_audit(row, user_of) for row in resolver.audits] + book.conflict_audits()
        await insert_rows(self.conn, audit, [{**row, "created_at": self.now} for row in audits])
        await activity.append(self.conn, self.activity, self.now)
        await names.record(self.conn, self.names)
        # Last: an account's usage rows are shared with the batches of its other users, which wait for them
        # until this transaction ends; written last, they are held the shortest time.
        await usage.add(self.conn, usage_rows)

    async def _write_accounts(self, book: accounts.AccountBook) -> None:
        created = book.created()
        if created:
            stored = await insert_rows(
                self.conn,
                account_rows,
                [
                    {
                        "id": a.id,
                        "group_id": a.group_id,
                        "domain": a.domain,
                        "traits": a.traits,
                        "trait_timestamps": a.stamps,
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                    for a in created
                ],
                adapt=lambda statement: statement.on_conflict_do_nothing(),
                returning=[account_rows.c.id],
            )
            if len(stored) != len(created):
                raise Contention("an account's group id or domain was stored by another worker")
        changed = book.changed_stored()
        if changed:
            await self.conn.execute(
                account_rows.update()
                .where(account_rows.c.id == sa.bindparam("account_id"))
                .values(
                    group_id=sa.bindparam("group_id"),
                    domain=sa.bindparam("domain"),
                    traits=sa.bindparam("traits"),
                    trait_timestamps=sa.bindparam("stamps"),
                    updated_at=sa.bindparam("now"),
                ),
                [
                    {
                        "account_id": a.id,
                        "group_id": a.group_id,
                        "domain": a.domain,
                        "traits": a.traits,
                        "stamps": a.stamps,
                        "now": self.now,
                    }
                    for a in changed
                ],
            )

    async def _write_users(self) -> None:
        created, changed = [], []
        for user_id, profile in self.profiles.items():
            profile.scan_persona()
            row = {
                "user_id": user_id,
                "traits": profile.traits,
                "stamps": profile.stamps,
                "seen": profile.last_seen_at,
                "account_id": profile.account_id,
                "link": profile.account_link,
                "linked_at": profile.account_linked_at,
                "seniority": profile.persona[0],
                "department": profile.persona[1],
                "now": self.now,
            }
            if profile.new:
                created.append(row)
            elif profile.dirty:
                changed.append(row)
        if created:
            await insert_rows(
                self.conn,
                users,
                [
                    {
                        "id": row["user_id"],
                        "traits": row["traits"],
                        "trait_timestamps": row["stamps"],
                        "last_seen_at": row["seen"],
                        "account_id": row["account_id"],
                        "account_link": row["link"],
                        "account_linked_at": row["linked_at"],
                        "persona_seniority": row["seniority"],
                        "persona_department": row["department"],
                        "created_at": self.now,
                        "updated_at": self.now,
                    }
                    for row in created
                ],
            )
        if changed:
            await self.conn.execute(
                users.update()
                .where(users.c.id == sa.bindparam("user_id"))
                .values(
                    traits=sa.bindparam("traits"),
                    trait_timestamps=sa.bindparam("stamps"),
                    last_seen_at=sa.bindparam("seen"),
                    account_id=sa.bindparam("account_id"),
                    account_link=sa.bindparam("link"),
                    account_linked_at=sa.bindparam("linked_at"),
                    persona_seniority=sa.bindparam("seniority"),
                    persona_department=sa.bindparam("department"),
                    updated_at=sa.bindparam("now"),
                ),
                changed,
            )

    async def _write_identifiers(self, resolver: identity.Resolver, user_of: Any) -> None:
        rows = [
            {"user_id": user_of(key), "kind": kind, "value": value, "created_at": self.now}
            for (kind, value), key in resolver.new_claims.items()
        ]
        if not rows:
            return
        stored = await insert_rows(
            self.conn,
            identifiers,
            rows,
            adapt=lambda statement: statement.on_conflict_do_nothing(),
            returning=[identifiers.c.id],
        )
        if len(stored) != len(rows):
            raise Contention("an identifier of this batch was stored by another worker")

    async def _write_events(self) -> list[dict[str, Any]]:
        """Store the run's events; return the usage rows those stored add."""
        rows = self.events
        if not rows:
            return []
        if self.events_from_journal:
            stored = (await self.conn.execute(_insert_events_from_journal(rows))).all()
        else:
            stored = await insert_rows(
                self.conn,
                events,
                rows,
                adapt=lambda statement: statement.on_conflict_do_nothing(index_elements=["message_id"]),
                returning=[events.c.id, events.c.message_id],
            )
        usage_rows: list[dict[str, Any]] = []
        for event_id, message_id in stored:  # a message stored before (a replay) adds nothing
            self.changes.events.append(event_id)
            added = self.event_usage[message_id]
            usage_rows += added
            self.changes.accounts.update(row["entity_id"] for row in added if row["entity"] == Entity.ACCOUNT)
        return usage_rows


def _insert_events_from_journal(rows: list[dict[str, Any]]) -> Any:
    """PostgreSQL: INSERT the events, taking each one's context and integrations, and its properties where the row
    has none, from its journal row (leased by this transaction, so it is there); RETURNING (id, message_id) of
    those stored."""
    types = {name: events.c[name].type for name in rows[0] if name != "journal_id"}
    records = recordset(rows, {**types, "journal_id": sa.BigInteger()})
    payload = journal_rows.c.payload
    empty = sa.cast(sa.literal("{}"), JSONB)
    integrations = payload["integrations"]
    columns = [name for name in types if name != "properties"]
    select = sa.select(
        *(records.c[name] for name in columns),
        sa.func.coalesce(records.c.properties, payload["properties"], empty),
        sa.func.coalesce(payload["context"], empty),
        # The sender's routing, as the other backend stores it: None when the message had none (or `{}`).
        sa.case((integrations != empty, integrations)),
    ).join_from(records, journal_rows, journal_rows.c.id == records.c.journal_id)
    return (
        insert(events, "postgresql")
        .from_select([*columns, "properties", "context", "integrations"], select)
        .on_conflict_do_nothing(index_elements=["message_id"])
        .returning(events.c.id, events.c.message_id)
    )


def _user_audit(row: dict[str, Any], user_of: Any) -> dict[str, Any]:
    """An audit row the Resolver wrote with its keys, with the profiles' ids."""
    details = dict(row["details"])
    if "profiles" in details:
        details["profiles"] = sorted(user_of(key) for key in details["profiles"])
    return {**row, "kept_user_id": user_of(row["kept_user_id"]), "details": details}


class _StoredEvent(NamedTuple):
    """An event as usage.event_rows reads it."""

    type: str
    user_id: int
    account_id: int | None
    timestamp: datetime
    properties: dict[str, Any]
