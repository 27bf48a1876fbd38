"""Apply a run of journal messages to users, accounts and events, set-based where it can.

Most messages in a steady stream belong to a profile that already holds all of their
identifiers. For those, the profile is known from one lookup for the whole run, and
their writes (events, traits, last-seen times, usage) are buffered and written with one
statement per kind. Everything else (a new identifier, a merge, a group or an alias)
first flushes the buffers, so it sees the database as the messages before it left it,
then goes through identity.resolve one message at a time.

Each applied message adds an `incoming.user.success` entry to the activity log (and a
group that changed its account an `incoming.account.success`), buffered and flushed with
the rest, so a merge finds the loser's entries written and moves them to the survivor.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector import activity, audiences, usage
from connector.changes import Changes
from connector.db import insert
from connector.logs import get_logger
from connector.metrics import PROCESSED
from connector.models import Event, User, utcnow
from connector.processing import accounts, domains, identity
from connector.processing.traits import apply_traits
from connector.settings import ConnectorSettings
from connector.spec import clean_id, parse_timestamp

users = User.__table__
events = Event.__table__
LOOKUP_CHUNK = 1000
log = get_logger()


def event_name(message: dict[str, Any]) -> str:
    return message["event"] if message["type"] == "track" else message["type"]


def event_properties(message: dict[str, Any]) -> dict[str, Any]:
    properties = dict(message.get("properties") or {})
    if message["type"] in ("page", "screen"):
        for key in ("name", "category"):
            if message.get(key) is not None:
                properties.setdefault(key, message[key])
    return properties


def is_disabled(kind: str, settings: ConnectorSettings) -> bool:
    return (
        (kind == "page" and not settings.handle_pages)
        or (kind == "screen" and not settings.handle_screens)
        or (kind == "group" and not settings.handle_accounts)
    )


class Profile:
    """The columns of a user that buffered writes change."""

    __slots__ = ("account_id", "dirty", "last_seen_at", "stamps", "traits")

    def __init__(self, row: Any):
        self.traits: dict[str, Any] = dict(row.traits)
        self.stamps: dict[str, str] = dict(row.trait_timestamps)
        self.last_seen_at: datetime | None = row.last_seen_at
        self.account_id: int | None = row.account_id
        self.dirty = False

    @classmethod
    def new(cls) -> "Profile":
        return cls(_NEW_USER)


class BatchApplier:
    def __init__(self, conn: AsyncConnection, settings: ConnectorSettings, changes: Changes):
        self.conn = conn
        self.settings = settings
        self.changes = changes
        self.now = utcnow()
        self.owners: dict[identity.Claim, int] = {}
        self.profiles: dict[int, Profile] = {}
        self.pending_events: list[dict[str, Any]] = []
        self.pending_messages: dict[str, dict[str, Any]] = {}
        self.seen: dict[int, datetime] = {}
        self.activity: list[dict[str, Any]] = []

    async def apply(self, messages: list[tuple[dict[str, Any], str]]) -> None:
        """Apply (message, source) pairs in order; the source is the inbound journal's."""
        claims = {
            (kind, value)
            for message, _ in messages
            for kind, value in identity.claims_of(message, self.settings.identify_by_email)
        }
        await self._lookup(list(claims))
        await self._load_profiles(set(self.owners.values()))
        for message, source in messages:
            await self._apply_one(message, source)
        await self.flush()

    async def _lookup(self, claims: list[identity.Claim]) -> None:
        for start in range(0, len(claims), LOOKUP_CHUNK):
            self.owners.update(await identity.lookup(self.conn, claims[start : start + LOOKUP_CHUNK]))

    async def _load_profiles(self, user_ids: set[int]) -> None:
        wanted = sorted(user_ids - self.profiles.keys())
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            rows = await self.conn.execute(
                sa.select(
                    users.c.id, users.c.traits, users.c.trait_timestamps, users.c.last_seen_at, users.c.account_id
                ).where(users.c.id.in_(wanted[start : start + LOOKUP_CHUNK]))
            )
            for row in rows:
                self.profiles[row.id] = Profile(row)

    async def _apply_one(self, message: dict[str, Any], source: str) -> None:
        kind = message["type"]
        if is_disabled(kind, self.settings):
            self.changes.skipped += 1
            PROCESSED.labels(kind, "skipped").inc()
            log.info(f"incoming.{kind}.skip", reason="disabled in settings", message_id=message["messageId"])
            return
        timestamp = parse_timestamp(message["timestamp"], "timestamp")
        user_id = self._known_profile(message)
        if user_id is None:
            user_id = await self._resolve(message)
        self.changes.users.add(user_id)

        details: dict[str, Any] = {"type": kind}
        if kind == "identify":
            details["traits_changed"] = await self._identify(user_id, message, timestamp)
        elif kind == "group":
            details.update(await self._group(user_id, message, timestamp))
        elif kind in ("track", "page", "screen"):
            self._buffer_event(user_id, message, timestamp, source)
            details["events_added"] = [event_name(message)]
        self.activity.append(
            activity.entry(activity.USER, user_id, "incoming.user.success", details, message["messageId"])
        )
        self._touch(user_id, timestamp)
        self.changes.processed += 1
        PROCESSED.labels(kind, "success").inc()

    def _known_profile(self, message: dict[str, Any]) -> int | None:
        """The profile when every identifier is already on one profile (nothing to create or merge)."""
        if message["type"] in ("group", "alias"):
            return None
        claims = identity.claims_of(message, self.settings.identify_by_email)
        found = {self.owners.get(claim) for claim in claims}
        if len(found) != 1 or None in found:
            return None
        user_id = found.pop()
        return user_id if user_id in self.profiles else None

    async def _resolve(self, message: dict[str, Any]) -> int:
        if message["type"] == "alias":
            claims = await self._alias_claims(message)
            self.owners.update(await identity.lookup(self.conn, claims))
            renamed = await self._rename(message)
            if renamed is not None:
                return renamed
        else:
            claims = identity.claims_of(message, self.settings.identify_by_email)
        found = {claim: self.owners[claim] for claim in claims if claim in self.owners}
        user_id, merged = await identity.resolve(
            self.conn, claims, self.now, message["messageId"], found=found, before_merge=self.flush
        )
        self.changes.merged_away |= merged
        if merged:
            for claim, owner in list(self.owners.items()):
                if owner in merged:
                    self.owners[claim] = user_id
            for stale in merged | {user_id}:  # the merge rewrote these rows: read them again
                self.profiles.pop(stale, None)
        for claim in claims:
            self.owners.setdefault(claim, user_id)
        if not found:
            self.profiles[user_id] = Profile.new()
        await self._load_profiles({user_id})
        return user_id

    async def _rename(self, message: dict[str, Any]) -> int | None:
        """alias from a profile's userId to a userId no profile holds: the profile takes the new id."""
        previous, new = clean_id(message.get("previousId")), clean_id(message["userId"])
        holder = self.owners.get((identity.USER_ID, previous or ""))
        if holder is None or not new or (identity.USER_ID, new) in self.owners:
            return None
        if not await identity.rename_user_id(self.conn, holder, previous or "", new, message["messageId"], self.now):
            return None
        self.owners[(identity.USER_ID, new)] = holder
        await self._load_profiles({holder})
        return holder

    async def _alias_claims(self, message: dict[str, Any]) -> list[identity.Claim]:
        """alias merges previousId's profile into userId's: previousId may be either kind of id."""
        previous = clean_id(message.get("previousId"))
        claims: list[identity.Claim] = [(identity.USER_ID, clean_id(message["userId"]) or "")]
        if previous:
            known = await identity.lookup(self.conn, [(identity.USER_ID, previous), (identity.ANONYMOUS_ID, previous)])
            claims += list(known) or [(identity.ANONYMOUS_ID, previous)]
        return claims

    async def _identify(self, user_id: int, message: dict[str, Any], timestamp: datetime) -> list[str]:
        """Apply an identify; return the names of the traits it changed."""
        profile = self.profiles[user_id]
        changed = apply_traits(profile.traits, profile.stamps, message.get("traits") or {}, message["timestamp"])
        if changed:
            profile.dirty = True
        if self.settings.link_accounts_by_domain:
            await domains.link_by_domain(self.conn, user_id, message, message["timestamp"], self.now, self.changes)
            profile.account_id = await self.conn.scalar(sa.select(users.c.account_id).where(users.c.id == user_id))
        await audiences.apply_identify(self.conn, user_id, message, timestamp)
        return changed

    async def _group(self, user_id: int, message: dict[str, Any], timestamp: datetime) -> dict[str, Any]:
        """Apply a group; return what it did, for the user's activity entry."""
        traits = message.get("traits") or {}
        account_id, changed, traits_changed = await accounts.upsert_account(
            self.conn,
            clean_id(message.get("groupId")),
            accounts.normalise_domain(traits.get("domain")),
            traits,
            message["timestamp"],
            self.now,
        )
        if changed:
            self.changes.accounts.add(account_id)
            self.activity.append(
                activity.entry(
                    activity.ACCOUNT,
                    account_id,
                    "incoming.account.success",
                    {"type": "group", "user_id": user_id, "traits_changed": traits_changed},
                    message["messageId"],
                )
            )
        linked = await accounts.link_user(self.conn, user_id, account_id, "group", timestamp)
        if linked:
            self.changes.accounts.add(account_id)
            self.profiles[user_id].account_id = account_id
        return {"account_id": account_id, "account_linked": linked}

    def _buffer_event(self, user_id: int, message: dict[str, Any], timestamp: datetime, source: str) -> None:
        self.pending_events.append(
            {
                "user_id": user_id,
                "account_id": self.profiles[user_id].account_id,
                "message_id": message["messageId"],
                "type": message["type"],
                "event": event_name(message)[:255],
                "source": source,
                "timestamp": timestamp,
                "received_at": parse_timestamp(message["receivedAt"], "receivedAt"),
                "properties": event_properties(message),
                "context": message.get("context") or {},
            }
        )
        self.pending_messages[message["messageId"]] = message

    def _touch(self, user_id: int, timestamp: datetime) -> None:
        if user_id not in self.seen or self.seen[user_id] < timestamp:
            self.seen[user_id] = timestamp

    async def flush(self) -> None:
        """Write every buffered change: events (then their usage and audiences), traits, last seen, activity."""
        await self._flush_events()
        await self._flush_profiles()
        entries, self.activity = self.activity, []
        await activity.append(self.conn, entries, self.now)

    async def _flush_events(self) -> None:
        rows, messages = self.pending_events, self.pending_messages
        self.pending_events, self.pending_messages = [], {}
        if not rows:
            return
        statement = insert(events, self.conn.dialect.name).on_conflict_do_nothing(index_elements=["message_id"])
        stored = (await self.conn.execute(statement.returning(events.c.id, events.c.message_id), rows)).all()
        by_message_id = {row["message_id"]: row for row in rows}
        usage_rows: list[dict[str, Any]] = []
        for event_id, message_id in stored:
            row = by_message_id[message_id]
            self.changes.events.append(event_id)
            added = usage.event_rows(_StoredEvent(row))
            usage_rows += added
            if row["account_id"] is not None and added:
                self.changes.accounts.add(row["account_id"])
            await audiences.apply_track(self.conn, row["user_id"], messages[message_id], row["timestamp"])
        await usage.add(self.conn, usage_rows)

    async def _flush_profiles(self) -> None:
        seen, self.seen = self.seen, {}
        updates, touches = [], []
        for user_id, profile in self.profiles.items():
            last_seen = seen.get(user_id)
            if last_seen is not None and profile.last_seen_at is not None and last_seen <= profile.last_seen_at:
                last_seen = None
            if last_seen is not None:
                profile.last_seen_at = last_seen
            if profile.dirty:
                updates.append(
                    {
                        "uid": user_id,
                        "traits": profile.traits,
                        "stamps": profile.stamps,
                        "seen": profile.last_seen_at,
                        "now": self.now,
                    }
                )
                profile.dirty = False
            elif last_seen is not None:
                touches.append({"uid": user_id, "seen": last_seen})
        if updates:
            await self.conn.execute(
                users.update()
                .where(users.c.id == sa.bindparam("uid"))
                .values(
                    traits=sa.bindparam("traits"),
                    trait_timestamps=sa.bindparam("stamps"),
                    last_seen_at=sa.bindparam("seen"),
                    updated_at=sa.bindparam("now"),
                ),
                updates,
            )
        if touches:
            await self.conn.execute(
                users.update().where(users.c.id == sa.bindparam("uid")).values(last_seen_at=sa.bindparam("seen")),
                touches,
            )


class _NewUser:
    traits: dict[str, Any] = {}
    trait_timestamps: dict[str, str] = {}
    last_seen_at = None
    account_id = None


_NEW_USER = _NewUser()


class _StoredEvent:
    """An event row as usage.event_rows reads it, from the values just stored."""

    def __init__(self, row: dict[str, Any]):
        self.type = row["type"]
        self.user_id = row["user_id"]
        self.account_id = row["account_id"]
        self.timestamp = row["timestamp"]
        self.properties = row["properties"]
