"""What an attribute names, per entity, and how it is read: by segment rules (both evaluators) and by
the outbound mappings, which read any attribute a rule can (a new root is mappable at once).

A root is an exact name (``created_at``) or a prefix followed by a dotted path
(``traits.`` + ``address.city``). Each root gives its kind (``json``: any JSON value;
``string``; ``datetime``; ``number``; ``list``), how Python reads it from a Profile, and how
SQL reads it (through the compiler, which adds the joins a root needs). A new root is one
more entry in ATTRIBUTES.

The ``usage.*`` roots are computed attributes (connector.profile.computed): the Python
evaluator reads what load_profiles loaded, the SQL evaluator the usage helpers'
subqueries, which compute the same figures from feature_usage.

The scanners' results are stored columns, read like the others: ``persona.seniority`` and
``persona.department`` of a user (connector/profile/persona.py), ``icp.score`` and ``icp.fit`` of an account
(segments/icp.py), which a user's rules read as ``account.icp.*``.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.db import any_of
from connector.core.kinds import Entity
from connector.core.models import Account, Event, User
from connector.profile import usage
from connector.profile.computed import computed_attributes_of

users = User.__table__
accounts = Account.__table__
events = Event.__table__
MISSING: Any = object()
_PATH_PART_FORBIDDEN = set('"\\') | {chr(code) for code in range(32)}


@dataclass
class Profile:
    """What the Python evaluator sees of one user or account."""

    columns: dict[str, Any] = field(default_factory=dict)
    traits: dict[str, Any] = field(default_factory=dict)
    account: "Profile | None" = None
    events: list[tuple[str, datetime]] = field(default_factory=list)
    # By name, how many events came before the window `events` covers (EventNeeds.within_days): no windowed
    # condition can count them, an all-time count adds them. Loaded as counts, not rows: a user's history
    # grows without bound, the window does not.
    earlier_events: dict[str, int] = field(default_factory=dict)
    # computed.computed_attributes_of: {"usage": {...}, "audiences": {key: member}}
    computed: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Attribute:
    kind: str  # json, string, datetime, number, list
    python: Callable[[Profile, tuple[str, ...]], Any]
    sql: Callable[[Any, tuple[str, ...]], Any]  # (compiler, path) -> compile.SqlValue
    prefix: bool = False
    computed: bool = False  # read from Profile.computed, which membership loads only when a rule needs it
    time_based: bool = False  # changes with the clock alone (a moving window), see rules.is_time_based


def dig(document: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        if not isinstance(document, dict) or key not in document:
            return MISSING
        document = document[key]
    return document


def _traits(profile: Profile, path: tuple[str, ...]) -> Any:
    return dig(profile.traits, path)


def _account_traits(profile: Profile, path: tuple[str, ...]) -> Any:
    return dig(profile.account.traits, path) if profile.account else MISSING


def _column(name: str) -> Callable[[Profile, tuple[str, ...]], Any]:
    return lambda profile, _path: profile.columns.get(name)


def _account_column(name: str) -> Callable[[Profile, tuple[str, ...]], Any]:
    return lambda profile, _path: profile.account.columns.get(name) if profile.account else None


def _sql_column(name: str, kind: str) -> Callable[[Any, tuple[str, ...]], Any]:
    return lambda compiler, _path: compiler.column_value(compiler.table.c[name], kind)


def _sql_account_column(name: str, kind: str) -> Callable[[Any, tuple[str, ...]], Any]:
    return lambda compiler, _path: compiler.column_value(compiler.account().c[name], kind)


def _columns(names: dict[str, tuple[str, str]], account: bool = False) -> dict[str, Attribute]:
    """Attributes read from a column: {attribute name: (column, kind)}, of the profile or of the user's account."""
    if account:
        return {
            f"account.{name}": Attribute(kind, _account_column(column), _sql_account_column(column, kind))
            for name, (column, kind) in names.items()
        }
    return {name: Attribute(kind, _column(column), _sql_column(column, kind)) for name, (column, kind) in names.items()}


def _usage(name: str, kind: str, sql: Callable[[Any], Any], time_based: bool = False) -> Attribute:
    return Attribute(
        kind,
        lambda profile, _path: profile.computed["usage"][name],
        lambda compiler, _path: sql(compiler),
        computed=True,
        time_based=time_based,
    )


# The usage.* computed attributes of the segment's entity (usage.py defines them).
USAGE = {
    "usage.top_features": _usage(
        "top_features", "list", lambda c: c.list_value(usage.sql_top_features(c.entity, c.table.c.id), "string")
    ),
    "usage.events_30d": _usage(
        "events_30d",
        "number",
        lambda c: c.column_value(usage.sql_window_total(c.entity, c.table.c.id, "count", c.today), "number"),
        time_based=True,
    ),
    "usage.score_30d": _usage(
        "score_30d",
        "number",
        lambda c: c.column_value(usage.sql_window_total(c.entity, c.table.c.id, "score", c.today), "number"),
        time_based=True,
    ),
    "usage.trend": _usage(
        "trend",
        "list",
        lambda c: c.list_value(usage.sql_trend(c.entity, c.table.c.id, c.today), "number"),
        time_based=True,
    ),
    "usage.last_feature_at": _usage(
        "last_feature_at",
        "datetime",
        lambda c: c.column_value(usage.sql_last_feature_at(c.entity, c.table.c.id), "datetime"),
    ),
    "usage.pattern": _usage(
        "pattern",
        "string",
        lambda c: c.column_value(usage.sql_pattern(c.entity, c.table.c.id, c.today), "string"),
        time_based=True,
    ),
}

# {attribute name: (column, kind)} of the users and accounts tables; membership.load_profiles loads these columns.
USER_COLUMNS = {
    "created_at": ("created_at", "datetime"),
    "updated_at": ("updated_at", "datetime"),
    "last_seen_at": ("last_seen_at", "datetime"),
    "persona.seniority": ("persona_seniority", "string"),
    "persona.department": ("persona_department", "string"),
}
ACCOUNT_COLUMNS = {
    "domain": ("domain", "string"),
    "group_id": ("group_id", "string"),
    "created_at": ("created_at", "datetime"),
    "updated_at": ("updated_at", "datetime"),
    "icp.score": ("icp_score", "number"),
    "icp.fit": ("icp_fit", "string"),
}

ATTRIBUTES: dict[Entity, dict[str, Attribute]] = {
    Entity.USER: {
        "traits": Attribute("json", _traits, lambda c, path: c.json_value(c.table.c.traits, path), prefix=True),
        "account.traits": Attribute(
            "json", _account_traits, lambda c, path: c.json_value(c.account().c.traits, path), prefix=True
        ),
        **_columns(USER_COLUMNS),
        **_columns(ACCOUNT_COLUMNS, account=True),
        **USAGE,
    },
    Entity.ACCOUNT: {
        "traits": Attribute("json", _traits, lambda c, path: c.json_value(c.table.c.traits, path), prefix=True),
        **_columns(ACCOUNT_COLUMNS),
        **USAGE,
    },
}


def is_time_based(name: str) -> bool:
    """Whether the attribute `name` (exact roots only, of any entity) changes with the clock alone."""
    return any(name in roots and roots[name].time_based for roots in ATTRIBUTES.values())


def resolve_attribute(entity: Entity, name: str) -> tuple[Attribute, tuple[str, ...]]:
    """The attribute a name refers to and its path; KeyError (with the reason) when unknown."""
    roots = ATTRIBUTES[entity]
    if name in roots and not roots[name].prefix:
        return roots[name], ()
    for root, attribute in sorted(roots.items(), key=lambda item: -len(item[0])):
        if attribute.prefix and name.startswith(root + "."):
            path = tuple(name[len(root) + 1 :].split("."))
            if any(not part or _PATH_PART_FORBIDDEN & set(part) for part in path):
                raise KeyError(f"{name!r} has an empty path part or a quote, backslash or control character")
            return attribute, path
    known = sorted(root + (".<path>" if attribute.prefix else "") for root, attribute in roots.items())
    raise KeyError(f"unknown attribute {name!r} for {entity} segments; expected one of {', '.join(known)}")


def columns_of(entity: Entity) -> list[str]:
    """The columns the Python evaluator reads of a user or an account (Profile.columns)."""
    return [column for column, _ in (USER_COLUMNS if entity == Entity.USER else ACCOUNT_COLUMNS).values()]


@dataclass(frozen=True)
class EventNeeds:
    """What the event conditions to evaluate read: the event names, and the widest `within_days` among them
    (None when none has a window). rules.event_needs gives it for a set of rules."""

    names: frozenset[str] = frozenset()
    within_days: float | None = None


async def load_profiles(
    conn: AsyncConnection, entity: Entity, ids: Iterable[int], needs: EventNeeds, now: datetime, computed: bool = True
) -> dict[int, Profile]:
    """The profiles the Python evaluator needs: columns, traits, account, the events `needs` names (one by one
    within its widest window, counted before it) and, with `computed`, the computed attributes as of `now`;
    a few queries whatever the number."""
    ids = sorted(ids)
    if entity == Entity.ACCOUNT:
        profiles = await _load_accounts(conn, ids)
    else:
        names = columns_of(Entity.USER)
        rows = list(
            await conn.execute(
                sa.select(users.c.id, users.c.traits, users.c.account_id, *(users.c[name] for name in names)).where(
                    any_of(conn, users.c.id, ids)
                )
            )
        )
        linked = await _load_accounts(conn, {row.account_id for row in rows if row.account_id is not None})
        profiles = {
            row.id: Profile(
                columns=dict(zip(names, row[3:], strict=True)),
                traits=row.traits,
                account=linked.get(row.account_id),
            )
            for row in rows
        }
        if needs.names and profiles:
            await _load_events(conn, profiles, needs, now)
    if computed and profiles:
        for entity_id, values in (await computed_attributes_of(conn, entity, sorted(profiles), now)).items():
            profiles[entity_id].computed = values
    return profiles


async def _load_events(conn: AsyncConnection, profiles: dict[int, Profile], needs: EventNeeds, now: datetime) -> None:
    named = (any_of(conn, events.c.user_id, sorted(profiles)), any_of(conn, events.c.event, sorted(needs.names)))
    since = None if needs.within_days is None else now - timedelta(days=needs.within_days)
    earlier = sa.select(events.c.user_id, events.c.event, sa.func.count()).where(*named)
    if since is not None:
        earlier = earlier.where(events.c.timestamp < since)
        for event in await conn.execute(
            sa.select(events.c.user_id, events.c.event, events.c.timestamp).where(*named, events.c.timestamp >= since)
        ):
            profiles[event.user_id].events.append((event.event, event.timestamp))
    for user_id, name, count in await conn.execute(earlier.group_by(events.c.user_id, events.c.event)):
        profiles[user_id].earlier_events[name] = count


async def _load_accounts(conn: AsyncConnection, ids: Iterable[int]) -> dict[int, Profile]:
    ids = sorted(ids)
    if not ids:
        return {}
    names = columns_of(Entity.ACCOUNT)
    rows = await conn.execute(
        sa.select(accounts.c.id, accounts.c.traits, *(accounts.c[name] for name in names)).where(
            any_of(conn, accounts.c.id, ids)
        )
    )
    return {row.id: Profile(columns=dict(zip(names, row[2:], strict=True)), traits=row.traits) for row in rows}
