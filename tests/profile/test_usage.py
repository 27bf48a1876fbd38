"""Product usage: per-feature counts and scores, windows and trend, accounts, duplicates, merges, rebuild."""

import asyncio
import uuid
from datetime import timedelta

import sqlalchemy as sa
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connector.cli import main
from connector.core.db import create_engine, insert
from connector.core.environment import get_environment
from connector.core.kinds import Entity
from connector.core.models import FeatureUsage, JournalEntry, UserIdentifier, utcnow
from connector.core.settings import ConnectorSettings
from connector.core.spec import format_timestamp, normalise_message
from connector.flow.journal import lease_row, queue
from connector.inbound.writer import journal_row
from connector.processing.processor import apply_journal
from connector.profile import usage
from connector.profile.computed import computed_attributes
from tests.support.api import post_call, put_settings
from tests.support.app import admin_auth, drain

feature_usage = FeatureUsage.__table__
journal = JournalEntry.__table__
FLAGS = [
    "positive",
    "Positive",
    " POSITIVE ",
    "negative",
    "Negative",
    "NEGATIVE",
    "neutral",
    "Neutral",
    "meh",
    "",
    None,
    1,
    True,
    {"flag": "positive"},
]
FEATURES = ["search", "Reports", "export", "billing", "alerts", "api", "sso"]


def expected_score(flag):
    if isinstance(flag, str) and flag.strip().lower() == "positive":
        return 1
    if isinstance(flag, str) and flag.strip().lower() == "negative":
        return -1
    return 0


@given(st.sampled_from(FLAGS))
def test_flags_weigh_case_insensitively_and_anything_else_is_neutral(flag):
    assert usage.flag_score(flag) == expected_score(flag)


async def user_id_of(client, user_id):
    return (await client.get("/api/users", params={"user_id": user_id}, headers=admin_auth())).json()["id"]


async def usage_of(client, entity, entity_id, **params):
    response = await client.get(f"/api/{entity}/{entity_id}/usage", params=params, headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()


def track(user, feature, flag, at, **extra):
    properties = {"feature": feature} if feature is not None else {}
    if flag is not None:
        properties["eventFlag"] = flag
    return {
        "userId": user,
        "event": "Feature Used",
        "properties": properties,
        "timestamp": format_timestamp(at),
        **extra,
    }


async def test_counts_scores_windows_and_trend_for_mixed_flags(client, runtime):
    now = utcnow()
    old = now - timedelta(days=40)
    for message in [
        track("ada", "Reports", "positive", now),
        track("ada", "Reports", "POSITIVE", now),
        track("ada", "Reports", " Negative ", now),
        track("ada", "search", None, now),
        track("ada", "search", "unknown", now),
        track("ada", "export", "negative", old),
        track("ada", None, "positive", now),
    ]:
        await post_call(client, "track", **message)
    # a page with a feature property is not product usage: only track events are
    await post_call(client, "page", userId="ada", name="Home", properties={"feature": "Reports"})
    await drain(runtime)

    found = await usage_of(client, "users", await user_id_of(client, "ada"))
    attributes = found["attributes"]
    assert attributes["top_features"] == ["Reports", "search", "export"]
    assert (attributes["events_30d"], attributes["score_30d"]) == (5, 1)
    assert found["totals"] == {"count": 6, "score": 0, "features": 3}
    reports = found["features"][0]
    assert (reports["feature"], reports["count"], reports["score"]) == ("Reports", 3, 1)
    assert (reports["positive"], reports["neutral"], reports["negative"]) == (2, 0, 1)
    assert found["features"][1]["neutral"] == 2
    assert attributes["last_feature_at"] == format_timestamp(now)

    this_monday = now.date() - timedelta(days=now.weekday())
    assert [week["week"] for week in found["trend"]] == [
        (this_monday - timedelta(weeks=11 - i)).isoformat() for i in range(12)
    ]
    assert attributes["trend"] == [week["count"] for week in found["trend"]]
    assert attributes["trend"][-1] == 5 and sum(attributes["trend"]) == 6
    assert found["trend"][-1]["score"] == 1


async def test_top_features_are_at_most_five_by_count_and_the_chart_limit_is_honoured(client, runtime):
    now = utcnow()
    for rank, feature in enumerate(["a", "b", "c", "d", "e", "f", "g"]):
        for _ in range(7 - rank):
            await post_call(client, "track", **track("ada", feature, None, now))
    await drain(runtime)
    ada = await user_id_of(client, "ada")
    assert (await usage_of(client, "users", ada))["attributes"]["top_features"] == ["a", "b", "c", "d", "e"]
    assert [f["feature"] for f in (await usage_of(client, "users", ada, limit=7))["features"]] == list("abcdefg")
    assert [f["feature"] for f in (await usage_of(client, "users", ada, limit=2))["features"]] == ["a", "b"]
    for limit in ("0", "101", "-1", "x", "\u00b2"):  # "²" passes str.isdigit() but not int()
        bad = await client.get(f"/api/users/{ada}/usage", params={"limit": limit}, headers=admin_auth())
        assert bad.status_code == 400 and bad.json()["field"] == "limit", limit
    for path in ("/api/users/999999/usage", "/api/accounts/999999/usage"):
        assert (await client.get(path, headers=admin_auth())).status_code == 404
    assert (await client.get(f"/api/users/{ada}/usage")).status_code == 401


async def test_account_usage_goes_to_the_account_linked_at_the_time(client, runtime):
    await put_settings(client, handle_accounts=True)
    now = utcnow()
    await post_call(client, "group", userId="ada", groupId="g-1")
    await post_call(client, "track", **track("ada", "search", "positive", now))
    await post_call(client, "track", **track("ada", "search", "negative", now))
    await post_call(client, "group", userId="ada", groupId="g-2")
    await post_call(client, "track", **track("ada", "export", "positive", now))
    await drain(runtime)

    def account(group_id):
        return client.get("/api/accounts", params={"group_id": group_id}, headers=admin_auth())

    first, second = (await account("g-1")).json()["id"], (await account("g-2")).json()["id"]
    assert (await usage_of(client, "accounts", first))["totals"] == {"count": 2, "score": 0, "features": 1}
    assert (await usage_of(client, "accounts", second))["attributes"]["top_features"] == ["export"]
    assert (await usage_of(client, "users", await user_id_of(client, "ada")))["totals"]["count"] == 3


async def test_a_duplicate_message_counts_once(client, runtime):
    now = utcnow()
    message = track("ada", "search", "positive", now, messageId="m-1")
    await post_call(client, "track", **message)
    await post_call(client, "track", **message)
    await drain(runtime)
    # the same message reaching the processor again (a replayed journal) is not counted either
    async with runtime.engine.begin() as conn:
        await apply_through_journal(conn, {"type": "track", **message}, ConnectorSettings(), now)
    found = await usage_of(client, "users", await user_id_of(client, "ada"))
    assert found["totals"] == {"count": 1, "score": 1, "features": 1}


async def test_a_merge_combines_both_sides_usage(client, runtime):
    now, earlier = utcnow(), utcnow() - timedelta(days=3)
    await post_call(
        client,
        "track",
        anonymousId="anon-1",
        event="Feature Used",
        timestamp=format_timestamp(earlier),
        properties={"feature": "search", "eventFlag": "positive"},
    )
    await post_call(
        client,
        "track",
        anonymousId="anon-1",
        event="Feature Used",
        timestamp=format_timestamp(now),
        properties={"feature": "search"},
    )
    await post_call(client, "track", **track("ada", "search", "negative", now))
    await post_call(client, "track", **track("ada", "export", "positive", now))
    await drain(runtime)
    await post_call(client, "identify", userId="ada", anonymousId="anon-1")
    await drain(runtime)

    found = await usage_of(client, "users", await user_id_of(client, "ada"))
    search = next(f for f in found["features"] if f["feature"] == "search")
    assert (search["count"], search["score"]) == (3, 0)
    assert search["first_at"] == format_timestamp(earlier)
    assert found["totals"] == {"count": 4, "score": 1, "features": 2}
    async with runtime.engine.connect() as conn:
        owners = set((await conn.execute(sa.select(feature_usage.c.entity_id).distinct())).scalars())
    assert owners == {await user_id_of(client, "ada")}


# --- the rebuild equals the incremental result --------------------------------

actions = st.lists(
    st.one_of(
        st.tuples(
            st.just("track"),
            st.integers(0, 4),
            st.sampled_from([*FEATURES, None]),
            st.sampled_from(FLAGS),
            st.integers(-2, 120),
            st.integers(0, 12),
        ),
        st.tuples(st.just("merge"), st.integers(0, 4), st.integers(0, 4)),
        st.tuples(st.just("group"), st.integers(0, 4), st.integers(0, 2)),
    ),
    min_size=1,
    max_size=25,
)


def people(run, index):
    # 0-2 are known users, 3-4 anonymous visitors
    return {"userId": f"{run}-u{index}"} if index < 3 else {"anonymousId": f"{run}-a{index}"}


async def apply_through_journal(conn, raw, config, now):
    """The message written to the journal and applied in `conn`'s transaction, as a worker's batch does; a
    messageId the journal holds already is that row applied again (a replay)."""
    row = journal_row(normalise_message(raw, now), now, "api")
    await conn.execute(insert(journal, conn.dialect.name).values(row).on_conflict_do_nothing())
    journal_id = await conn.scalar(sa.select(journal.c.id).where(journal.c.message_id == row["message_id"]))
    queued = insert(queue, conn.dialect.name).values(id=journal_id, partition=row["partition"])
    await conn.execute(queued.on_conflict_do_nothing())  # a replay: the row is pending again
    await apply_journal(conn, list(await lease_row(conn, journal_id)), config)


async def snapshot(conn):
    rows = await conn.execute(sa.select(feature_usage).order_by(*feature_usage.primary_key.columns))
    return [tuple(row) for row in rows]


@given(actions)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_rebuild_equals_the_incremental_result(runtime, steps):
    run, now = uuid.uuid4().hex[:8], utcnow()
    config = ConnectorSettings(handle_accounts=True)
    expected_count = expected_score_total = 0
    seen: set[str] = set()
    async with runtime.engine.begin() as conn:
        for step in steps:
            if step[0] == "track":
                _, who, feature, flag, days_ago, message_number = step
                message_id = f"{run}-m{message_number}"
                raw = {
                    "type": "track",
                    "event": "Feature Used",
                    "messageId": message_id,
                    **people(run, who),
                    "timestamp": format_timestamp(now - timedelta(days=days_ago, minutes=message_number)),
                    "properties": {"feature": feature, "eventFlag": flag},
                }
                if message_id not in seen and feature is not None:
                    expected_count += 1
                    expected_score_total += expected_score(flag)
                seen.add(message_id)
            elif step[0] == "merge":
                raw = {
                    "type": "identify",
                    "userId": f"{run}-u{step[1] % 3}",
                    "anonymousId": f"{run}-a{3 + step[2] % 2}",
                }
            else:
                raw = {"type": "group", **people(run, step[1]), "groupId": f"{run}-g{step[2]}"}
            await apply_through_journal(conn, raw, config, now)
        incremental = await snapshot(conn)
        # every distinct feature event counted once, whatever the duplicates and merges did
        assert await _run_totals(conn, run) == (expected_count, expected_score_total)

    await usage.rebuild(runtime.engine)
    async with runtime.engine.connect() as conn:
        assert await snapshot(conn) == incremental
        await _sql_matches_python(conn, run, now)


async def _sql_matches_python(conn, run, now):
    """The SQL forms of the usage attributes (for segment rules) agree with the Python ones."""
    users = (
        sa.select(UserIdentifier.__table__.c.user_id.label("id"))
        .where(UserIdentifier.__table__.c.value.like(f"{run}-%"))
        .distinct()
        .subquery()
    )
    rows = await conn.execute(
        sa.select(
            users.c.id,
            usage.sql_window_total(Entity.USER, users.c.id, "count", now.date()),
            usage.sql_window_total(Entity.USER, users.c.id, "score", now.date()),
            *(sa.literal(name).in_(usage.sql_top_features(Entity.USER, users.c.id)) for name in FEATURES),
        )
    )
    for user_id, events_30d, score_30d, *tops in rows:
        attributes = (await usage.report(conn, Entity.USER, user_id, now))["attributes"]
        assert (events_30d, score_30d) == (attributes["events_30d"], attributes["score_30d"])
        assert [bool(top) for top in tops] == [name in attributes["top_features"] for name in FEATURES]


async def _run_totals(conn, run):
    """Usage of this example's users only (examples share the database), summed over them."""
    identifiers = UserIdentifier.__table__
    owners = sa.select(identifiers.c.user_id).where(identifiers.c.value.like(f"{run}-%"))
    row = (
        await conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(feature_usage.c.count), 0),
                sa.func.coalesce(sa.func.sum(feature_usage.c.positive - feature_usage.c.negative), 0),
            ).where(feature_usage.c.entity == "user", feature_usage.c.entity_id.in_(owners))
        )
    ).one()
    return int(row[0]), int(row[1])


def test_cli_rebuild_restores_usage(database_url, monkeypatch):
    now = utcnow()
    config = ConnectorSettings()

    async def prepare():
        engine = create_engine(database_url)
        async with engine.begin() as conn:
            for number, flag in enumerate(["positive", "NEGATIVE", "positive"]):
                raw = {
                    "type": "track",
                    "userId": "ada",
                    "event": "Feature Used",
                    "messageId": f"m-{number}",
                    "properties": {"feature": "search", "eventFlag": flag},
                }
                await apply_through_journal(conn, raw, config, now)
            expected = await snapshot(conn)
            await conn.execute(feature_usage.delete())
            emptied = await snapshot(conn)
        await engine.dispose()
        return emptied, expected

    emptied, expected = asyncio.run(prepare())
    assert emptied == [] and expected
    monkeypatch.setenv("DATABASE_URL", database_url)
    get_environment.cache_clear()
    try:
        result = CliRunner().invoke(main, ["usage", "rebuild"])
    finally:
        get_environment.cache_clear()
    assert result.exit_code == 0, result.output
    assert "rebuilt: 1 rows" in result.output

    async def read():
        engine = create_engine(database_url)
        async with engine.connect() as conn:
            rows = await snapshot(conn)
            user = rows[0][1]
            attributes = await computed_attributes(conn, Entity.USER, user)
        await engine.dispose()
        return rows, attributes

    rows, attributes = asyncio.run(read())
    assert rows == expected
    assert attributes["usage"]["score_30d"] == 1 and attributes["usage"]["top_features"] == ["search"]
    assert attributes["audiences"] == {}
