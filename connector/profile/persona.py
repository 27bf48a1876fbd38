"""The persona scanner: a user's seniority and department from their job title.

The rules are data shipped with the package (`connector/data/personas.toml`, whose header says how
a title is read and how a pattern matches); the first rule of an attribute with a matching pattern
decides its value, and a rule whose value is "" decides that it is absent.

The title is the trait `title`, `job_title` or `jobTitle` (a non-empty string): of those present, the
one set by the newest message (the per-trait timestamps of processing/traits.py), ties in that
order. A late, older message therefore changes the persona only if it could change the title.
Pure functions: processing stores the result (users.persona_seniority / persona_department).
"""

import re
import tomllib
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from importlib.resources import files
from typing import Any

SENIORITIES = ("owner", "c_level", "vp", "director", "manager", "senior", "entry")
DEPARTMENTS = (
    "engineering",
    "product",
    "design",
    "sales",
    "marketing",
    "customer_success",
    "support",
    "finance",
    "hr",
    "operations",
    "legal",
    "it",
    "executive",
)
VALUES = {"seniority": SENIORITIES, "department": DEPARTMENTS}
TITLE_TRAITS = ("title", "job_title", "jobTitle")
MAX_TITLE = 256  # longer titles are read up to here: the patterns name a role in its first words
_SEPARATORS = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Rule:
    attribute: str  # seniority, department
    family: str
    value: str  # "" for absent
    patterns: tuple[str, ...]
    regex: re.Pattern[str]


def normalise(title: str) -> str:
    """A title as the patterns read it: lower case, no accents, words separated by one space."""
    decomposed = unicodedata.normalize("NFKD", title[:MAX_TITLE].casefold())
    plain = "".join(character for character in decomposed if not unicodedata.combining(character))
    return _SEPARATORS.sub(" ", plain).strip()


def _pattern_regex(pattern: str) -> str:
    words = [re.escape(word).replace(r"\*", "[^ ]*") for word in pattern.split()]
    return "(?:^| )" + " ".join(words) + "(?= |$)"


def load_rules(document: dict[str, Any]) -> tuple[Rule, ...]:
    """The rules of a patterns document, checked: every value one of VALUES (or ""), every pattern as titles read."""
    rules = []
    for attribute, allowed in VALUES.items():
        for entry in document.get(attribute, []):
            value, patterns = entry["value"], tuple(entry["patterns"])
            if value and value not in allowed:
                raise ValueError(f"{attribute} rule {entry['family']!r}: {value!r} is not one of {allowed}")
            for pattern in patterns:
                if normalise(pattern.replace("*", "")) != pattern.replace("*", "") or not pattern:
                    raise ValueError(f"{attribute} pattern {pattern!r} is not written the way titles are read")
            regex = re.compile("|".join(_pattern_regex(pattern) for pattern in patterns))
            rules.append(Rule(attribute, entry["family"], value, patterns, regex))
    return tuple(rules)


RULES = load_rules(tomllib.loads(files("connector").joinpath("data/personas.toml").read_text("utf-8")))


@lru_cache(maxsize=4096)
def scan(title: str) -> tuple[str | None, str | None]:
    """(seniority, department) of a title, each None when no rule gives it one."""
    text = normalise(title)
    found: dict[str, str | None] = {}
    for rule in RULES:
        if rule.attribute not in found and rule.regex.search(text):
            found[rule.attribute] = rule.value or None
    return found.get("seniority"), found.get("department")


def title_of(traits: dict[str, Any], stamps: dict[str, str]) -> str | None:
    """The title the persona is read from: the newest of the title traits, ties in TITLE_TRAITS order."""
    best: tuple[str, int] | None = None
    for rank, name in enumerate(TITLE_TRAITS):
        value = traits.get(name)
        if isinstance(value, str) and value.strip():
            candidate = (stamps.get(name, ""), -rank)
            if best is None or candidate > best:
                best = candidate
    return traits[TITLE_TRAITS[-best[1]]] if best else None


def persona_of(traits: dict[str, Any], stamps: dict[str, str]) -> tuple[str | None, str | None]:
    """(seniority, department) of a profile from its traits and their timestamps."""
    title = title_of(traits, stamps)
    return scan(title) if title is not None else (None, None)
