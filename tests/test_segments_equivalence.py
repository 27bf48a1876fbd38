"""One rule, one meaning: the Python evaluator and the SQL compiler agree on every profile.

Hypothesis generates rules (nested all/any/not, every operator, attribute and event
conditions) and profiles (traits of mixed JSON types, nested objects, arrays, date-like
strings, accounts, events at various ages); the ids the compiled SQL selects must be
exactly the ids the Python evaluator accepts, on SQLite and on PostgreSQL.
"""

from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.db import create_engine
from connector.models import Account, Event, User
from connector.segments.attributes import ATTRIBUTES, resolve_attribute
from connector.segments.compile import Compiler
from connector.segments.evaluate import evaluate
from connector.segments.membership import load_profiles
from connector.segments.rules import COUNT_OPS, OPERATORS_BY_KIND, validate

NOW = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=timezone.utc)
EVENT_NAMES = ["Order Completed", "order completed", "Signed In"]
TRAIT_KEYS = ["plan", "age", "tags", "signup", "flag", "nested"]


def _date_text(days: float, shape: str) -> str:
    return (NOW - timedelta(days=days)).strftime(shape)


date_texts = st.builds(_date_text, st.sampled_from([-2, 0, 0.5, 1, 6.9, 7, 29, 31, 400]),
                       st.sampled_from(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%SZ", "%Y-%m-%d %H:%M:%S.%f+02:00",
                                        "%Y-%m-%dT%H:%M", "%Y/%m/%d"]))
strings = st.one_of(
    st.sampled_from(["pro", "Pro", "free", "pro ", "", "10", "1.0", "true", "é-pro", "ada@example.com",
                     "2024-02-31", "2024-01-15T10:00:00", "2024-01-15X10:00:00", "2024-13-45"]),
    st.text(alphabet="abPro -:T01é@.", max_size=8), date_texts)
numbers = st.one_of(st.integers(-1000, 1000), st.sampled_from([0, 1, 1.0, 10, 10.5, -0.0, 2.5e-7, 9007199254740991]),
                    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False))
scalars = st.one_of(st.booleans(), numbers, strings)
json_values = st.recursive(st.one_of(st.none(), scalars),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.sampled_from(TRAIT_KEYS), inner, max_size=3)),
                           max_leaves=6)
traits = st.dictionaries(st.sampled_from(TRAIT_KEYS), json_values, max_size=5)
moments = st.builds(lambda days: NOW - timedelta(days=days),
                    st.one_of(st.sampled_from([0, 1, 7, 30, 31]), st.floats(-3, 400, allow_nan=False)))

accounts_data = st.lists(st.fixed_dictionaries({
    "traits": traits, "domain": st.one_of(st.none(), st.sampled_from(["acme.com", "pro.io", "Acme.com"])),
    "created_at": moments}), max_size=3)
users_data = st.lists(st.fixed_dictionaries({
    "traits": traits, "created_at": moments, "last_seen_at": st.one_of(st.none(), moments),
    "account": st.one_of(st.none(), st.integers(0, 2)),
    "events": st.lists(st.tuples(st.sampled_from(EVENT_NAMES), moments), max_size=5)}), min_size=1, max_size=6)

VALUES = {
    "eq": scalars, "neq": scalars, "in": st.lists(scalars, min_size=1, max_size=3),
    "not_in": st.lists(scalars, min_size=1, max_size=3),
    "contains": st.one_of(st.booleans(), numbers, strings.filter(bool)),
    "starts_with": st.sampled_from(["p", "P", "pro", "20", "é", "a"]),
    "ends_with": st.sampled_from(["o", "pro", ".com", "Z", " ", "0"]),
    "gt": numbers, "gte": numbers, "lt": numbers, "lte": numbers,
    "before": date_texts.filter(lambda text: "/" not in text and len(text) != 16),
    "after": date_texts.filter(lambda text: "/" not in text and len(text) != 16),
    "within_last_days": st.sampled_from([1, 7, 30.5, 365]),
}


def attribute_names(entity: str) -> list[str]:
    names = []
    for root, attribute in ATTRIBUTES[entity].items():
        names += [f"{root}.{key}" for key in ("plan", "age", "tags", "signup", "nested.plan")] if attribute.prefix else [root]
    return names


@st.composite
def attribute_conditions(draw, entity: str):
    name = draw(st.sampled_from(attribute_names(entity)))
    attribute, _ = resolve_attribute(entity, name)
    op = draw(st.sampled_from(OPERATORS_BY_KIND[attribute.kind]))
    node = {"attribute": name, "op": op}
    if op not in ("exists", "not_exists"):
        node["value"] = draw(VALUES[op])
    return node


event_conditions = st.builds(
    lambda name, count, days: {"event": name, **({"count": count} if count else {}),
                               **({"within_days": days} if days else {})},
    st.sampled_from(EVENT_NAMES), st.dictionaries(st.sampled_from(COUNT_OPS), st.integers(0, 3), max_size=2),
    st.sampled_from([None, 1, 7, 30]))


def rules(entity: str):
    leaves = attribute_conditions(entity) if entity == "account" else st.one_of(attribute_conditions(entity),
                                                                               event_conditions)
    return st.recursive(leaves, lambda inner: st.one_of(
        st.builds(lambda parts: {"all": parts}, st.lists(inner, max_size=3)),
        st.builds(lambda parts: {"any": parts}, st.lists(inner, max_size=3)),
        st.builds(lambda part: {"not": part}, inner)), max_leaves=5)


async def _store(engine, accounts, users) -> None:
    async with engine.begin() as conn:
        for table in (Event.__table__, User.__table__, Account.__table__):
            await conn.execute(table.delete())
        account_ids = []
        for index, account in enumerate(accounts):
            account_ids.append(await conn.scalar(Account.__table__.insert().values(
                group_id=f"g{index}", domain=account["domain"] if account["domain"] not in
                [a["domain"] for a in accounts[:index]] else None, traits=account["traits"], trait_timestamps={},
                created_at=account["created_at"], updated_at=NOW).returning(Account.__table__.c.id)))
        for index, user in enumerate(users):
            account = account_ids[user["account"]] if user["account"] is not None and user["account"] < len(account_ids) else None
            user_id = await conn.scalar(User.__table__.insert().values(
                traits=user["traits"], trait_timestamps={}, account_id=account, created_at=user["created_at"],
                updated_at=NOW, last_seen_at=user["last_seen_at"]).returning(User.__table__.c.id))
            for number, (name, at) in enumerate(user["events"]):
                await conn.execute(Event.__table__.insert().values(
                    user_id=user_id, message_id=f"m-{index}-{number}", type="track", event=name, timestamp=at,
                    received_at=at, properties={}, context={}))


async def _assert_same(engine, entity: str, rule_list: list) -> None:
    async with engine.connect() as conn:
        table = Compiler(conn.dialect.name, entity, NOW).table
        ids = set((await conn.execute(sa.select(table.c.id))).scalars())
        profiles = await load_profiles(conn, entity, ids, set(EVENT_NAMES))
        for rule in rule_list:
            validate(rule, entity)
            in_sql = set((await conn.execute(Compiler(conn.dialect.name, entity, NOW).select_ids(rule))).scalars())
            in_python = {entity_id for entity_id, profile in profiles.items() if evaluate(rule, entity, profile, NOW)}
            assert in_sql == in_python, (rule, {i: (p.traits, p.columns, p.account and p.account.traits) for i, p in profiles.items()})


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


@pytest.mark.parametrize("value, expected", [
    ({"plan": "pro"}, True), ({"plan": "Pro"}, False), ({"plan": ["pro"]}, False), ({"plan": None}, False), ({}, False),
])
async def test_eq_is_exact_and_typed(engine, value, expected):
    await _store(engine, [], [{"traits": value, "created_at": NOW, "last_seen_at": None, "account": None, "events": []}])
    rule = {"attribute": "traits.plan", "op": "eq", "value": "pro"}
    await _assert_same(engine, "user", [rule, {"not": rule}])
    async with engine.connect() as conn:
        selected = (await conn.execute(Compiler(conn.dialect.name, "user", NOW).select_ids(rule))).scalars().all()
    assert bool(selected) is expected
