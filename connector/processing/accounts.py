"""Accounts from group calls: keyed by groupId, with traits.domain as a second claim."""

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.models import Account, User
from connector.processing.traits import apply_traits

accounts = Account.__table__
users = User.__table__


def normalise_domain(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    domain = value.strip().lower()
    for prefix in ("https://", "http://"):
        domain = domain.removeprefix(prefix)
    domain = domain.split("/", 1)[0].removeprefix("www.").rstrip(".")
    return domain if "." in domain and " " not in domain and len(domain) <= 255 else None


async def upsert_account(
    conn: AsyncConnection, group_id: str | None, domain: str | None, traits: dict[str, Any], at: str, now: datetime
) -> tuple[int, bool, list[str]]:
    """Find or create the account for (group_id, domain); apply traits.

    Returns (id, whether the account changed, the names of the traits that changed)."""
    row = None
    if group_id:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.group_id == group_id))).first()
    if row is None and domain:
        row = (await conn.execute(sa.select(accounts).where(accounts.c.domain == domain))).first()
        if row is not None and group_id and row.group_id not in (None, group_id):
            row = None  # the domain belongs to another group: a new account, without the domain claim
            domain = None
    if row is None:
        taken = domain and await _domain_taken(conn, domain)
        stamps: dict[str, str] = {}
        values: dict[str, Any] = {}
        changed = apply_traits(values, stamps, traits, at)
        result = await conn.execute(
            accounts.insert()
            .values(
                group_id=group_id,
                domain=None if taken else domain,
                traits=values,
                trait_timestamps=stamps,
                created_at=now,
                updated_at=now,
            )
            .returning(accounts.c.id)
        )
        return result.scalar_one(), True, changed
    values, stamps = dict(row.traits), dict(row.trait_timestamps)
    changed = apply_traits(values, stamps, traits, at)
    updates: dict[str, Any] = {}
    if group_id and row.group_id is None:
        updates["group_id"] = group_id
    if domain and row.domain is None and not await _domain_taken(conn, domain):
        updates["domain"] = domain  # a domain another account holds stays with it, as on insert
    if changed or updates:
        await conn.execute(
            accounts.update()
            .where(accounts.c.id == row.id)
            .values(traits=values, trait_timestamps=stamps, updated_at=now, **updates)
        )
    return row.id, bool(changed or updates), changed


async def _domain_taken(conn: AsyncConnection, domain: str) -> bool:
    return (await conn.execute(sa.select(accounts.c.id).where(accounts.c.domain == domain))).first() is not None


async def link_user(conn: AsyncConnection, user_id: int, account_id: int, link: str, at: datetime) -> bool:
    """Link a user to an account, by the message of time `at`; return whether the link changed.

    An explicit group link is never replaced by a domain link. Between links of the same
    kind the newest message wins, as for traits: a late, older group call does not move
    the user back. Equal times go to the larger account id, so arrival order never matters.
    """
    linked_at = users.c.account_linked_at
    newer = sa.or_(linked_at.is_(None), linked_at < at, sa.and_(linked_at == at, users.c.account_id < account_id))
    if link == "group":
        allowed = sa.or_(users.c.account_link.is_(None), users.c.account_link == "domain", newer)
    else:
        allowed = sa.or_(users.c.account_link.is_(None), sa.and_(users.c.account_link == "domain", newer))
    changes_something = sa.or_(
        users.c.account_id.is_(None), users.c.account_id != account_id, users.c.account_link != link
    )
    result = await conn.execute(
        users.update()
        .where(users.c.id == user_id, allowed, changes_something)
        .values(account_id=account_id, account_link=link, account_linked_at=at)
    )
    return result.rowcount > 0


def stronger_link(first: Any, second: Any) -> Any:
    """Of two users' account links (rows with account_id, account_link, account_linked_at), the one
    a merged profile keeps: by the rule of link_user."""

    def strength(row: Any) -> tuple[bool, bool, Any, int]:
        return (
            row.account_id is not None,
            row.account_link == "group",
            row.account_linked_at or datetime.min.replace(tzinfo=UTC),
            row.account_id or 0,
        )

    return max(first, second, key=strength)
