"""Product usage: track events carrying `properties.feature`, summed per user and per account.

Each such event adds 1 to its feature's count on its UTC day, and its `eventFlag` weighs
it: positive +1, negative -1, anything else (missing, unknown, not a string) 0, compared
case-insensitively. Rows are (entity, id, feature, day) sums, so:

- a duplicate message never counts twice (the caller records only a newly stored event);
- out-of-order delivery changes nothing (sums, minimum of first use, maximum of last use);
- a profile merge adds the loser's rows to the target's;
- `rebuild` recomputes the same rows from the stored events.

Account usage goes to the account the user was linked to when the event was stored
(events.account_id), so an account keeps the usage of its time even if the user moves on.

Computed attributes (`usage.*`), relative to today's UTC date: top_features (up to 5 feature
names by count, ties by name), events_30d and score_30d (today and the 29 days before),
trend (event counts of the last 12 ISO weeks, oldest first, this week last),
last_feature_at and pattern. Events dated in the future count in the totals but not in those windows,
nor in the pattern.

The pattern labels the trend, from the days of use up to today (first and last) and the event
counts of two windows of four weeks: `recent` (today and the 27 days before) and `previous` (the
28 days before those):

- absent: no use up to today;
- `dormant`: no use in the 30-day window (the last use is 30 or more days ago);
- `new`: the first use is within 14 days (today and the 13 days before);
- `growing`: recent > previous and recent >= 1.25 x previous (any use against none is growing);
- `declining`: recent < previous and recent <= 0.75 x previous;
- `steady`: anything else (within a quarter either way).

The first matching label wins. Time alone moves every label, so rules on it are time-based.
"""

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.db import insert_rows
from connector.core.kinds import Entity, MessageType
from connector.core.models import Event, FeatureUsage, utcnow
from connector.core.spec import format_timestamp
from connector.flow import journal

TOP_FEATURES = 5
WINDOW_DAYS = 30
TREND_WEEKS = 12
NEW_DAYS = 14  # `new`: the first use is at most this many days old (today included)
PATTERN_WINDOW_DAYS = 28  # `recent` and `previous`: two windows this long, the first ending today
PATTERNS = ("new", "growing", "steady", "declining", "dormant")
GROWING = (5, 4)  # recent * 4 >= previous * 5: at least a quarter more
DECLINING = (3, 4)  # recent * 4 <= previous * 3: at least a quarter less
FLAG_SCORES = {"positive": 1, "negative": -1}
REBUILD_PAGE = 5000
WRITE_CHUNK = 1000

feature_usage = FeatureUsage.__table__
events = Event.__table__
KEY = ("entity", "entity_id", "feature", "day")


def feature_of(properties: Any) -> str | None:
    if not isinstance(properties, dict):
        return None
    feature = properties.get("feature")
    if not isinstance(feature, str) or not feature.strip():
        return None
    return feature.strip()[:255]


def flag_score(flag: Any) -> int:
    return FLAG_SCORES.get(flag.strip().lower(), 0) if isinstance(flag, str) else 0


# What event_rows reads of a stored event: select these to feed it.
EVENT_COLUMNS = (events.c.type, events.c.user_id, events.c.account_id, events.c.timestamp, events.c.properties)


def event_rows(event: Any) -> list[dict[str, Any]]:
    """The usage rows one stored event adds (none unless it is a track with a feature)."""
    feature = feature_of(event.properties) if event.type == MessageType.TRACK else None
    if feature is None:
        return []
    score = flag_score(event.properties.get("eventFlag"))
    row = {
        "feature": feature,
        "day": event.timestamp.astimezone(UTC).date(),
        "count": 1,
        "positive": int(score > 0),
        "negative": int(score < 0),
        "first_at": event.timestamp,
        "last_at": event.timestamp,
    }
    rows = [{"entity": Entity.USER, "entity_id": event.user_id, **row}]
    if event.account_id is not None:
        rows.append({"entity": Entity.ACCOUNT, "entity_id": event.account_id, **row})
    return rows


def _add_conflict(statement: Any) -> Any:
    new, old = statement.excluded, feature_usage.c
    return statement.on_conflict_do_update(
        index_elements=list(KEY),
        set_={
            "count": old.count + new.count,
            "positive": old.positive + new.positive,
            "negative": old.negative + new.negative,
            "first_at": sa.case((new.first_at < old.first_at, new.first_at), else_=old.first_at),
            "last_at": sa.case((new.last_at > old.last_at, new.last_at), else_=old.last_at),
        },
    )


async def add(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Add rows to the sums: counts add up, first_at keeps the earliest, last_at the latest."""
    sums: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:  # one row per key: a statement's ON CONFLICT DO UPDATE touches a row once
        _fold(sums, row)
    folded = [sums[key] for key in sorted(sums)]  # in key order: two batches summing into shared rows never deadlock
    for start in range(0, len(folded), WRITE_CHUNK):
        await insert_rows(conn, feature_usage, folded[start : start + WRITE_CHUNK], adapt=_add_conflict)


async def merge_users(conn: AsyncConnection, target: int, loser: int) -> None:
    """Fold the loser's usage into the target's (the caller merges the profiles)."""
    mine = (feature_usage.c.entity == Entity.USER) & (feature_usage.c.entity_id == loser)
    rows = [dict(row._mapping, entity_id=target) for row in await conn.execute(sa.select(feature_usage).where(mine))]
    await conn.execute(feature_usage.delete().where(mine))
    await add(conn, rows)


async def forget_user(conn: AsyncConnection, user_id: int) -> int:
    """An erased user's usage rows go (its accounts' are recounted by the caller); returns how many."""
    mine = (feature_usage.c.entity == Entity.USER) & (feature_usage.c.entity_id == user_id)
    return (await conn.execute(feature_usage.delete().where(mine))).rowcount


async def track_event_count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return (await conn.execute(sa.select(sa.func.count()).where(events.c.type == MessageType.TRACK))).scalar_one()


async def rebuild(engine: AsyncEngine, on_page: Callable[[int], object] | None = None) -> int:
    """Recompute every usage row from the stored events, in one transaction; returns the rows written.

    The journal consumers are held off meanwhile (journal.hold_all on PostgreSQL, the write lock on
    SQLite), so no event is counted by both the rebuild and a batch.
    """
    sums: dict[tuple[Any, ...], dict[str, Any]] = {}
    async with engine.begin() as conn:
        await journal.hold_all(conn)
        await conn.execute(feature_usage.delete())
        last_id = 0
        while True:
            page = (
                await conn.execute(
                    sa.select(events.c.id, *EVENT_COLUMNS)
                    .where(events.c.type == MessageType.TRACK, events.c.id > last_id)
                    .order_by(events.c.id)
                    .limit(REBUILD_PAGE)
                )
            ).all()
            if not page:
                break
            for event in page:
                for row in event_rows(event):
                    _fold(sums, row)
            last_id = page[-1].id
            if on_page:
                on_page(len(page))
        await add(conn, list(sums.values()))
    return len(sums)


async def recount_accounts(conn: AsyncConnection, keys: set[tuple[int, str, date]]) -> None:
    """Recompute these (account id, feature, day) rows from the events stored now (after some were erased),
    so they hold what `rebuild` would give them."""
    days = sorted(day for _, _, day in keys)
    start = datetime.combine(days[0], datetime.min.time(), UTC)
    end = datetime.combine(days[-1] + timedelta(days=1), datetime.min.time(), UTC)
    sums: dict[tuple[Any, ...], dict[str, Any]] = {}
    rows = await conn.execute(
        sa.select(*EVENT_COLUMNS).where(
            events.c.type == MessageType.TRACK,
            events.c.account_id.in_(sorted({key[0] for key in keys})),
            events.c.timestamp >= start,
            events.c.timestamp < end,
        )
    )
    for event in rows:
        for row in event_rows(event):
            if row["entity"] == Entity.ACCOUNT and (row["entity_id"], row["feature"], row["day"]) in keys:
                _fold(sums, row)
    for account_id, feature, day in sorted(keys):
        await conn.execute(
            feature_usage.delete().where(
                feature_usage.c.entity == Entity.ACCOUNT,
                feature_usage.c.entity_id == account_id,
                feature_usage.c.feature == feature,
                feature_usage.c.day == day,
            )
        )
    await add(conn, list(sums.values()))


def _fold(sums: dict[tuple[Any, ...], dict[str, Any]], row: dict[str, Any]) -> None:
    key = (row["entity"], row["entity_id"], row["feature"], row["day"])  # KEY, spelled out: this runs per event
    current = sums.get(key)
    if current is None:
        sums[key] = dict(row)
        return
    for name in ("count", "positive", "negative"):
        current[name] += row[name]
    current["first_at"] = min(current["first_at"], row["first_at"])
    current["last_at"] = max(current["last_at"], row["last_at"])


# --- reading ----------------------------------------------------------------


def windows(today: date) -> tuple[date, date]:
    """(first day of the 30-day window, Monday of the first week of the trend)."""
    return today - timedelta(days=WINDOW_DAYS - 1), today - timedelta(days=today.weekday(), weeks=TREND_WEEKS - 1)


def pattern_windows(today: date) -> tuple[date, date]:
    """(first day of the `recent` window, first day of the `previous` one): each PATTERN_WINDOW_DAYS long."""
    recent = today - timedelta(days=PATTERN_WINDOW_DAYS - 1)
    return recent, recent - timedelta(days=PATTERN_WINDOW_DAYS)


def pattern(first: date | None, last: date | None, recent: int, previous: int, today: date) -> str | None:
    """The usage pattern label (see the module's docstring); first and last are days of use up to today."""
    if first is None or last is None:
        return None
    if last < windows(today)[0]:
        return "dormant"
    if first > today - timedelta(days=NEW_DAYS):
        return "new"
    if recent > previous and recent * GROWING[1] >= previous * GROWING[0]:
        return "growing"
    if recent < previous and recent * DECLINING[1] <= previous * DECLINING[0]:
        return "declining"
    return "steady"


def today_of(now: datetime | None) -> date:
    return (now or utcnow()).astimezone(UTC).date()


def _by_feature(entity: Entity, ids: list[int], limit: int) -> Any:
    """Per-feature sums of each entity, best first (count, then name: the order of top_features),
    at most `limit` of them each, with the entity's latest use of any feature."""
    count, last_at = sa.func.sum(feature_usage.c.count), sa.func.max(feature_usage.c.last_at)
    ranked = (
        sa.select(
            feature_usage.c.entity_id,
            feature_usage.c.feature,
            count.label("count"),
            sa.func.sum(feature_usage.c.positive).label("positive"),
            sa.func.sum(feature_usage.c.negative).label("negative"),
            sa.func.min(feature_usage.c.first_at).label("first_at"),
            last_at.label("last_at"),
            sa.func.row_number()
            .over(partition_by=feature_usage.c.entity_id, order_by=(count.desc(), feature_usage.c.feature))
            .label("rank"),
            sa.func.max(last_at).over(partition_by=feature_usage.c.entity_id).label("latest"),
        )
        .where(feature_usage.c.entity == entity, feature_usage.c.entity_id.in_(ids))
        .group_by(feature_usage.c.entity_id, feature_usage.c.feature)
        .subquery()
    )
    return sa.select(ranked).where(ranked.c.rank <= limit).order_by(ranked.c.entity_id, ranked.c.rank)


def _span(entity: Entity, ids: list[int], today: date) -> Any:
    """The first and the last day of use of each entity, up to today."""
    return (
        sa.select(
            feature_usage.c.entity_id,
            sa.func.min(feature_usage.c.day).label("first"),
            sa.func.max(feature_usage.c.day).label("last"),
        )
        .where(feature_usage.c.entity == entity, feature_usage.c.entity_id.in_(ids), feature_usage.c.day <= today)
        .group_by(feature_usage.c.entity_id)
    )


def _by_day(entity: Entity, ids: list[int], today: date) -> Any:
    """Daily sums of each entity over the trend, the 30-day window and the pattern's windows (up to today)."""
    window_start, trend_start = windows(today)
    return (
        sa.select(
            feature_usage.c.entity_id,
            feature_usage.c.day,
            sa.func.sum(feature_usage.c.count).label("count"),
            sa.func.sum(feature_usage.c.positive - feature_usage.c.negative).label("score"),
        )
        .where(
            feature_usage.c.entity == entity,
            feature_usage.c.entity_id.in_(ids),
            feature_usage.c.day >= min(window_start, trend_start, pattern_windows(today)[1]),
            feature_usage.c.day <= today,
        )
        .group_by(feature_usage.c.entity_id, feature_usage.c.day)
    )


def _summarise(
    features: list[Any], days: list[Any], span: Any, today: date
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One entity's computed attributes (last_feature_at a datetime) and its trend weeks; `span` is its
    _span row (None without use up to today)."""
    window_start, trend_start = windows(today)
    recent_start, previous_start = pattern_windows(today)
    weeks = [
        {"week": (trend_start + timedelta(weeks=i)).isoformat(), "count": 0, "score": 0} for i in range(TREND_WEEKS)
    ]
    events_30d = score_30d = recent = previous = 0
    for row in days:
        if row.day >= window_start:
            events_30d += int(row.count)
            score_30d += int(row.score)
        if row.day >= trend_start:
            week = weeks[(row.day - trend_start).days // 7]
            week["count"] += int(row.count)
            week["score"] += int(row.score)
        if row.day >= recent_start:
            recent += int(row.count)
        elif row.day >= previous_start:
            previous += int(row.count)
    attributes = {
        "top_features": [row.feature for row in features[:TOP_FEATURES]],
        "events_30d": events_30d,
        "score_30d": score_30d,
        "trend": [week["count"] for week in weeks],
        "last_feature_at": features[0].latest if features else None,
        "pattern": pattern(span.first, span.last, recent, previous, today) if span else None,
    }
    return attributes, weeks


def formatted(attributes: dict[str, Any]) -> dict[str, Any]:
    """Computed attributes as JSON: last_feature_at as a timestamp string."""
    last = attributes["last_feature_at"]
    return {**attributes, "last_feature_at": format_timestamp(last) if last else None}


async def attributes_of(
    conn: AsyncConnection, entity: Entity, ids: list[int], now: datetime | None = None
) -> dict[int, dict[str, Any]]:
    """The computed attributes of many users (or accounts), in three queries whatever their number.

    Every id gets an entry (no usage: no top features, zeros, no pattern); last_feature_at is a datetime.
    """
    today, ids = today_of(now), sorted(set(ids))
    features: dict[int, list[Any]] = {entity_id: [] for entity_id in ids}
    days: dict[int, list[Any]] = {entity_id: [] for entity_id in ids}
    spans: dict[int, Any] = {}
    if ids:
        for row in await conn.execute(_by_feature(entity, ids, TOP_FEATURES)):
            features[row.entity_id].append(row)
        for row in await conn.execute(_by_day(entity, ids, today)):
            days[row.entity_id].append(row)
        spans = {row.entity_id: row for row in await conn.execute(_span(entity, ids, today))}
    return {
        entity_id: _summarise(features[entity_id], days[entity_id], spans.get(entity_id), today)[0] for entity_id in ids
    }


async def report(
    conn: AsyncConnection,
    entity: Entity,
    entity_id: int,
    now: datetime | None = None,
    feature_limit: int = TOP_FEATURES,
) -> dict[str, Any]:
    """Usage of one user or account: computed attributes, per-feature totals, weekly trend."""
    today = today_of(now)
    mine = (feature_usage.c.entity == entity) & (feature_usage.c.entity_id == entity_id)
    count, score, feature_count = (
        await conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(feature_usage.c.count), 0).label("count"),
                sa.func.coalesce(sa.func.sum(feature_usage.c.positive - feature_usage.c.negative), 0).label("score"),
                sa.func.count(sa.distinct(feature_usage.c.feature)).label("features"),
            ).where(mine)
        )
    ).one()
    features: list[Any] = list(await conn.execute(_by_feature(entity, [entity_id], max(feature_limit, TOP_FEATURES))))
    span = (await conn.execute(_span(entity, [entity_id], today))).first()
    attributes, weeks = _summarise(features, list(await conn.execute(_by_day(entity, [entity_id], today))), span, today)
    return {
        "attributes": formatted(attributes),
        "totals": {"count": int(count), "score": int(score), "features": int(feature_count)},
        "features": [
            {
                "feature": row.feature,
                "count": int(row.count),
                "score": int(row.positive - row.negative),
                "positive": int(row.positive),
                "neutral": int(row.count - row.positive - row.negative),
                "negative": int(row.negative),
                "first_at": format_timestamp(row.first_at),
                "last_at": format_timestamp(row.last_at),
            }
            for row in features[:feature_limit]
        ],
        "trend": weeks,
    }


# --- SQL, for set-based segment evaluation ---------------------------------------
# Each takes the entity's id as a column of the enclosing query (correlated explicitly: they
# are also used inside UNIONs and FROM subqueries) and means exactly what attributes_of computes.


def _sql_total(entity: Entity, entity_id: Any, value: Any, first_day: date, last_day: date) -> Any:
    return sa.func.coalesce(
        sa.select(sa.func.sum(value))
        .where(
            feature_usage.c.entity == entity,
            feature_usage.c.entity_id == entity_id,
            feature_usage.c.day >= first_day,
            feature_usage.c.day <= last_day,
        )
        .correlate_except(feature_usage)
        .scalar_subquery(),
        0,
    )


def sql_window_total(entity: Entity, entity_id: Any, measure: str, today: date) -> Any:
    """events_30d (measure "count") or score_30d ("score") of the entity `entity_id` (a column), as SQL."""
    value = feature_usage.c.count if measure == "count" else feature_usage.c.positive - feature_usage.c.negative
    window_start, _ = windows(today)
    return _sql_total(entity, entity_id, value, window_start, today)


def sql_trend(entity: Entity, entity_id: Any, today: date) -> Any:
    """SELECT of the entity's trend: one row (column `count`) per week, zeros included."""
    _, trend_start = windows(today)
    return sa.union_all(
        *(
            sa.select(
                _sql_total(
                    entity, entity_id, feature_usage.c.count, start, min(start + timedelta(days=6), today)
                ).label("count")
            )
            for start in (trend_start + timedelta(weeks=week) for week in range(TREND_WEEKS))
        )
    )


def sql_top_features(entity: Entity, entity_id: Any) -> Any:
    """SELECT of the entity's top_features (for `feature IN (...)`), ordered as the attribute."""
    count = sa.func.sum(feature_usage.c.count)
    return (
        sa.select(feature_usage.c.feature)
        .where(feature_usage.c.entity == entity, feature_usage.c.entity_id == entity_id)
        .group_by(feature_usage.c.feature)
        .order_by(count.desc(), feature_usage.c.feature)
        .limit(TOP_FEATURES)
        .correlate_except(feature_usage)
    )


def sql_last_feature_at(entity: Entity, entity_id: Any) -> Any:
    """last_feature_at of the entity, NULL without usage."""
    return (
        sa.select(sa.func.max(feature_usage.c.last_at))
        .where(feature_usage.c.entity == entity, feature_usage.c.entity_id == entity_id)
        .correlate_except(feature_usage)
        .scalar_subquery()
    )


def _sql_day(entity: Entity, entity_id: Any, function: Any, today: date) -> Any:
    return (
        sa.select(function(feature_usage.c.day))
        .where(feature_usage.c.entity == entity, feature_usage.c.entity_id == entity_id, feature_usage.c.day <= today)
        .correlate_except(feature_usage)
        .scalar_subquery()
    )


def sql_pattern(entity: Entity, entity_id: Any, today: date) -> Any:
    """pattern of the entity, NULL without use up to today: `pattern`, as one CASE."""
    first = _sql_day(entity, entity_id, sa.func.min, today)
    last = _sql_day(entity, entity_id, sa.func.max, today)
    recent_start, previous_start = pattern_windows(today)
    recent = _sql_total(entity, entity_id, feature_usage.c.count, recent_start, today)
    previous = _sql_total(entity, entity_id, feature_usage.c.count, previous_start, recent_start - timedelta(days=1))

    def label(name: str) -> Any:
        return sa.literal(name, sa.Text)

    return sa.case(
        (last.is_(None), sa.null()),
        (last < windows(today)[0], label("dormant")),
        (first > today - timedelta(days=NEW_DAYS), label("new")),
        (sa.and_(recent > previous, recent * GROWING[1] >= previous * GROWING[0]), label("growing")),
        (sa.and_(recent < previous, recent * DECLINING[1] <= previous * DECLINING[0]), label("declining")),
        else_=label("steady"),
    )
