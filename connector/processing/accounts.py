"""Accounts from group calls: keyed by groupId, with traits.domain as a second claim."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of
from connector.core.models import Account as AccountRow
from connector.processing.traits import apply_traits, update_traits

accounts = AccountRow.__table__


def normalise_domain(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    domain = value.strip().lower()
    for prefix in ("https://", "http://"):
        domain = domain.removeprefix(prefix)
    domain = domain.split("/", 1)[0].removeprefix("www.").rstrip(".")
    return domain if "." in domain and " " not in domain and len(domain) <= 255 else None


class Account:
    """An account as a batch sees it: its claims (group id, domain) and traits."""

    __slots__ = ("changed", "domain", "group_id", "id", "new", "stamps", "traits")

    def __init__(
        self,
        key: int,
        group_id: str | None,
        domain: str | None,
        traits: dict[str, Any],
        stamps: dict[str, str],
        new: bool,
    ):
        self.id = key
        self.group_id = group_id
        self.domain = domain
        self.traits = traits
        self.stamps = stamps
        self.changed = new
        self.new = new


class AccountBook:
    """The accounts a batch touches, found by group id and by domain, changed in memory in journal order.

    Conflicts are rules, not errors: a domain belongs to one account. A group call whose domain another
    account holds gets (or keeps) an account of its own group id without the domain, and the conflict
    is recorded in `conflicts` (an identity_audit row `domain_conflict`). Accounts the batch creates get
    keys from `first_new_key` up, in the order of creation; ids are allocated once the batch knows how
    many.
    """

    def __init__(self, rows: Iterable[Any], first_new_key: int):
        self.by_id: dict[int, Account] = {}
        self.by_group: dict[str, Account] = {}
        self.by_domain: dict[str, Account] = {}
        self.next_key = first_new_key
        self.conflicts: list[tuple[str, str | None, Account, str]] = []  # (domain, group id, holder, message id)
        for row in rows:
            self._index(Account(row.id, row.group_id, row.domain, dict(row.traits), dict(row.trait_timestamps), False))

    def _index(self, account: Account) -> None:
        self.by_id[account.id] = account
        if account.group_id:
            self.by_group[account.group_id] = account
        if account.domain:
            self.by_domain[account.domain] = account

    def upsert(
        self, group_id: str | None, domain: str | None, traits: dict[str, Any], at: str, message_id: str
    ) -> tuple[Account, bool, list[str]]:
        """Find or create the account for (group_id, domain); apply traits.

        Returns (the account, whether it changed, the names of the traits that changed)."""
        account = self.by_group.get(group_id) if group_id else None
        if account is None and domain:
            account = self.by_domain.get(domain)
            if account is not None and group_id and account.group_id not in (None, group_id):
                self._conflict(domain, group_id, account, message_id)
                account, domain = None, None  # a new account of this group, without the domain
        if account is None:
            stamps: dict[str, str] = {}
            values: dict[str, Any] = {}
            changed = apply_traits(values, stamps, traits, at)
            account = Account(self.next_key, group_id, domain, values, stamps, True)
            self.next_key += 1
            self._index(account)
            return account, True, changed
        changed, store = update_traits(account.traits, account.stamps, traits, at)
        claimed = False
        if group_id and account.group_id is None:
            account.group_id = group_id
            self.by_group[group_id] = account
            claimed = True
        if domain and account.domain is None:
            holder = self.by_domain.get(domain)
            if holder is None:
                account.domain = domain
                self.by_domain[domain] = account
                claimed = True
            elif holder is not account:
                self._conflict(domain, group_id, holder, message_id)
        account.changed |= store or claimed
        return account, bool(changed) or claimed, changed

    def _conflict(self, domain: str, group_id: str | None, holder: Account, message_id: str) -> None:
        self.conflicts.append((domain, group_id, holder, message_id))

    def conflict_audits(self) -> list[dict[str, Any]]:
        """identity_audit rows of the domain conflicts (once the accounts have their ids)."""
        return [
            {
                "action": "domain_conflict",
                "kept_user_id": None,
                "merged_user_id": None,
                "message_id": message_id,
                "details": {
                    "domain": domain,
                    "group_id": group_id,
                    "held_by_group_id": holder.group_id,
                    "held_by_account_id": holder.id,
                },
            }
            for domain, group_id, holder, message_id in self.conflicts
        ]

    def created(self) -> list[Account]:
        return [account for account in self.by_id.values() if account.new]

    def changed_stored(self) -> list[Account]:
        return [account for account in self.by_id.values() if account.changed and not account.new]


async def load_for_update(conn: AsyncConnection, group_ids: list[str], domains: list[str]) -> list[Any]:
    """The stored accounts with these group ids or domains, locked (PostgreSQL) in id order."""
    if not (group_ids or domains):
        return []
    return list(
        await conn.execute(
            sa.select(
                accounts.c.id, accounts.c.group_id, accounts.c.domain, accounts.c.traits, accounts.c.trait_timestamps
            )
            .where(sa.or_(any_of(conn, accounts.c.group_id, group_ids), any_of(conn, accounts.c.domain, domains)))
            .order_by(accounts.c.id)
            .with_for_update()
        )
    )


def link_allowed(current: Any, account_id: int, link: str, at: datetime) -> bool:
    """Whether a message of time `at` links a user (with account_id, account_link, account_linked_at) to
    `account_id` by `link` ("group" or "domain"), and that changes something.

    An explicit group link is never replaced by a domain link. Between links of the same
    kind the newest message wins, as for traits: a late, older group call does not move
    the user back. Equal times go to the larger account id, so arrival order never matters.
    """
    linked_at = current.account_linked_at
    newer = (
        linked_at is None
        or linked_at < at
        or (linked_at == at and current.account_id is not None and current.account_id < account_id)
    )
    if link == "group":
        allowed = current.account_link is None or current.account_link == "domain" or newer
    else:
        allowed = current.account_link is None or (current.account_link == "domain" and newer)
    changes_something = (
        current.account_id is None
        or current.account_id != account_id
        or (current.account_link is not None and current.account_link != link)
    )
    return allowed and changes_something


def stronger_link(first: Any, second: Any) -> Any:
    """Of two users' account links (rows with account_id, account_link, account_linked_at), the one
    a merged profile keeps: by the rule of link_allowed."""

    def strength(row: Any) -> tuple[bool, bool, Any, int]:
        return (
            row.account_id is not None,
            row.account_link == "group",
            row.account_linked_at or datetime.min.replace(tzinfo=UTC),
            row.account_id or 0,
        )

    return max(first, second, key=strength)
