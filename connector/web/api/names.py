"""The names the connector knows, for the dashboard's pickers: segments, attributes, events, audiences.

- segments: every segment's name, by entity.
- events and traits: every event name and top-level trait key of users and accounts the connector has
  seen, as processing keeps them (profile/names.py), up to MAX_NAMES each: a name stays known after
  retention or an erasure removed what named it.
- audiences: every distinct audience stored, read by skipping through its index (one index probe per
  name, however many rows), up to MAX_NAMES.
- attributes: what a segment rule can name (connector/profile/attributes.py), with those trait keys.
- settings: the choices of each settings list that names something: `ALL` and the segment names,
  the attributes the outbound builder reads (traits, `usage.*`, `audiences.*`, `account.*`), the
  event names.

A settings list of attributes may name one never seen (a typo, or data not sent yet): the save keeps it and
`unseen_attributes` words a warning for it, with the closest names seen.
"""

import difflib
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.kinds import Entity
from connector.core.models import AudienceMembership, Segment
from connector.core.settings import ALL, ConnectorSettings, Mapping, source_of
from connector.profile import names
from connector.profile.attributes import ATTRIBUTES, USAGE
from connector.profile.computed import SCANNED
from connector.web.auth import requires_admin
from connector.web.deps import runtime_of

MAX_NAMES = 1000
OUTBOUND_ACCOUNT_COLUMNS = ("domain", "group_id")  # sent when the account's traits lack them (outbound/messages.py)

# Each step finds the next name after the last one through the column's index: a loose index scan.
_DISTINCT = """
WITH RECURSIVE found(name, n) AS (
    SELECT MIN({column}), 1 FROM {table}
    UNION ALL
    SELECT (SELECT MIN({column}) FROM {table} WHERE {column} > found.name), n + 1
    FROM found WHERE found.name IS NOT NULL AND n < :limit
)
SELECT name FROM found WHERE name IS NOT NULL
"""


async def distinct_names(conn: AsyncConnection, table: sa.Table, column: str) -> list[str]:
    """The column's distinct values in order, up to MAX_NAMES (the column must be indexed)."""
    query = sa.text(_DISTINCT.format(table=table.name, column=table.c[column].name))
    return list((await conn.scalars(query, {"limit": MAX_NAMES})).all())


def rule_attributes(entity: Entity, traits: dict[Entity, list[str]]) -> list[str]:
    """Every attribute a rule of this entity can name, trait paths from the keys seen."""
    names: list[str] = []
    for root, attribute in ATTRIBUTES[Entity(entity)].items():
        if attribute.prefix:
            owner = Entity.ACCOUNT if root == "account.traits" else entity
            names += [f"{root}.{key}" for key in traits[owner]]
        else:
            names.append(root)
    return names


def outbound_attributes(traits: list[str], audiences: list[str] | None) -> list[str]:
    """Attribute names the outbound builder reads for a user (with audiences) or an account (without), spelled as
    the segment rules spell them (`traits.plan`), so a name reads the same in Settings and in the editor."""
    usage = list(USAGE)
    named = [f"traits.{key}" for key in traits]
    if audiences is None:
        return [*named, *OUTBOUND_ACCOUNT_COLUMNS, *usage, *scanned(Entity.ACCOUNT)]
    return [*named, *usage, *scanned(Entity.USER), *(f"audiences.{key}" for key in audiences)]


def scanned(entity: Entity) -> list[str]:
    """The scanners' attributes of the entity (persona.* of a user, icp.* of an account)."""
    _, root, columns = SCANNED[Entity(entity)]
    return [f"{root}.{name}" for name in columns]


async def known_names(conn: AsyncConnection) -> dict[str, Any]:
    segments: dict[str, list[str]] = {Entity.USER: [], Entity.ACCOUNT: []}
    for name, entity in await conn.execute(
        sa.select(Segment.__table__.c.name, Segment.__table__.c.entity).order_by(Segment.__table__.c.name)
    ):
        segments.setdefault(entity, []).append(name)
    traits = {entity: await names.known(conn, entity, names.TRAIT, MAX_NAMES) for entity in Entity}
    events = await names.known(conn, Entity.USER, names.EVENT, MAX_NAMES)
    audiences = await distinct_names(conn, AudienceMembership.__table__, "audience")
    account_attributes = outbound_attributes(traits[Entity.ACCOUNT], None)
    return {
        "segments": segments,
        "events": events,
        "audiences": audiences,
        "traits": traits,
        "attributes": {entity: rule_attributes(entity, traits) for entity in Entity},
        "settings": {
            "synchronized_segments": [ALL, *segments[Entity.USER]],
            "synchronized_account_segments": [ALL, *segments[Entity.ACCOUNT]],
            "synchronized_properties": [
                *outbound_attributes(traits[Entity.USER], audiences),
                *(f"account.{name}" for name in account_attributes),
            ],
            "synchronized_account_properties": account_attributes,
            "send_events": [ALL, *events],
        },
    }


PROPERTY_LISTS = {"synchronized_properties": Entity.USER, "synchronized_account_properties": Entity.ACCOUNT}
SUGGESTIONS = 3


def is_seen(name: str, entity: Entity, choices: set[str], traits: dict[Entity, list[str]]) -> bool:
    """Whether an entry's attribute names something seen: a choice of its list or an attribute rules read, or a
    path into a trait key seen, written as rules write it (`traits.address.city`) or by Hull's rule
    (`address/city`, `traits_plan`, `account.industry` for a user)."""
    if name in choices:
        return True
    if entity == Entity.USER and name.startswith("account."):
        entity, name = Entity.ACCOUNT, name.removeprefix("account.")
    path = name.removeprefix("traits.") if name.startswith("traits.") else name.removeprefix("traits_")
    return re.split(r"[/.]", path)[0] in traits[entity]


def _bare(name: str) -> str:
    """A name without the trait root, so `paln` is compared with `plan`, not with `traits.plan`."""
    return name.removeprefix("traits.")


def closest(name: str, choices: list[str]) -> list[str]:
    """The names seen most like `name` (a typo's likely intent), compared without the trait root and offered as
    the choices spell them: at most SUGGESTIONS, the best and those nearly as close, never one far off
    (difflib's ratio under 0.6)."""
    bare = _bare(name)
    scored = sorted(
        ((difflib.SequenceMatcher(None, bare, _bare(choice)).ratio(), choice) for choice in set(choices)),
        key=lambda pair: (-pair[0], pair[1]),
    )
    best = scored[0][0] if scored else 0
    return [choice for ratio, choice in scored[:SUGGESTIONS] if ratio >= max(0.6, best - 0.1)]


def unseen_attributes(settings: ConnectorSettings, known: dict[str, Any]) -> list[dict[str, str]]:
    """A warning for each entry of the attribute lists (a plain name or a mapping's `from`) that names nothing
    seen, with the closest names seen: `{"field", "message"}`, the field as the errors name it."""
    warnings = []
    for field, entity in PROPERTY_LISTS.items():
        choices = [*known["settings"][field], *known["attributes"][entity]]
        for index, entry in enumerate(getattr(settings, field)):
            name = source_of(entry)
            if is_seen(name, entity, set(choices), known["traits"]):
                continue
            close = closest(name, choices)
            hint = f"; did you mean {' or '.join(repr(choice) for choice in close)}?" if close else ""
            warnings.append(
                {
                    "field": f"{field}[{index}]" + (".from" if isinstance(entry, Mapping) else ""),
                    "message": f"{name!r} was never seen: no {entity.value} has sent it yet{hint}",
                }
            )
    return warnings


@requires_admin
async def get_names(request: Request) -> JSONResponse:
    """
    summary: The names the connector knows, for pickers (segments, attributes, events, audiences)
    description: >-
      `settings` maps each settings list that names something to its choices. Events, trait keys
      and audiences list every name the connector has seen (up to 1,000 each).
    responses:
      200: {description: "the names", schema: {$ref: "#/components/schemas/Names"}}
    """
    async with runtime_of(request).engine.connect() as conn:
        return JSONResponse(await known_names(conn))


routes = [Route("/api/names", get_names, methods=["GET"])]
