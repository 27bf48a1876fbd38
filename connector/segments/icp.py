"""The ideal-customer-profile scanner: every account's `icp.score` and `icp.fit`, from the `icp` setting.

`icp.score` is the sum of the points of the setting's rules that the account matches; `icp.fit` is
`good` (score >= good_at), `medium` (>= medium_at) or `poor`. The rules are account segment rules
(rules.py) and are evaluated by the segments' own engine: in Python (evaluate.py) for the accounts a
batch changed (`refresh`), compiled to SQL (compile.py) over every account when the setting changes
or the schedule comes (`recompute`). Both store only what changed and return those accounts, which
the caller carries on like any changed account (segment refresh, outbox). Without the setting no
account has a score (NULL columns), and a rule cannot read `icp.*` itself.

A rule on computed attributes (usage.*) can also change with the clock, and two batches adding usage
to one account at once may each score it without the other's events: `due_on_schedule` makes the
segment schedule recompute such settings, which puts the score right within an interval.
"""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from connector.core.kinds import Entity
from connector.core.models import Account
from connector.core.settings import IcpSettings
from connector.profile.attributes import EventNeeds, load_profiles
from connector.segments.compile import Compiler
from connector.segments.evaluate import evaluate
from connector.segments.rules import RuleError, conditions, is_time_based, uses_computed, validate

accounts = Account.__table__
ENTITY = Entity.ACCOUNT
WRITE_CHUNK = 1000


def check(icp: IcpSettings | None) -> None:
    """Raise RuleError naming the first bad part of a rule, as `icp.rules.<n>.rule...`."""
    for index, entry in enumerate(icp.rules if icp else []):
        path = f"icp.rules.{index}.rule"
        validate(entry.rule, ENTITY, path)
        for node in conditions(entry.rule):
            if node.get("attribute", "").startswith("icp."):
                raise RuleError(path, f"an ICP rule cannot read {node['attribute']}: the score is made from the rules")


def fit_of(icp: IcpSettings, score: int) -> str:
    return "good" if score >= icp.good_at else "medium" if score >= icp.medium_at else "poor"


def due_on_schedule(icp: IcpSettings | None) -> bool:
    """Whether the schedule must recompute the scores: a rule changes with the clock or reads usage."""
    return icp is not None and any(
        is_time_based(entry.rule) or uses_computed(entry.rule, ENTITY) for entry in icp.rules
    )


async def refresh(conn: AsyncConnection, icp: IcpSettings | None, ids: set[int], now: datetime) -> set[int]:
    """Score these accounts in Python; store and return those whose score or fit changed."""
    if icp is None or not ids:
        return set()
    profiles = await load_profiles(
        conn, ENTITY, ids, EventNeeds(), now, computed=any(uses_computed(entry.rule, ENTITY) for entry in icp.rules)
    )
    scored = {}
    for account_id, profile in profiles.items():
        score = sum(entry.points for entry in icp.rules if evaluate(entry.rule, ENTITY, profile, now))
        scored[account_id] = (profile.columns["icp_score"], profile.columns["icp_fit"]), (score, fit_of(icp, score))
    return await _store(conn, scored)


async def recompute(conn: AsyncConnection, icp: IcpSettings | None, now: datetime) -> set[int]:
    """Score every account with the SQL compiler (one query per rule); store and return what changed."""
    matched = []
    for entry in icp.rules if icp else []:
        selected = await conn.execute(Compiler(conn.dialect.name, ENTITY, now).select_ids(entry.rule))
        matched.append((entry.points, set(selected.scalars())))
    scored: dict[int, tuple[tuple[Any, Any], tuple[Any, Any]]] = {}
    for row in await conn.execute(sa.select(accounts.c.id, accounts.c.icp_score, accounts.c.icp_fit)):
        score = sum(points for points, ids in matched if row.id in ids)
        scored[row.id] = (row.icp_score, row.icp_fit), ((score, fit_of(icp, score)) if icp else (None, None))
    return await _store(conn, scored)


async def _store(conn: AsyncConnection, scored: dict[int, tuple[tuple[Any, Any], tuple[Any, Any]]]) -> set[int]:
    """Write the (score, fit) that differ from the stored ones, in id order (two writers never deadlock)."""
    rows = [
        {"account_id": account_id, "score": new[0], "fit": new[1]}
        for account_id, (old, new) in sorted(scored.items())
        if old != new
    ]
    statement = (
        accounts.update()
        .where(accounts.c.id == sa.bindparam("account_id"))
        .values(icp_score=sa.bindparam("score"), icp_fit=sa.bindparam("fit"))
    )
    for start in range(0, len(rows), WRITE_CHUNK):
        await conn.execute(statement, rows[start : start + WRITE_CHUNK])
    return {row["account_id"] for row in rows}
