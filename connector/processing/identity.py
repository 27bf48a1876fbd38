"""Identity resolution: which profile a message belongs to, and merges.

A message resolves to the profile holding any of its identifiers, or creates one.
A message that links several profiles merges them into one, except where that
would join two different user_ids: those are never merged and a conflict is audited.

A batch resolves its messages as a set (`Resolver`): one lookup of every claim, the rules
applied in memory in journal order, then one statement per kind of row. Only merges of two
stored profiles and renames of a stored user_id run as statements of their own.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from email_validator import EmailNotValidError, validate_email
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of, is_postgres
from connector.core.kinds import Entity, MessageType
from connector.core.models import DeliveryState, Event, IdentityAudit, Segment, SegmentMembership, User, UserIdentifier
from connector.core.spec import clean_id
from connector.flow import activity
from connector.processing.accounts import stronger_link
from connector.processing.traits import merge_traits
from connector.profile.computed import merge_users as merge_computed

USER_ID, ANONYMOUS_ID, EMAIL = "user_id", "anonymous_id", "email"
PREVIOUS_USER_ID = "previous_user_id"  # a user_id the profile was renamed from by an alias: still resolves to it
Claim = tuple[str, str]
LOOKUP_CHUNK = 1000

users = User.__table__
identifiers = UserIdentifier.__table__
events = Event.__table__
audit = IdentityAudit.__table__
segments = Segment.__table__
memberships = SegmentMembership.__table__
delivered = DeliveryState.__table__


def normalise_email(value: Any) -> str | None:
    if not isinstance(value, str) or "@" not in value:
        return None
    try:
        return validate_email(value.strip(), check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        return None


def person_traits(message: dict[str, Any]) -> Any:
    """The traits a message carries about its person: its own `traits`, else (none sent) `context.traits`, where
    libraries put the user's traits on a track, page or screen. A group call's `traits` describe the group (the
    Spec: "email: Email address of group"), never the person: only its `context.traits` speak for the user."""
    own = message.get("traits") if message.get("type") != MessageType.GROUP else None
    return own or (message.get("context") or {}).get("traits") or {}


def message_email(message: dict[str, Any]) -> str | None:
    """The person's email (normalised) from `person_traits`: a group's address never claims a profile."""
    traits = person_traits(message)
    return normalise_email(traits.get("email")) if isinstance(traits, dict) else None


def claims_of(message: dict[str, Any], identify_by_email: bool) -> list[Claim]:
    claims: list[Claim] = []
    if user_id := clean_id(message.get("userId")):
        claims.append((USER_ID, user_id))
    if anonymous_id := clean_id(message.get("anonymousId")):
        claims.append((ANONYMOUS_ID, anonymous_id))
    if identify_by_email and (email := message_email(message)):
        claims.append((EMAIL, email))
    return claims


async def lookup(conn: AsyncConnection, claims: list[Claim]) -> dict[Claim, int]:
    """The owner of each claim that has one; a user_id claim also finds the profile renamed from it."""
    if not claims:
        return {}
    wanted = list(dict.fromkeys(claims + [(PREVIOUS_USER_ID, value) for kind, value in claims if kind == USER_ID]))
    if is_postgres(conn):
        # Two array parameters: one prepared statement whatever the count (a tuple IN list is planned anew
        # for every length, and took 100 ms for a batch's thousand claims).
        rows = list(
            await conn.execute(
                _LOOKUP_UNNEST, {"kinds": [kind for kind, _ in wanted], "values": [value for _, value in wanted]}
            )
        )
    else:
        rows = []
        for start in range(0, len(wanted), LOOKUP_CHUNK):
            rows += await conn.execute(
                sa.select(identifiers.c.kind, identifiers.c.value, identifiers.c.user_id).where(
                    sa.tuple_(identifiers.c.kind, identifiers.c.value).in_(wanted[start : start + LOOKUP_CHUNK])
                )
            )
    found: dict[Claim, int] = {}
    renamed: dict[Claim, int] = {}
    for row in rows:
        if row.kind == PREVIOUS_USER_ID:
            renamed[(USER_ID, row.value)] = row.user_id
        else:
            found[(row.kind, row.value)] = row.user_id
    return {**renamed, **found}


_LOOKUP_UNNEST = sa.text(
    "SELECT i.kind, i.value, i.user_id FROM user_identifiers i "
    "JOIN unnest(CAST(:kinds AS varchar[]), CAST(:values AS varchar[])) AS wanted(kind, value) "
    "ON i.kind = wanted.kind AND i.value = wanted.value"
)


async def held_user_ids(conn: AsyncConnection, owners: list[int]) -> dict[int, str]:
    """The user_id each of these profiles holds (a profile holds at most one)."""
    if not owners:
        return {}
    rows = await conn.execute(
        sa.select(identifiers.c.user_id, identifiers.c.value).where(
            any_of(conn, identifiers.c.user_id, owners), identifiers.c.kind == USER_ID
        )
    )
    return {row.user_id: row.value for row in rows}


async def rename_user_id(
    conn: AsyncConnection, user_id: int, previous: str, new: str, message_id: str, now: datetime
) -> bool:
    """The Spec's way to change a user's id: alias from the profile's userId to one nobody holds.

    The profile takes the new user_id and keeps the old one as previous_user_id, so messages
    for the old id still reach it. False (nothing done) unless `previous` is its current user_id.
    """
    renamed = await conn.execute(
        identifiers.update()
        .where(identifiers.c.user_id == user_id, identifiers.c.kind == USER_ID, identifiers.c.value == previous)
        .values(kind=PREVIOUS_USER_ID)
    )
    if renamed.rowcount != 1:
        return False
    await conn.execute(identifiers.insert().values(user_id=user_id, kind=USER_ID, value=new, created_at=now))
    await conn.execute(audit.insert().values(**_rename_audit(user_id, previous, new, message_id), created_at=now))
    return True


@dataclass(frozen=True)
class StoredMerge:
    """A merge of two stored profiles, to run as statements: `merged` folds into `survivor`."""

    survivor: int
    merged: int
    message_id: str


@dataclass(frozen=True)
class StoredRename:
    """An alias that renames a stored profile's user_id from `previous` to `new`, to run as statements."""

    holder: int
    previous: str
    new: str
    message_id: str


NEW = 1 << 62  # keys of the profiles a batch creates: above every stored id, in the order of creation


def is_new(key: int) -> bool:
    return key >= NEW


class Resolver:
    """A batch's identity resolution, in memory, message by message in journal order.

    It starts from the stored owners of the batch's claims and the user_id each owner holds, and
    applies the rules of the module docstring as if each message were resolved against the
    database left by the ones before it. Profiles it creates get keys from NEW up (ids are
    allocated once the batch knows how many); a merge between two of them, or between one of them
    and a stored profile, is folded here (the stored profile survives) and audited with no
    merged_user_id: the merged profile was never stored. A merge of two stored profiles, and a
    rename of a stored user_id, are recorded in `operations`, to run in order before the batch
    writes anything.
    """

    def __init__(self, owners: dict[Claim, int], held: dict[int, str]):
        self.owner = dict(owners)  # claim -> profile key; follow `find` (the profile may have merged since)
        self.held = dict(held)  # profile key -> the user_id it holds
        self.parent: dict[int, int] = {}  # merged profile -> the profile it merged into
        self.created = 0
        self.new_claims: dict[Claim, int] = {}  # identifiers to store: (kind, value) -> profile key
        self.claimed_by: dict[int, list[Claim]] = {}  # the new claims of each profile the batch created
        self.operations: list[StoredMerge | StoredRename] = []  # what must run as statements, in order
        self.audits: list[dict[str, Any]] = []  # conflicts, and renames of profiles the batch created

    def find(self, key: int) -> int:
        while key in self.parent:
            key = self.parent[key]
        return key

    def resolve(self, claims: list[Claim], message_id: str) -> int:
        """The profile for these claims (one message's), merging the profiles they link where allowed."""
        found = {claim: self.find(self.owner[claim]) for claim in claims if claim in self.owner}
        owners = list(dict.fromkeys(found[claim] for claim in claims if claim in found))
        claimed_user_id = next((value for kind, value in claims if kind == USER_ID), None)
        held = {owner: self.held[owner] for owner in owners if owner in self.held}
        target: int | None
        if claimed_user_id and (USER_ID, claimed_user_id) in found:
            target = found[(USER_ID, claimed_user_id)]
        elif claimed_user_id:
            free = [owner for owner in owners if owner not in held]
            target = min(free) if free else None
        else:
            holders = [owner for owner in owners if owner in held]
            target = holders[0] if holders else (min(owners) if owners else None)
        if target is None:
            target = NEW + self.created
            self.created += 1
        effective = held.get(target) or claimed_user_id
        conflicts = []
        for owner in owners:
            if owner == target:
                continue
            if owner in held and held[owner] != effective:
                conflicts.append(owner)
            else:
                self._merge(target, owner, message_id)
        if conflicts:
            self.audits.append(
                {
                    "action": "conflict",
                    "kept_user_id": target,
                    "merged_user_id": None,
                    "message_id": message_id,
                    "details": {
                        "reason": "different user_ids",
                        "user_ids": sorted({held[c] for c in conflicts} | {effective}),
                        "profiles": sorted(conflicts),
                    },
                }
            )
        target = self.find(target)
        for claim in claims:
            if claim not in found:
                self._claim(claim, target)
                if claim[0] == USER_ID:
                    self.held[target] = claim[1]
        return target

    def _claim(self, claim: Claim, key: int) -> None:
        """A new identifier for the profile `key`; a previous_user_id answers lookups of the user_id."""
        kind, value = claim
        self.owner[(USER_ID, value) if kind == PREVIOUS_USER_ID else claim] = key
        self.new_claims[claim] = key
        if is_new(key):
            self.claimed_by.setdefault(key, []).append(claim)

    def _merge(self, target: int, loser: int, message_id: str) -> None:
        survivor, merged = self.find(target), self.find(loser)
        if survivor == merged:
            return
        if is_new(survivor) and not is_new(merged):  # a stored profile outlives one the batch created
            survivor, merged = merged, survivor
        if is_new(merged):  # audited here: merge_users audits the merges it runs
            taken = self.claimed_by.pop(merged, [])
            self.claimed_by.setdefault(survivor, []).extend(taken)
            moved = sorted(f"{kind}:{value}" for kind, value in taken)
            self.audits.append(
                {
                    "action": "merge",
                    "kept_user_id": survivor,
                    "merged_user_id": None,
                    "message_id": message_id,
                    "details": {"identifiers": moved},
                }
            )
        else:
            self.operations.append(StoredMerge(survivor, merged, message_id))
        self.parent[merged] = survivor
        if merged in self.held:
            self.held.setdefault(survivor, self.held.pop(merged))

    def rename(self, previous: str, new: str, message_id: str) -> int | None:
        """alias from a profile's user_id to one nobody holds: the profile takes the new user_id and keeps
        the old one as previous_user_id. None (nothing done) unless `previous` is some profile's user_id."""
        owner = self.owner.get((USER_ID, previous))
        if owner is None or (USER_ID, new) in self.owner:
            return None
        holder = self.find(owner)
        if self.held.get(holder) != previous:
            return None
        self.held[holder] = new
        self.owner[(USER_ID, new)] = holder
        if self.new_claims.pop((USER_ID, previous), None) is None:
            self.operations.append(StoredRename(holder, previous, new, message_id))
        else:  # the batch created this user_id: store it renamed at once
            if (USER_ID, previous) in self.claimed_by.get(holder, []):
                self.claimed_by[holder].remove((USER_ID, previous))
            self._claim((PREVIOUS_USER_ID, previous), holder)
            self._claim((USER_ID, new), holder)
            self.audits.append(_rename_audit(holder, previous, new, message_id))
        return holder

    def alias(self, previous: str | None, new: str | None, message_id: str) -> int:
        """alias from `previous` to `new`: a rename when `previous` is a profile's user_id and nobody holds
        `new`; otherwise the profiles of either id merge as any message's claims would (two user_ids never).

        Either way `previous` names the profile from then on, as a user_id (a previous_user_id) and as an
        anonymous_id, so the messages of `previous` reach it whether they were applied before the alias or
        after: journal partitions keep the order of one identity's messages, not of two identities'.
        """
        target = self.rename(previous, new, message_id) if previous and new else None
        if target is None:
            target = self.resolve(self.alias_claims(previous, new), message_id)
        if previous and (USER_ID, previous) not in self.owner:
            self._claim((PREVIOUS_USER_ID, previous), target)
        if previous and (ANONYMOUS_ID, previous) not in self.owner:
            self._claim((ANONYMOUS_ID, previous), target)
        return target

    def alias_claims(self, previous: str | None, new: str | None) -> list[Claim]:
        """alias merges previousId's profile into userId's: previousId may be either kind of id."""
        claims: list[Claim] = [(USER_ID, new)] if new else []
        if previous:
            known = [claim for claim in ((USER_ID, previous), (ANONYMOUS_ID, previous)) if claim in self.owner]
            claims += known or [(ANONYMOUS_ID, previous)]
        return claims


def _rename_audit(user_id: int, previous: str, new: str, message_id: str) -> dict[str, Any]:
    return {
        "action": "rename",
        "kept_user_id": user_id,
        "merged_user_id": None,
        "message_id": message_id,
        "details": {"previous_user_id": previous, "user_id": new},
    }


async def allocate_ids(conn: AsyncConnection, table: sa.Table, count: int) -> list[int]:
    """`count` fresh ids for `table`, ascending: a batch's new rows are written with the ids it resolved them to.

    On PostgreSQL from the table's sequence; on SQLite (one writer, ids are max + 1) after the largest."""
    if count == 0:
        return []
    if is_postgres(conn):
        ids = await conn.scalars(
            sa.text(f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, :n)"),
            {"n": count},
        )
        return sorted(ids)
    largest = int(await conn.scalar(sa.select(sa.func.coalesce(sa.func.max(table.c.id), 0))) or 0)
    return list(range(largest + 1, largest + 1 + count))


async def merge_users(conn: AsyncConnection, target: int, loser: int, message_id: str, now: datetime) -> None:
    """Fold `loser` into `target` in the caller's transaction, and audit it."""
    rows = {row.id: row for row in await conn.execute(sa.select(users).where(users.c.id.in_([target, loser])))}
    kept, gone = rows[target], rows[loser]
    traits, stamps = dict(kept.traits), dict(kept.trait_timestamps)
    merge_traits(traits, stamps, gone.traits, gone.trait_timestamps)
    moved = [
        f"{row.kind}:{row.value}"
        for row in await conn.execute(
            sa.select(identifiers.c.kind, identifiers.c.value).where(identifiers.c.user_id == loser)
        )
    ]
    await conn.execute(identifiers.update().where(identifiers.c.user_id == loser).values(user_id=target))
    await conn.execute(events.update().where(events.c.user_id == loser).values(user_id=target))
    await activity.move(conn, Entity.USER, loser, target)
    last_seen = max((t for t in (kept.last_seen_at, gone.last_seen_at) if t is not None), default=None)
    link = stronger_link(kept, gone)
    await conn.execute(
        users.update()
        .where(users.c.id == target)
        .values(
            traits=traits,
            trait_timestamps=stamps,
            created_at=min(kept.created_at, gone.created_at),
            updated_at=now,
            last_seen_at=last_seen,
            account_id=link.account_id,
            account_link=link.account_link,
            account_linked_at=link.account_linked_at,
        )
    )
    await merge_computed(conn, target, loser)
    await conn.execute(users.delete().where(users.c.id == loser))
    await conn.execute(
        audit.insert().values(
            action="merge",
            kept_user_id=target,
            merged_user_id=loser,
            message_id=message_id,
            details={"identifiers": moved},
            created_at=now,
        )
    )
