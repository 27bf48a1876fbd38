"""Every operator of the rule language, row by row: (rule, profile, expected), written by hand from
the specification in connector/segments/rules.py, with its boundaries (equal values, missing
attributes, JSON type mismatches, dates written with different offsets, nested traits).

Each row is evaluated by both evaluators: the Python evaluator (evaluate.py) on the profile loaded
from the database, and the SQL compiler (compile.py) on the same stored profile, on SQLite and on
PostgreSQL. Both must give the expected answer. The rows that need no computed attribute (usage.*,
audiences) are also given to the Python evaluator as a profile built in memory, in the fast tier.
"""

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from connector.core.db import create_engine
from connector.core.kinds import Entity
from connector.core.models import Account, AudienceMembership, Event, FeatureUsage, User
from connector.profile.attributes import Profile, load_profiles
from connector.segments.compile import Compiler
from connector.segments.evaluate import evaluate
from connector.segments.rules import event_needs, validate

UTC = UTC
# A Saturday; the fraction checks that `now` is truncated to the second against traits.
NOW = datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=UTC)
TODAY = date(2024, 6, 1)
CREATED = datetime(2024, 1, 15, 10, 0, 0, tzinfo=UTC)


@dataclass
class P:
    """One stored profile: a user (with an optional account), or an account for account segments."""

    traits: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = CREATED
    last_seen_at: datetime | None = None
    account: "P | None" = None
    domain: str | None = None
    group_id: str | None = None
    events: list[tuple[str, datetime]] = field(default_factory=list)
    # feature_usage rows of the evaluated entity: (feature, day, count, positive, negative, last use)
    usage: list[tuple[str, date, int, int, int, datetime]] = field(default_factory=list)
    # audience key -> (entered_at, exited_at)
    audiences: dict[str, tuple[datetime | None, datetime | None]] = field(default_factory=dict)


def A(attribute: str, op: str, *value: Any) -> dict[str, Any]:
    return {"attribute": attribute, "op": op, **({"value": value[0]} if value else {})}


def T(**traits: Any) -> P:
    return P(traits=traits)


ROWS: list[tuple[str, dict[str, Any], P, bool]] = []  # (entity, rule, profile, expected)


def rows(entity: str, rule: dict[str, Any], *cases: tuple[P, bool]) -> None:
    ROWS.extend((entity, rule, profile, expected) for profile, expected in cases)


def user(rule: dict[str, Any], *cases: tuple[P, bool]) -> None:
    rows("user", rule, *cases)


def account(rule: dict[str, Any], *cases: tuple[P, bool]) -> None:
    rows("account", rule, *cases)


# --- eq / neq: same JSON type and equal; numbers as 64-bit floats; neq is exactly not eq ----------
user(
    A("traits.plan", "eq", "pro"),
    (T(plan="pro"), True),
    (T(plan="Pro"), False),
    (T(plan="pro "), False),
    (T(plan=" pro"), False),
    (T(plan=["pro"]), False),
    (T(plan={"name": "pro"}), False),
    (T(plan=None), False),
    (T(), False),
    (T(plan=1), False),
    (T(plan=True), False),
)
user(
    A("traits.age", "eq", 10),
    (T(age=10), True),
    (T(age=10.0), True),
    (T(age="10"), False),
    (T(age=[10]), False),
    (T(age=10.5), False),
    (T(age=None), False),
    (T(), False),
)
user(A("traits.age", "eq", "10"), (T(age=10), False), (T(age="10"), True), (T(age="10.0"), False))
user(A("traits.age", "eq", 0), (T(age=-0.0), True), (T(age=0), True), (T(age=False), False), (T(age="0"), False))
user(A("traits.age", "eq", 1.5), (T(age=1.5), True), (T(age=1.50), True), (T(age="1.5"), False))
# 2**53 + 1 is 2**53 as a 64-bit float
user(
    A("traits.big", "eq", 9007199254740992),
    (T(big=9007199254740993), True),
    (T(big=9007199254740992), True),
    (T(big=9007199254740994), False),
)
user(
    A("traits.flag", "eq", True),
    (T(flag=True), True),
    (T(flag=1), False),
    (T(flag="true"), False),
    (T(flag=False), False),
    (T(), False),
)
user(
    A("traits.flag", "eq", False),
    (T(flag=False), True),
    (T(flag=0), False),
    (T(flag=None), False),
    (T(), False),
    (T(flag=""), False),
)
user(A("traits.flag", "eq", 1), (T(flag=True), False), (T(flag=1), True), (T(flag=1.0), True))
user(A("traits.city", "eq", "Zürich"), (T(city="Zürich"), True), (T(city="Zurich"), False))
user(
    A("traits.plan", "neq", "pro"),
    (T(plan="pro"), False),
    (T(plan="Pro"), True),
    (T(), True),
    (T(plan=None), True),
    (T(plan=["pro"]), True),
    (T(plan=1), True),
)
user(A("traits.age", "neq", 10), (T(age=10.0), False), (T(age="10"), True), (T(), True))
user(A("traits.flag", "neq", True), (T(flag=True), False), (T(flag=1), True), (T(flag=None), True))

# --- in / not_in: eq to one of them; not_in is exactly not in ----------------------------------------
user(
    A("traits.plan", "in", ["pro", "free"]),
    (T(plan="free"), True),
    (T(plan="pro"), True),
    (T(plan="Free"), False),
    (T(plan=["pro"]), False),
    (T(), False),
    (T(plan=None), False),
)
user(
    A("traits.age", "in", [1, "x", True]),
    (T(age=1.0), True),
    (T(age="x"), True),
    (T(age=True), True),
    (T(age="1"), False),
    (T(age=False), False),
    (T(age=2), False),
)
user(A("traits.age", "in", ["1"]), (T(age=1), False), (T(age="1"), True))
user(A("traits.age", "in", [1]), (T(age=True), False), (T(age=1), True))
user(
    A("traits.plan", "not_in", ["pro", "free"]),
    (T(plan="pro"), False),
    (T(plan="trial"), True),
    (T(), True),
    (T(plan=None), True),
    (T(plan="PRO"), True),
)
user(A("traits.age", "not_in", [1]), (T(age="1"), True), (T(age=1.0), False), (T(age=True), True))

# --- contains: a substring of a string, or an element eq to the value in an array ------------------
user(
    A("traits.plan", "contains", "ro"),
    (T(plan="pro"), True),
    (T(plan="PRO"), False),
    (T(plan="ro"), True),
    (T(plan="r"), False),
    (T(plan=["ro"]), True),
    (T(plan=["pro"]), False),
    (T(plan={"ro": 1}), False),
    (T(), False),
    (T(plan=None), False),
)
user(
    A("traits.tags", "contains", "pro"),
    (T(tags=["pro", "x"]), True),
    (T(tags=["Pro"]), False),
    (T(tags=["pro "]), False),
    (T(tags=[["pro"]]), False),
    (T(tags=[{"pro": True}]), False),
    (T(tags=[]), False),
    (T(tags="a pro b"), True),
)
user(
    A("traits.tags", "contains", 1),
    (T(tags=[1.0, 2]), True),
    (T(tags=[1]), True),
    (T(tags=["1"]), False),
    (T(tags=[True]), False),
    (T(tags="10"), False),
    (T(tags=1), False),
)
user(
    A("traits.tags", "contains", True),
    (T(tags=[True]), True),
    (T(tags=[1]), False),
    (T(tags=["true"]), False),
    (T(tags="true"), False),
    (T(tags=True), False),
)
user(A("traits.tags", "contains", "1"), (T(tags=10), False), (T(tags="10"), True), (T(tags=[1]), False))

# --- starts_with / ends_with: a string with that case-sensitive prefix / suffix ---------------------
user(
    A("traits.plan", "starts_with", "pro"),
    (T(plan="pro"), True),
    (T(plan="professional"), True),
    (T(plan="Pro"), False),
    (T(plan="pr"), False),
    (T(plan=" pro"), False),
    (T(plan=["pro"]), False),
    (T(), False),
    (T(plan=None), False),
)
user(A("traits.code", "starts_with", "1"), (T(code=123), False), (T(code="123"), True), (T(code=[1]), False))
user(A("traits.city", "starts_with", "é"), (T(city="été"), True), (T(city="ete"), False))
user(
    A("traits.email", "ends_with", ".com"),
    (T(email="ada@example.com"), True),
    (T(email="ada@example.COM"), False),
    (T(email=".com"), True),
    (T(email="com"), False),
    (T(email="ada@example.com "), False),
    (T(email=[".com"]), False),
    (T(), False),
)
user(A("traits.code", "ends_with", "0"), (T(code=10), False), (T(code="10"), True))
user(A("traits.city", "ends_with", "é"), (T(city="café"), True), (T(city="cafe"), False))
user(A("traits.plan", "ends_with", "xpro"), (T(plan="pro"), False))

# --- exists / not_exists: present and not null ---------------------------------------------------
user(
    A("traits.plan", "exists"),
    (T(plan="pro"), True),
    (T(plan=""), True),
    (T(plan=0), True),
    (T(plan=False), True),
    (T(plan=[]), True),
    (T(plan={}), True),
    (T(plan=None), False),
    (T(), False),
    (T(other="pro"), False),
)
user(
    A("traits.plan", "not_exists"),
    (T(plan=None), True),
    (T(), True),
    (T(plan=""), False),
    (T(plan=False), False),
    (T(plan=[]), False),
)

# --- gt, gte, lt, lte: numbers only, never strings or booleans --------------------------------------
user(A("traits.age", "gt", 10), (T(age=10), False), (T(age=10.0), False), (T(age=10.5), True), (T(age=9), False))
user(A("traits.age", "gte", 10), (T(age=10), True), (T(age=10.0), True), (T(age=9.99), False), (T(age=11), True))
user(
    A("traits.age", "lt", 10),
    (T(age=10), False),
    (T(age=10.0), False),
    (T(age=9.5), True),
    (T(age=11), False),
    (T(age=-3), True),
)
user(A("traits.age", "lte", 10), (T(age=10), True), (T(age=10.0), True), (T(age=10.01), False), (T(age=-3), True))
user(A("traits.age", "lt", 0.1), (T(age=0.1), False), (T(age=0.09), True))
user(A("traits.age", "gte", -1.5), (T(age=-1.5), True), (T(age=-1.6), False))
for op in ("gt", "gte", "lt", "lte"):
    user(
        A("traits.age", op, 5),
        (T(age="5"), False),
        (T(age="10"), False),
        (T(age="1"), False),
        (T(age=True), False),
        (T(age=False), False),
        (T(age=[5]), False),
        (T(age={"n": 5}), False),
        (T(age=None), False),
        (T(), False),
    )
    # never unknown: `not` of a false comparison on a missing or mistyped attribute holds
    user({"not": A("traits.age", op, 5)}, (T(), True), (T(age="5"), True), (T(age=None), True))
user({"not": A("traits.age", "lt", 10)}, (T(age=10), True), (T(age=9), False))

# --- before / after on traits: YYYY-MM-DD[(T| )HH:MM:SS...], as UTC on the first 19 characters -----
user(
    A("traits.signup", "before", "2024-01-15"),
    (T(signup="2024-01-15"), False),
    (T(signup="2024-01-14"), True),
    (T(signup="2024-01-14T23:59:59Z"), True),
    (T(signup="2024-01-15T00:00:00Z"), False),
    (T(signup="2024-01-15 00:00:00"), False),
    (T(signup="2024-01-14 23:59:59"), True),
)
user(
    A("traits.signup", "after", "2024-01-15"),
    (T(signup="2024-01-15"), False),
    (T(signup="2024-01-15T00:00:01Z"), True),
    (T(signup="2024-01-15T00:00:00.999Z"), False),
    (T(signup="2024-01-16"), True),
)
user(
    A("traits.signup", "before", "2024-01-15T10:00:00Z"),
    (T(signup="2024-01-15T10:00:00Z"), False),
    (T(signup="2024-01-15T10:00:00.999Z"), False),
    (T(signup="2024-01-15T09:59:59.999999Z"), True),
    (T(signup="2024-01-15T10:00:00"), False),
)
user(
    A("traits.signup", "after", "2024-01-15T10:00:00Z"),
    (T(signup="2024-01-15T10:00:00Z"), False),
    (T(signup="2024-01-15T10:00:00.999Z"), False),
    (T(signup="2024-01-15T10:00:01Z"), True),
)
# The trait's own offset is ignored: 10:00+02:00 is compared as 10:00 (UTC).
user(
    A("traits.signup", "before", "2024-01-15T09:00:00Z"),
    (T(signup="2024-01-15T10:00:00+02:00"), False),
    (T(signup="2024-01-15T08:00:00-05:00"), True),
)
user(
    A("traits.signup", "after", "2024-01-15T09:00:00Z"),
    (T(signup="2024-01-15T10:00:00+02:00"), True),
    (T(signup="2024-01-15T08:00:00-05:00"), False),
)
# The rule's value is an instant: the same instant written with different offsets means the same.
for same_instant in (
    "2024-01-15T10:00:00Z",
    "2024-01-15T10:00:00+00:00",
    "2024-01-15T12:00:00+02:00",
    "2024-01-15T05:00:00-05:00",
    "2024-01-15T10:00:00",
):
    user(
        A("traits.signup", "before", same_instant),
        (T(signup="2024-01-15T10:00:00Z"), False),
        (T(signup="2024-01-15T09:59:59Z"), True),
        (T(signup="2024-01-15T11:00:00Z"), False),
    )
    user(
        A("traits.signup", "after", same_instant),
        (T(signup="2024-01-15T10:00:00Z"), False),
        (T(signup="2024-01-15T10:00:01Z"), True),
        (T(signup="2024-01-15T09:00:00Z"), False),
    )
# 01:00+02:00 on the 15th is 23:00 UTC on the 14th
user(
    A("traits.signup", "before", "2024-01-15T01:00:00+02:00"),
    (T(signup="2024-01-14"), True),
    (T(signup="2024-01-14T23:00:00Z"), False),
    (T(signup="2024-01-15"), False),
)
user(
    A("traits.signup", "after", "2024-01-15T01:00:00+02:00"),
    (T(signup="2024-01-15"), True),
    (T(signup="2024-01-14T23:00:00Z"), False),
    (T(signup="2024-01-14T23:30:00"), True),
)
# Not dates: every date operator is false (and their `not` true); the calendar is not checked.
for op, value in (("before", "2030-01-01"), ("after", "2000-01-01")):
    user(
        A("traits.signup", op, value),
        (T(signup="2024/01/15"), False),
        (T(signup="2024-01-15T10:00"), False),
        (T(signup="2024-01-15X10:00:00"), False),
        (T(signup="2024-01-15t10:00:00"), False),
        (T(signup="2024-01-15 "), False),
        (T(signup="15-01-2024"), False),
        (T(signup=20240115), False),
        (T(signup=["2024-01-15"]), False),
        (T(signup={"at": "2024-01-15"}), False),
        (T(signup=None), False),
        (T(), False),
        (T(signup="2024-1-15"), False),
        (T(signup=""), False),
    )
    user({"not": A("traits.signup", op, value)}, (T(signup="2024/01/15"), True), (T(), True))
user(
    A("traits.signup", "before", "2024-03-01"), (T(signup="2024-02-31"), True), (T(signup="2024-02-31T25:61:61"), True)
)
user(A("traits.signup", "after", "2024-12-31"), (T(signup="2024-13-45"), True))

# --- within_last_days on traits: now - N days <= trait <= now, now truncated to the second -----------
user(
    A("traits.seen", "within_last_days", 1),
    (T(seen="2024-05-31T12:00:00Z"), True),
    (T(seen="2024-05-31T11:59:59Z"), False),
    (T(seen="2024-06-01T12:00:00Z"), True),
    (T(seen="2024-06-01T12:00:00.9Z"), True),
    (T(seen="2024-06-01T12:00:01Z"), False),
    (T(seen="2024-06-01"), True),
    (T(seen="2024-05-31"), False),
    (T(seen="2024-06-01 08:00:00"), True),
    (T(seen="2024-06-01T13:00:00+02:00"), False),
    (T(seen="2024-05-31T11:00:00-05:00"), False),
    (T(seen="2024/06/01"), False),
    (T(seen=20240601), False),
    (T(), False),
    (T(seen=None), False),
)
user(A("traits.seen", "within_last_days", 0.5), (T(seen="2024-06-01"), True), (T(seen="2024-05-31T23:59:59Z"), False))
user(
    A("traits.seen", "within_last_days", 30),
    (T(seen="2024-05-02T12:00:00Z"), True),
    (T(seen="2024-05-02T11:59:59Z"), False),
)

# --- date operators on timestamp columns: real instants ------------------------------------------
user(
    A("created_at", "before", "2024-01-15T10:00:00Z"),
    (P(created_at=CREATED), False),
    (P(created_at=CREATED - timedelta(microseconds=1)), True),
)
user(
    A("created_at", "after", "2024-01-15T10:00:00Z"),
    (P(created_at=CREATED), False),
    (P(created_at=CREATED + timedelta(microseconds=500000)), True),
    (P(created_at=CREATED + timedelta(seconds=1)), True),
)
for same_instant in (
    "2024-01-15T10:00:00Z",
    "2024-01-15T12:00:00+02:00",
    "2024-01-15T05:00:00-05:00",
    "2024-01-15T10:00:00",
    "2024-01-15T10:00:00.000+00:00",
):
    user(
        A("created_at", "before", same_instant),
        (P(created_at=CREATED), False),
        (P(created_at=CREATED - timedelta(seconds=1)), True),
    )
    user(
        A("created_at", "after", same_instant),
        (P(created_at=CREATED), False),
        (P(created_at=CREATED + timedelta(seconds=1)), True),
    )
user(A("created_at", "after", "2024-01-15T11:00:00+02:00"), (P(created_at=CREATED), True))  # 09:00 UTC
user(A("created_at", "before", "2024-01-15T11:00:00+02:00"), (P(created_at=CREATED), False))
user(
    A("created_at", "before", "2024-01-15T10:00:00.6Z"), (P(created_at=CREATED + timedelta(microseconds=500000)), True)
)
user(
    A("created_at", "before", "2024-01-15"),
    (P(created_at=CREATED), False),
    (P(created_at=datetime(2024, 1, 14, 23, 59, 59, tzinfo=UTC)), True),
)
user(
    A("created_at", "after", "2024-01-15"),
    (P(created_at=CREATED), True),
    (P(created_at=datetime(2024, 1, 15, tzinfo=UTC)), False),
)
user(
    A("created_at", "within_last_days", 1),
    (P(created_at=NOW - timedelta(days=1)), True),
    (P(created_at=NOW - timedelta(days=1, microseconds=1)), False),
    (P(created_at=NOW), True),
    (P(created_at=NOW + timedelta(seconds=1)), False),
    (P(created_at=NOW - timedelta(hours=23)), True),
)
user(
    A("created_at", "within_last_days", 30.5),
    (P(created_at=NOW - timedelta(days=30, hours=12)), True),
    (P(created_at=NOW - timedelta(days=30, hours=13)), False),
)
user(A("last_seen_at", "before", "2030-01-01"), (P(last_seen_at=None), False), (P(last_seen_at=CREATED), True))
user(A("last_seen_at", "after", "2000-01-01"), (P(last_seen_at=None), False), (P(last_seen_at=CREATED), True))
user(A("last_seen_at", "within_last_days", 365), (P(last_seen_at=None), False), (P(last_seen_at=NOW), True))
user(A("last_seen_at", "exists"), (P(last_seen_at=None), False), (P(last_seen_at=CREATED), True))
user(A("last_seen_at", "not_exists"), (P(last_seen_at=None), True), (P(last_seen_at=CREATED), False))
user({"not": A("last_seen_at", "before", "2030-01-01")}, (P(last_seen_at=None), True))
user(A("created_at", "exists"), (P(), True))

# --- nested traits: a path walks objects key by key, never into arrays -------------------------------
user(
    A("traits.address.city", "eq", "Paris"),
    (T(address={"city": "Paris"}), True),
    (T(address={"city": "paris"}), False),
    (T(address="Paris"), False),
    (T(address=None), False),
    (T(address=[{"city": "Paris"}]), False),
    (T(city="Paris"), False),
    (T(), False),
)
user(
    A("traits.address.city", "not_exists"),
    (T(address=None), True),
    (T(address={"city": None}), True),
    (T(address={}), True),
    (T(address={"city": "Paris"}), False),
    (T(address=[{"city": "Paris"}]), True),
)
user(
    A("traits.address.geo.lat", "gt", 48),
    (T(address={"geo": {"lat": 48.85}}), True),
    (T(address={"geo": {"lat": 48}}), False),
    (T(address={"geo": {"lat": "48.85"}}), False),
    (T(address={"geo": [48.85]}), False),
)
user(A("traits.tags.0", "eq", "a"), (T(tags=["a", "b"]), False), (T(tags={"0": "a"}), True))
user(A("traits.tags.0", "exists"), (T(tags=["a"]), False), (T(tags={"0": None}), False), (T(tags={"0": 0}), True))
user(A("traits.a.b", "exists"), (T(a=[{"b": 1}]), False), (T(a={"b": 1}), True), (T(a={"b": {"c": 1}}), True))
user(
    A("traits.ville natale.nom", "eq", "Lyon"),
    (T(**{"ville natale": {"nom": "Lyon"}}), True),
    (T(**{"ville natale": {"Nom": "Lyon"}}), False),
)
user(
    A("traits.address.city", "contains", "ari"),
    (T(address={"city": "Paris"}), True),
    (T(address={"city": ["ari"]}), True),
)
user(
    A("traits.address.city", "starts_with", "Pa"),
    (T(address={"city": "Paris"}), True),
    (T(address={"town": "Paris"}), False),
)
user(
    A("traits.address.since", "before", "2024-01-01"),
    (T(address={"since": "2023-12-31"}), True),
    (T(address={"since": "2024-01-01"}), False),
)

# --- the user's account: traits and columns; absent without an account ------------------------------
ACME = P(traits={"plan": "pro", "seats": 10}, domain="acme.com", group_id="g-acme", created_at=CREATED)
user(A("account.traits.plan", "eq", "pro"), (P(account=ACME), True), (P(traits={"plan": "pro"}), False))
user(A("account.traits.plan", "neq", "pro"), (P(account=ACME), False), (P(), True))
user(A("account.traits.seats", "lt", 10), (P(account=ACME), False))
user(A("account.traits.seats", "lte", 10), (P(account=ACME), True), (P(), False))
user(A("account.domain", "eq", "acme.com"), (P(account=ACME), True), (P(), False))
user(A("account.domain", "eq", "Acme.com"), (P(account=ACME), False))
user(
    A("account.domain", "exists"), (P(account=ACME), True), (P(), False), (P(account=P(group_id="g-no-domain")), False)
)
user(A("account.domain", "ends_with", ".com"), (P(account=ACME), True), (P(), False))
user(A("account.domain", "contains", "acme"), (P(account=ACME), True))
user(A("account.domain", "contains", 1), (P(account=P(domain="1.com")), False))
user(A("account.group_id", "in", ["g-acme", "g-other"]), (P(account=ACME), True), (P(), False))
user(A("account.group_id", "not_in", ["g-acme"]), (P(account=ACME), False), (P(), True))
user(A("account.created_at", "after", "2024-01-15T11:00:00+02:00"), (P(account=ACME), True), (P(), False))
user(A("account.created_at", "before", "2024-01-15T12:00:00+02:00"), (P(account=ACME), False))

# --- account segments: the account's own traits and columns --------------------------------------
account(A("traits.plan", "eq", "pro"), (ACME, True), (P(traits={"plan": "Pro"}), False), (P(), False))
account(A("traits.seats", "gt", 10), (ACME, False), (P(traits={"seats": 11}), True), (P(traits={"seats": "11"}), False))
account(A("traits.seats", "lt", 10), (ACME, False), (P(traits={"seats": 9}), True))
account(A("domain", "eq", "acme.com"), (ACME, True), (P(domain="Acme.com"), False), (P(), False))
account(A("domain", "neq", "acme.com"), (ACME, False), (P(), True))
account(A("domain", "starts_with", "acme"), (ACME, True), (P(domain="www.acme.com"), False))
account(A("domain", "not_exists"), (ACME, False), (P(), True))
account(A("group_id", "eq", "g-acme"), (ACME, True), (P(group_id="G-ACME"), False))
account(
    A("created_at", "within_last_days", 1),
    (P(created_at=NOW - timedelta(days=1)), True),
    (P(created_at=NOW - timedelta(days=1, seconds=1)), False),
)

# --- event conditions: events with exactly that name; within_days keeps timestamp >= now - days -------
ORDERS = P(
    events=[
        ("Order Completed", NOW - timedelta(days=1)),
        ("Order Completed", NOW - timedelta(days=10)),
        ("order completed", NOW - timedelta(hours=1)),
    ]
)
NO_EVENTS = P()
user({"event": "Order Completed"}, (ORDERS, True), (NO_EVENTS, False))
user({"event": "Signed In"}, (ORDERS, False))
user({"event": "order completed", "count": {"gte": 2}}, (ORDERS, False))
user({"event": "ORDER COMPLETED"}, (ORDERS, False))
user({"event": "Order Completed", "count": {"eq": 2}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"neq": 2}}, (ORDERS, False))
user({"event": "Order Completed", "count": {"neq": 3}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"lt": 2}}, (ORDERS, False))
user({"event": "Order Completed", "count": {"lt": 3}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"lte": 2}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"lte": 1}}, (ORDERS, False))
user({"event": "Order Completed", "count": {"gt": 2}}, (ORDERS, False))
user({"event": "Order Completed", "count": {"gt": 1}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"gte": 2}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"gte": 3}}, (ORDERS, False))
user({"event": "Order Completed", "count": {"gte": 1, "lte": 1}}, (ORDERS, False))
user({"event": "Order Completed", "count": {"gt": 1, "lt": 3}}, (ORDERS, True))
user({"event": "Order Completed", "count": {"eq": 0}}, (NO_EVENTS, True), (ORDERS, False))
user({"event": "Order Completed", "count": {"lt": 1}}, (NO_EVENTS, True))
user({"event": "Order Completed", "count": {"lt": 0}}, (NO_EVENTS, False))
user({"event": "Order Completed", "count": {"lte": 0}}, (NO_EVENTS, True))
user({"event": "Order Completed", "within_days": 7}, (ORDERS, True))
user({"event": "Order Completed", "within_days": 7, "count": {"eq": 1}}, (ORDERS, True))
user({"event": "Order Completed", "within_days": 7, "count": {"lt": 1}}, (ORDERS, False))
user({"event": "Order Completed", "within_days": 10, "count": {"eq": 2}}, (ORDERS, True))  # exactly 10 days ago
user({"event": "Order Completed", "within_days": 9.99, "count": {"eq": 1}}, (ORDERS, True))
user({"event": "Order Completed", "within_days": 0.5}, (ORDERS, False))
user(
    {"event": "Order Completed", "within_days": 1, "count": {"eq": 1}},
    (P(events=[("Order Completed", NOW - timedelta(days=1))]), True),
    (P(events=[("Order Completed", NOW - timedelta(days=1, microseconds=1))]), False),
    (P(events=[("Order Completed", NOW + timedelta(days=3))]), True),
)  # no upper bound
user({"not": {"event": "Order Completed"}}, (NO_EVENTS, True), (ORDERS, False))

# --- audiences: a member now when the latest entry is later than the latest exit ------------------
HOUR = timedelta(hours=1)
user(
    {"audience": "vip"},
    (P(audiences={"vip": (NOW - HOUR, None)}), True),
    (P(audiences={"vip": (NOW - HOUR, NOW - 2 * HOUR)}), True),
    (P(audiences={"vip": (NOW - 2 * HOUR, NOW - HOUR)}), False),
    (P(audiences={"vip": (NOW - HOUR, NOW - HOUR)}), False),
    (P(audiences={"vip": (None, NOW - HOUR)}), False),
    (P(audiences={"Vip": (NOW - HOUR, None)}), False),
    (P(audiences={"vip_plus": (NOW - HOUR, None)}), False),
    (P(), False),
)
user({"not": {"audience": "vip"}}, (P(), True), (P(audiences={"vip": (NOW - HOUR, None)}), False))

# --- usage.*: the entity's feature usage as of the UTC date of now ----------------------------------


def used(feature: str, days_ago: int, count: int = 1, positive: int = 0, negative: int = 0) -> tuple[Any, ...]:
    day = TODAY - timedelta(days=days_ago)
    return (feature, day, count, positive, negative, datetime(day.year, day.month, day.day, 9, 30, tzinfo=UTC))


# today: export x2 (+2); 29 days ago: search (-1); 30 days ago: api x5 (outside the window); tomorrow: sso x4
BUSY = P(
    usage=[used("export", 0, 2, positive=2), used("search", 29, 1, negative=1), used("api", 30, 5), used("sso", -1, 4)]
)
IDLE = P()
# six features used once each: the top 5 by name (code point order) leave out "sso"
TIED = P(usage=[used(name, 3) for name in ("sso", "search", "export", "billing", "api", "alerts")])

for entity in ("user", "account"):
    rows(entity, A("usage.events_30d", "eq", 3), (BUSY, True), (IDLE, False))
    rows(entity, A("usage.events_30d", "eq", 0), (IDLE, True))
    rows(entity, A("usage.events_30d", "lt", 3), (BUSY, False), (IDLE, True))
    rows(entity, A("usage.events_30d", "lte", 3), (BUSY, True))
    rows(entity, A("usage.events_30d", "gt", 3), (BUSY, False))
    rows(entity, A("usage.events_30d", "gte", 3), (BUSY, True), (IDLE, False))
    rows(entity, A("usage.events_30d", "in", [3, "x"]), (BUSY, True))
    rows(entity, A("usage.events_30d", "eq", "3"), (BUSY, False))
    rows(entity, A("usage.events_30d", "exists"), (BUSY, True), (IDLE, True))
    rows(entity, A("usage.score_30d", "eq", 1), (BUSY, True))
    rows(entity, A("usage.score_30d", "lt", 1), (BUSY, False), (IDLE, True))
    rows(entity, A("usage.top_features", "contains", "api"), (BUSY, True), (IDLE, False))
    rows(entity, A("usage.top_features", "contains", "sso"), (BUSY, True), (TIED, False))
    rows(entity, A("usage.top_features", "contains", "alerts"), (TIED, True))
    rows(entity, A("usage.top_features", "contains", "exp"), (BUSY, False))
    rows(entity, A("usage.top_features", "contains", "Export"), (BUSY, False))
    rows(entity, A("usage.top_features", "exists"), (IDLE, True))
    rows(entity, A("usage.top_features", "not_exists"), (IDLE, False))
    # ISO weeks: this one began Monday 2024-05-27; 29 and 30 days ago fall in the week of 2024-04-29
    # trend = [0, 0, 0, 0, 0, 0, 0, 6, 0, 0, 0, 2] (tomorrow's usage is not in it)
    rows(entity, A("usage.trend", "contains", 6), (BUSY, True))
    rows(entity, A("usage.trend", "contains", 2), (BUSY, True))
    rows(entity, A("usage.trend", "contains", 4), (BUSY, False))
    rows(entity, A("usage.trend", "contains", 5), (BUSY, False))
    rows(entity, A("usage.trend", "contains", "6"), (BUSY, False))
    rows(entity, A("usage.trend", "contains", 0), (BUSY, True), (IDLE, True))
    rows(entity, A("usage.trend", "contains", 1), (IDLE, False))
    # the latest use is tomorrow 09:30 (future use counts here)
    rows(entity, A("usage.last_feature_at", "after", "2024-06-02T09:29:59Z"), (BUSY, True))
    rows(entity, A("usage.last_feature_at", "after", "2024-06-02T11:30:00+02:00"), (BUSY, False))
    rows(entity, A("usage.last_feature_at", "before", "2024-06-02T11:30:01+02:00"), (BUSY, True))
    rows(
        entity,
        A("usage.last_feature_at", "within_last_days", 1),
        (BUSY, False),
        (IDLE, False),
        (P(usage=[used("export", 0)]), True),
    )
    rows(entity, A("usage.last_feature_at", "exists"), (BUSY, True), (IDLE, False))
    rows(entity, A("usage.last_feature_at", "not_exists"), (IDLE, True))

# --- groups --------------------------------------------------------------------------------------
user({"all": []}, (P(), True))
user({"any": []}, (P(), False))
user({"not": {"any": []}}, (P(), True))
user({"all": [A("traits.age", "gte", 10), A("traits.age", "lt", 20)]}, (T(age=10), True), (T(age=20), False))
user(
    {"any": [A("traits.age", "lt", 10), A("traits.plan", "eq", "pro")]},
    (T(age=10), False),
    (T(age=10, plan="pro"), True),
)


def describe(entity: str, rule: dict[str, Any], profile: P, expected: bool) -> str:
    shown = {key: value for key, value in vars(profile).items() if value not in (None, [], {}, CREATED)}
    text = f"{entity}:{rule}|{shown}->{expected}"
    return text if len(text) <= 200 else text[:197] + "..."


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


async def insert_id(conn: Any, table: Any, **values: Any) -> int:
    return await conn.scalar(table.insert().values(**values).returning(table.c.id))


async def store(engine: Any, entity: str, profile: P) -> int:
    """The profile in the database; returns the id of the user (or, for account segments, the account)."""
    async with engine.begin() as conn:
        account = profile if entity == "account" else profile.account
        account_id = None
        if account is not None:
            account_id = await insert_id(
                conn,
                Account.__table__,
                group_id=account.group_id,
                domain=account.domain,
                traits=account.traits,
                trait_timestamps={},
                created_at=account.created_at,
                updated_at=NOW,
            )
        if entity == "account":
            entity_id = account_id
        else:
            entity_id = await insert_id(
                conn,
                User.__table__,
                traits=profile.traits,
                trait_timestamps={},
                account_id=account_id,
                created_at=profile.created_at,
                updated_at=NOW,
                last_seen_at=profile.last_seen_at,
            )
            for number, (name, at) in enumerate(profile.events):
                await conn.execute(
                    Event.__table__.insert().values(
                        user_id=entity_id,
                        message_id=f"m-{number}",
                        type="track",
                        event=name,
                        timestamp=at,
                        received_at=at,
                        properties={},
                        context={},
                    )
                )
            for key, (entered, exited) in profile.audiences.items():
                await conn.execute(
                    AudienceMembership.__table__.insert().values(
                        user_id=entity_id, audience=key, entered_at=entered, exited_at=exited
                    )
                )
        for feature, day, count, positive, negative, last_at in profile.usage:
            await conn.execute(
                FeatureUsage.__table__.insert().values(
                    entity=entity,
                    entity_id=entity_id,
                    feature=feature,
                    day=day,
                    count=count,
                    positive=positive,
                    negative=negative,
                    first_at=last_at,
                    last_at=last_at,
                )
            )
    assert entity_id is not None
    return entity_id


@pytest.mark.parametrize(("entity", "rule", "profile", "expected"), ROWS, ids=[describe(*row) for row in ROWS])
async def test_each_operator_gives_the_specified_answer_in_python_and_in_sql(engine, entity, rule, profile, expected):
    validate(rule, entity)
    entity_id = await store(engine, entity, profile)
    async with engine.connect() as conn:
        in_sql = set((await conn.execute(Compiler(conn.dialect.name, entity, NOW).select_ids(rule))).scalars())
        loaded = await load_profiles(conn, entity, [entity_id], event_needs([rule]), NOW)
        in_python = evaluate(rule, entity, loaded[entity_id], NOW)
    assert in_python is expected, f"Python evaluator: {rule} gave {in_python}"
    assert in_sql == ({entity_id} if expected else set()), f"SQL compiler ({conn.dialect.name}): {rule} gave {in_sql}"


def in_memory(entity: str, profile: P) -> Profile:
    """The profile as membership.load_profiles hands it to the Python evaluator, built without a database: the
    columns of the row store() writes, every event one by one (none counted before a window)."""

    def account_of(account: P) -> Profile:
        columns = {"domain": account.domain, "group_id": account.group_id, "created_at": account.created_at}
        return Profile(
            columns={**columns, "updated_at": NOW, "icp_score": None, "icp_fit": None}, traits=account.traits
        )

    if entity == "account":
        built = account_of(profile)
    else:
        columns = {"created_at": profile.created_at, "updated_at": NOW, "last_seen_at": profile.last_seen_at}
        built = Profile(
            columns={**columns, "persona_seniority": None, "persona_department": None},
            traits=profile.traits,
            account=account_of(profile.account) if profile.account is not None else None,
        )
    built.events = list(profile.events)
    return built


def needs_computed(rule: dict[str, Any]) -> bool:
    """Whether the rule reads a computed attribute (usage.*, an audience), which only the database gives."""
    text = json.dumps(rule)
    return '"usage.' in text or '"audience"' in text


IN_MEMORY_ROWS = [row for row in ROWS if not needs_computed(row[1])]


@pytest.mark.parametrize(
    ("entity", "rule", "profile", "expected"), IN_MEMORY_ROWS, ids=[describe(*row) for row in IN_MEMORY_ROWS]
)
def test_each_operator_gives_the_specified_answer_in_python_on_a_profile_in_memory(entity, rule, profile, expected):
    validate(rule, entity)
    assert evaluate(rule, Entity(entity), in_memory(entity, profile), NOW) is expected, rule


# Rules evaluated together, as one batch's refresh does: the widest window (30 days) decides which events
# are loaded one by one; older ones are only counted, and only all-time conditions may count them.
TOGETHER: list[tuple[dict[str, Any], bool]] = [
    ({"event": "Order Completed", "count": {"eq": 6}}, True),
    ({"event": "Order Completed", "count": {"eq": 3}, "within_days": 30}, True),
    ({"event": "Order Completed", "count": {"eq": 1}, "within_days": 5}, True),
    ({"event": "Order Completed", "count": {"gte": 4}, "within_days": 30}, False),
    ({"event": "Order Completed", "count": {"lt": 6}}, False),
    ({"not": {"event": "Order Completed", "within_days": 0.5}}, True),
    ({"event": "Signed Up", "count": {"eq": 1}}, True),
    ({"event": "Signed Up", "within_days": 30}, False),
]


async def test_events_before_the_widest_window_count_for_all_time_conditions_only(engine):
    history = [("Order Completed", NOW - timedelta(days=days)) for days in (400, 41, 40, 10, 9, 1)]
    user_id = await store(engine, "user", P(events=[*history, ("Signed Up", NOW - timedelta(days=90))]))
    rules = [rule for rule, _ in TOGETHER]
    async with engine.connect() as conn:
        loaded = (await load_profiles(conn, Entity.USER, [user_id], event_needs(rules), NOW))[user_id]
        for rule, expected in TOGETHER:
            assert evaluate(rule, Entity.USER, loaded, NOW) is expected, rule
            in_sql = set((await conn.execute(Compiler(conn.dialect.name, Entity.USER, NOW).select_ids(rule))).scalars())
            assert in_sql == ({user_id} if expected else set()), rule
    assert len(loaded.events) == 3  # the three within 30 days; the four older ones only as counts
    assert loaded.earlier_events == {"Order Completed": 3, "Signed Up": 1}
