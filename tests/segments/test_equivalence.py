"""One rule, one meaning: the Python evaluator and the SQL compiler agree on every profile.

Hypothesis generates rules (nested all/any/not, every operator, attribute, event and
audience conditions, usage.* computed attributes, the scanners' persona.* and icp.*) and profiles
(traits of mixed JSON types, nested objects, arrays, date-like strings, accounts, events at various
ages, feature usage around the 30-day, 12-week and usage.pattern window edges with tied counts,
audience entries and exits, personas and ICP scores); the ids the compiled SQL selects must be
exactly the ids the Python evaluator accepts, on SQLite and on PostgreSQL. ICP scores made in
Python (icp.refresh) must be those the SQL compiler makes (icp.recompute).
"""

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.core.db import create_engine
from connector.core.kinds import Entity
from connector.core.models import Account, AudienceMembership, Event, FeatureUsage, User
from connector.core.settings import IcpSettings
from connector.profile.attributes import ATTRIBUTES, load_profiles, resolve_attribute
from connector.segments import icp
from connector.segments.compile import Compiler
from connector.segments.evaluate import evaluate
from connector.segments.rules import COUNT_OPS, OPERATORS_BY_KIND, event_needs, validate

NOW = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
EVENT_NAMES = ["Order Completed", "order completed", "Signed In"]
TRAIT_KEYS = ["plan", "age", "tags", "signup", "flag", "nested"]
# Saturday: this ISO week began 5 days ago, the 12-week trend 82 days ago; the 30-day window 29 days ago.
FEATURES = ["export", "Export", "search", "api", "sso", "billing", "alerts"]
USAGE_DAYS = [-2, 0, 1, 5, 6, 12, 13, 14, 27, 28, 29, 30, 55, 56, 60, 82, 83, 200]
AUDIENCES = ["first_time_shopper", "vip", "Vip", "trial"]
SENIORITIES = ["vp", "c_level", "entry", "VP"]
DEPARTMENTS = ["engineering", "sales", "customer_success"]
FITS = ["good", "medium", "poor"]
PATTERNS = ["new", "growing", "steady", "declining", "dormant", "Dormant"]


def _date_text(days: float, shape: str) -> str:
    return (NOW - timedelta(days=days)).strftime(shape)


date_texts = st.builds(
    _date_text,
    st.sampled_from([-2, 0, 0.5, 1, 6.9, 7, 29, 31, 400]),
    st.sampled_from(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S.%f+02:00", "%Y-%m-%dT%H:%M", "%Y/%m/%d"]),
)
strings = st.one_of(
    st.sampled_from(
        [
            "pro",
            "Pro",
            "free",
            "pro ",
            "",
            "10",
            "1.0",
            "true",
            "é-pro",
            "ada@example.com",
            "2024-02-31",
            "2024-01-15T10:00:00",
            "2024-01-15X10:00:00",
            "2024-13-45",
        ]
    ),
    st.text(alphabet="abPro -:T01é@.", max_size=8),
    date_texts,
)
numbers = st.one_of(
    st.integers(-1000, 1000),
    st.sampled_from([0, 1, 1.0, 10, 10.5, -0.0, 2.5e-7, 9007199254740991]),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)
scalars = st.one_of(st.booleans(), numbers, strings)
json_values = st.recursive(
    st.one_of(st.none(), scalars),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(TRAIT_KEYS), inner, max_size=3)
    ),
    max_leaves=6,
)
traits = st.dictionaries(st.sampled_from(TRAIT_KEYS), json_values, max_size=5)
moments = st.builds(
    lambda days: NOW - timedelta(days=days),
    st.one_of(st.sampled_from([0, 1, 7, 30, 31]), st.floats(-3, 400, allow_nan=False)),
)


# feature_usage rows: (feature, days ago) -> (count, positive, negative, hour of the last use)
def usage_rows(max_size=8, days=USAGE_DAYS):
    return st.dictionaries(
        st.tuples(st.sampled_from(FEATURES), st.sampled_from(days)),
        st.integers(1, 3)
        .flatmap(
            lambda count: st.tuples(
                st.just(count), st.integers(0, count), st.integers(0, count), st.sampled_from([0, 11, 12, 23])
            )
        )
        .map(lambda row: (row[0], row[1], min(row[2], row[0] - row[1]), row[3])),
        max_size=max_size,
    )


# audience_memberships rows: key -> (entered, exited) as hours ago, either may be missing; ties are not members
audience_rows = st.dictionaries(
    st.sampled_from(AUDIENCES), st.tuples(st.sampled_from([None, 1, 2]), st.sampled_from([None, 1, 2])), max_size=3
)

accounts_data = st.lists(
    st.fixed_dictionaries(
        {
            "traits": traits,
            "domain": st.one_of(st.none(), st.sampled_from(["acme.com", "pro.io", "Acme.com"])),
            "created_at": moments,
            "usage": usage_rows(),
            "icp": st.one_of(st.none(), st.tuples(st.integers(-20, 100), st.sampled_from(FITS))),
        }
    ),
    max_size=3,
)
users_data = st.lists(
    st.fixed_dictionaries(
        {
            "traits": traits,
            "created_at": moments,
            "last_seen_at": st.one_of(st.none(), moments),
            "account": st.one_of(st.none(), st.integers(0, 2)),
            "events": st.lists(st.tuples(st.sampled_from(EVENT_NAMES), moments), max_size=5),
            "usage": usage_rows(),
            "audiences": audience_rows,
            "persona": st.tuples(
                st.one_of(st.none(), st.sampled_from(SENIORITIES[:3])),
                st.one_of(st.none(), st.sampled_from(DEPARTMENTS)),
            ),
        }
    ),
    min_size=1,
    max_size=6,
)

VALUES = {
    "eq": scalars,
    "neq": scalars,
    "in": st.lists(scalars, min_size=1, max_size=3),
    "not_in": st.lists(scalars, min_size=1, max_size=3),
    "contains": st.one_of(st.booleans(), numbers, strings.filter(bool)),
    "starts_with": st.sampled_from(["p", "P", "pro", "20", "é", "a"]),
    "ends_with": st.sampled_from(["o", "pro", ".com", "Z", " ", "0"]),
    "gt": numbers,
    "gte": numbers,
    "lt": numbers,
    "lte": numbers,
    "before": date_texts.filter(lambda text: "/" not in text and len(text) != 16),
    "after": date_texts.filter(lambda text: "/" not in text and len(text) != 16),
    "within_last_days": st.sampled_from([1, 7, 30.5, 365]),
}


def _labels(names, attributes, extra=()):
    """Values of eq / neq / in / not_in / starts_with / contains that hit these string attributes' labels."""
    return {
        **{(name, op): st.one_of(st.sampled_from(names), VALUES[op]) for name in attributes for op in ("eq", "neq")},
        **{
            (name, op): st.lists(st.one_of(st.sampled_from(names), scalars), min_size=1, max_size=3)
            for name in attributes
            for op in ("in", "not_in")
        },
        **{
            (name, op): st.sampled_from([label[:3] for label in names] + [label[-3:] for label in names])
            for name in attributes
            for op in ("starts_with", "ends_with", "contains")
        },
    }


# Values that hit what usage.* and the scanners hold, besides the general ones.
USAGE_VALUES = {
    **_labels(SENIORITIES, ["persona.seniority"]),
    **_labels(DEPARTMENTS, ["persona.department"]),
    **_labels(FITS, ["icp.fit", "account.icp.fit"]),
    **_labels(PATTERNS, ["usage.pattern"]),
    **{
        (name, op): st.one_of(st.integers(-20, 100), VALUES[op])
        for name in ("icp.score", "account.icp.score")
        for op in ("eq", "neq", "gt", "gte", "lt", "lte")
    },
    ("usage.top_features", "contains"): st.one_of(st.sampled_from(FEATURES), VALUES["contains"]),
    ("usage.trend", "contains"): st.one_of(st.integers(0, 6), st.sampled_from([1.0, "1", True])),
    **{
        ("usage.last_feature_at", op): st.one_of(
            VALUES[op],
            st.builds(
                lambda days, hour: f"{NOW.date() - timedelta(days=days)}T{hour:02d}:30:00Z",
                st.sampled_from(USAGE_DAYS),
                st.sampled_from([0, 6, 12, 23]),
            ),
        )
        for op in ("before", "after")
    },
    ("usage.last_feature_at", "within_last_days"): st.sampled_from([0.5, 1, 5.5, 13, 30, 83, 365]),
    **{
        (name, op): st.one_of(st.integers(-4, 12), st.sampled_from([2.5, -0.5]), VALUES[op])
        for name in ("usage.events_30d", "usage.score_30d")
        for op in ("eq", "neq", "gt", "gte", "lt", "lte")
    },
    **{
        (name, op): st.lists(st.one_of(st.integers(-4, 12), scalars), min_size=1, max_size=3)
        for name in ("usage.events_30d", "usage.score_30d")
        for op in ("in", "not_in")
    },
}


def attribute_names(entity: str) -> list[str]:
    names = []
    for root, attribute in ATTRIBUTES[Entity(entity)].items():
        names += (
            [f"{root}.{key}" for key in ("plan", "age", "tags", "signup", "nested.plan")]
            if attribute.prefix
            else [root]
        )
    return names


@st.composite
def attribute_conditions(draw, entity: str, prefix: str = ""):
    name = draw(st.sampled_from([name for name in attribute_names(entity) if name.startswith(prefix)]))
    attribute, _ = resolve_attribute(Entity(entity), name)
    op = draw(st.sampled_from(OPERATORS_BY_KIND[attribute.kind]))
    node = {"attribute": name, "op": op}
    if op not in ("exists", "not_exists"):
        node["value"] = draw(USAGE_VALUES.get((name, op), VALUES[op]))
    return node


event_conditions = st.builds(
    lambda name, count, days: {
        "event": name,
        **({"count": count} if count else {}),
        **({"within_days": days} if days else {}),
    },
    st.sampled_from(EVENT_NAMES),
    st.dictionaries(st.sampled_from(COUNT_OPS), st.integers(0, 3), max_size=2),
    st.sampled_from([None, 1, 7, 30]),
)


audience_conditions = st.builds(lambda key: {"audience": key}, st.sampled_from([*AUDIENCES, "never_seen"]))


def rules(entity: str):
    # usage.* are a few names among many: drawn on their own too, so that rules use them often
    leaves = st.one_of(attribute_conditions(entity), attribute_conditions(entity, "usage."))
    if entity == "user":
        leaves = st.one_of(leaves, event_conditions, audience_conditions)
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.builds(lambda parts: {"all": parts}, st.lists(inner, max_size=3)),
            st.builds(lambda parts: {"any": parts}, st.lists(inner, max_size=3)),
            st.builds(lambda part: {"not": part}, inner),
        ),
        max_leaves=5,
    )


async def _store(engine, accounts, users) -> None:
    async with engine.begin() as conn:
        for table in (
            FeatureUsage.__table__,
            AudienceMembership.__table__,
            Event.__table__,
            User.__table__,
            Account.__table__,
        ):
            await conn.execute(table.delete())
        account_ids = []
        for index, account in enumerate(accounts):
            account_ids.append(
                await conn.scalar(
                    Account.__table__.insert()
                    .values(
                        group_id=f"g{index}",
                        domain=account["domain"]
                        if account["domain"] not in [a["domain"] for a in accounts[:index]]
                        else None,
                        traits=account["traits"],
                        trait_timestamps={},
                        icp_score=account["icp"] and account["icp"][0],
                        icp_fit=account["icp"] and account["icp"][1],
                        created_at=account["created_at"],
                        updated_at=NOW,
                    )
                    .returning(Account.__table__.c.id)
                )
            )
            await _store_usage(conn, "account", account_ids[-1], account["usage"])
        for index, user in enumerate(users):
            account = (
                account_ids[user["account"]]
                if user["account"] is not None and user["account"] < len(account_ids)
                else None
            )
            user_id = await conn.scalar(
                User.__table__.insert()
                .values(
                    traits=user["traits"],
                    trait_timestamps={},
                    account_id=account,
                    persona_seniority=user["persona"][0],
                    persona_department=user["persona"][1],
                    created_at=user["created_at"],
                    updated_at=NOW,
                    last_seen_at=user["last_seen_at"],
                )
                .returning(User.__table__.c.id)
            )
            for number, (name, at) in enumerate(user["events"]):
                await conn.execute(
                    Event.__table__.insert().values(
                        user_id=user_id,
                        message_id=f"m-{index}-{number}",
                        type="track",
                        event=name,
                        timestamp=at,
                        received_at=at,
                        properties={},
                        context={},
                    )
                )
            await _store_usage(conn, "user", user_id, user["usage"])
            for key, (entered, exited) in user["audiences"].items():
                await conn.execute(
                    AudienceMembership.__table__.insert().values(
                        user_id=user_id, audience=key, entered_at=_hours_ago(entered), exited_at=_hours_ago(exited)
                    )
                )


def _hours_ago(hours):
    return None if hours is None else NOW - timedelta(hours=hours)


async def _store_usage(conn, entity, entity_id, rows) -> None:
    for (feature, days_ago), (count, positive, negative, hour) in rows.items():
        day = NOW.date() - timedelta(days=days_ago)
        last_at = datetime.combine(day, time(hour, 59, 59, 999999), UTC)
        await conn.execute(
            FeatureUsage.__table__.insert().values(
                entity=entity,
                entity_id=entity_id,
                feature=feature,
                day=day,
                count=count,
                positive=positive,
                negative=negative,
                first_at=last_at - timedelta(hours=hour),
                last_at=last_at,
            )
        )


async def _assert_same(engine, entity: str, rule_list: list[dict[str, Any]], now=NOW) -> None:
    entity = Entity(entity)
    async with engine.connect() as conn:
        table = Compiler(conn.dialect.name, entity, now).table
        ids = set((await conn.execute(sa.select(table.c.id))).scalars())
        profiles = await load_profiles(conn, entity, ids, event_needs(rule_list), now)
        for rule in rule_list:
            validate(rule, entity)
            in_sql = set((await conn.execute(Compiler(conn.dialect.name, entity, now).select_ids(rule))).scalars())
            in_python = {entity_id for entity_id, profile in profiles.items() if evaluate(rule, entity, profile, now)}
            assert in_sql == in_python, (
                rule,
                {i: (p.traits, p.columns, p.account and p.account.traits, p.computed) for i, p in profiles.items()},
            )


@pytest.fixture
async def engine(database_url):
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accounts=accounts_data, users=users_data, rule_list=st.lists(rules("user"), min_size=1, max_size=6))
async def test_user_rules_mean_the_same_in_python_and_sql(engine, accounts, users, rule_list):
    await _store(engine, accounts, users)
    await _assert_same(engine, "user", rule_list)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(accounts=accounts_data.filter(bool), rule_list=st.lists(rules("account"), min_size=1, max_size=6))
async def test_account_rules_mean_the_same_in_python_and_sql(engine, accounts, rule_list):
    await _store(engine, accounts, [])
    await _assert_same(engine, "account", rule_list)


# Computed attributes alone, on profiles that mostly have usage: flat rule lists, so that
# every condition's own result is compared.
busy_usage: st.SearchStrategy[Any] = st.one_of(
    st.just({}), usage_rows(14).filter(bool), usage_rows(7, days=[0]).filter(lambda rows: len(rows) >= 6)
)  # ties around the fifth
# The clock moves over the stored usage: Saturday noon, then Sunday night and Monday (a new week).
nows = st.sampled_from([NOW, NOW + timedelta(days=1, hours=11), NOW + timedelta(days=2)])


def _profile(usage, audiences, account=None):
    return {
        "traits": {},
        "created_at": NOW,
        "last_seen_at": None,
        "account": account,
        "events": [],
        "usage": usage,
        "audiences": audiences,
        "domain": None,
        "persona": (None, None),
        "icp": None,
    }


computed_users = st.lists(st.builds(_profile, busy_usage, audience_rows), min_size=2, max_size=6)
computed_accounts = st.lists(st.builds(_profile, busy_usage, st.just({})), min_size=2, max_size=4)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    users=computed_users,
    now=nows,
    rule_list=st.lists(st.one_of(attribute_conditions("user", "usage."), audience_conditions), min_size=1, max_size=8),
)
async def test_user_usage_and_audience_conditions_mean_the_same_in_python_and_sql(engine, users, now, rule_list):
    await _store(engine, [], users)
    await _assert_same(engine, "user", rule_list, now)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accounts=computed_accounts,
    now=nows,
    rule_list=st.lists(attribute_conditions("account", "usage."), min_size=1, max_size=8),
)
async def test_account_usage_conditions_mean_the_same_in_python_and_sql(engine, accounts, now, rule_list):
    await _store(engine, accounts, [])
    await _assert_same(engine, "account", rule_list, now)


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"plan": "pro"}, True),
        ({"plan": "Pro"}, False),
        ({"plan": ["pro"]}, False),
        ({"plan": None}, False),
        ({}, False),
    ],
)
async def test_eq_is_exact_and_typed(engine, value, expected):
    await _store(engine, [], [{**_profile({}, {}), "traits": value}])
    rule = {"attribute": "traits.plan", "op": "eq", "value": "pro"}
    await _assert_same(engine, "user", [rule, {"not": rule}])
    async with engine.connect() as conn:
        selected = (await conn.execute(Compiler(conn.dialect.name, Entity.USER, NOW).select_ids(rule))).scalars().all()
    assert bool(selected) is expected


# The ICP scanner: the scores icp.refresh makes in Python are those icp.recompute makes in SQL, so a
# recompute after a refresh of every account changes nothing. Rules over accounts, icp.* excepted.
icp_rules = st.lists(
    st.tuples(
        st.recursive(
            st.one_of(attribute_conditions("account"), attribute_conditions("account", "usage.")).filter(
                lambda node: not node["attribute"].startswith("icp.")
            ),
            lambda inner: st.one_of(
                st.builds(lambda parts: {"all": parts}, st.lists(inner, max_size=3)),
                st.builds(lambda parts: {"any": parts}, st.lists(inner, max_size=3)),
                st.builds(lambda part: {"not": part}, inner),
            ),
            max_leaves=4,
        ),
        st.integers(-50, 50),
    ),
    max_size=5,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    accounts=st.one_of(accounts_data.filter(bool), computed_accounts),
    rules_and_points=icp_rules,
    thresholds=st.tuples(st.integers(-20, 60), st.integers(0, 40)),
    now=nows,
)
async def test_icp_scores_are_the_same_in_python_and_sql(engine, accounts, rules_and_points, thresholds, now):
    await _store(engine, accounts, [])
    setting = IcpSettings(
        rules=[{"rule": rule, "points": points} for rule, points in rules_and_points],
        good_at=thresholds[0] + thresholds[1],
        medium_at=thresholds[0],
    )
    icp.check(setting)
    async with engine.begin() as conn:
        ids = set((await conn.execute(sa.select(Account.__table__.c.id))).scalars())
        await icp.refresh(conn, setting, ids, now)
        assert await icp.recompute(conn, setting, now) == set()
        scored = (
            await conn.execute(sa.select(sa.func.count()).where(Account.__table__.c.icp_fit.is_not(None)))
        ).scalar()
        assert scored == len(ids)
