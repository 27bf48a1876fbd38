"""The boolean trait each user segment is sent under with `segment_membership_traits` (Engage style).

A segment's trait is its name in snake_case: Unicode-normalised (NFC), a lower-case letter or digit followed by
an upper-case one split by `_`, lower-cased; letters, marks and digits of every script are kept, and each run of
anything else becomes one `_`, trimmed at both ends ("Clients Fidèles" -> `clients_fidèles`, "Клиенты" ->
`клиенты`, "PayingCustomers" -> `paying_customers`). A name with no letter or digit at all is sent as `segment_`
and the first 8 hex digits of the SHA-256 of its name ("🔥" -> `segment_…`). When several segments' names give
one trait, the oldest segment keeps it and each other one's ends with `_` and those 8 hex digits of its own name.
A trait depends only on names, so a segment renamed or deleted is still sent as `false` under the one it had.
"""

import hashlib
import unicodedata
from collections.abc import Iterable

WORD_CATEGORIES = ("L", "M", "N")  # letters, combining marks (accents, vowel signs), digits


def snake_case(name: str) -> str:
    """The name in snake_case, or "" when it holds no letter or digit."""
    parts: list[str] = []
    previous = ""
    for char in unicodedata.normalize("NFC", name):
        if unicodedata.category(char)[0] not in WORD_CATEGORIES:
            char = "_"
        elif char.isupper() and (previous.islower() or previous.isdigit()):
            parts.append("_")
        parts.append(char)
        previous = char
    spaced = "".join(parts).lower()
    return "_".join(part for part in spaced.split("_") if part)


def name_digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


def membership_traits(segments: Iterable[tuple[int, str]]) -> dict[str, str]:
    """Segment name -> its trait, for the user segments given as (id, name): the oldest keeps a shared trait."""
    traits: dict[str, str] = {}
    taken: set[str] = set()
    for _, name in sorted(segments):
        trait = snake_case(name) or f"segment_{name_digest(name)}"
        traits[name] = trait if trait not in taken else f"{trait}_{name_digest(name)}"
        taken.add(traits[name])
    return traits


def trait_of(name: str, traits: dict[str, str]) -> str:
    """The trait of a segment name: from `traits` (membership_traits of the segments that exist), or for a name no
    segment has any more (renamed, deleted) as it was sent while one did, unless another kept its trait since."""
    if name in traits:
        return traits[name]
    trait = snake_case(name) or f"segment_{name_digest(name)}"
    return trait if trait not in traits.values() else f"{trait}_{name_digest(name)}"
