"""Segments in the admin API (bearer ADMIN_TOKEN). Each docstring is its OpenAPI entry."""

from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.core.kinds import Entity, Transition
from connector.core.models import Segment, SegmentMembership, SegmentTransition, utcnow
from connector.core.settings_store import validation_errors
from connector.core.spec import format_timestamp, has_nul
from connector.segments.compile import Compiler
from connector.segments.rules import RuleError, is_time_based, validate
from connector.service import use_cases
from connector.web import profiles
from connector.web.auth import requires_admin
from connector.web.deps import ApiError, json_body, runtime_of

segments = Segment.__table__
memberships = SegmentMembership.__table__
transitions = SegmentTransition.__table__
MAX_SEGMENT_BODY = 64 * 1024
MAX_NAME = 200
RECENT = timedelta(hours=24)
SAMPLE = 10


class Invalid(ValueError):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field, self.message = field, message


def _invalid(problem: Invalid | RuleError) -> ApiError:
    field = problem.path if isinstance(problem, RuleError) else problem.field
    return ApiError(
        400,
        f"invalid segment: {field}: {problem.message}",
        field=field,
        errors=[{"field": field, "message": problem.message}],
    )


async def _document(request: Request) -> dict[str, Any]:
    document = await json_body(request, MAX_SEGMENT_BODY)
    if not isinstance(document, dict):
        raise Invalid("body", "must be a JSON object with name, entity and rule")
    unknown = set(document) - {"name", "entity", "rule"}
    if unknown:
        raise Invalid(sorted(unknown)[0], "unknown field; expected name, entity, rule")
    return document


def _check(document: dict[str, Any], current: Any = None) -> dict[str, Any]:
    """The values to store: a full segment when creating, the changed fields when updating."""
    values: dict[str, Any] = {}
    if has_nul(document.get("name")):
        raise Invalid("name", "contains a NUL character (\\u0000), which cannot be stored")
    if "name" in document or current is None:
        name = document.get("name")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_NAME:
            raise Invalid("name", f"must be a non-empty string of at most {MAX_NAME} characters")
        values["name"] = name.strip()
    entity = _entity(document, current.entity if current is not None else Entity.USER)
    if current is not None and entity != current.entity:
        raise Invalid("entity", "cannot change; create a new segment instead")
    values["entity"] = entity
    if "rule" in document or current is None:
        values["rule"] = _rule(document, entity)
    return values


def _entity(document: dict[str, Any], default: str) -> Entity:
    entity = document.get("entity", default)
    if entity not in tuple(Entity):
        raise Invalid("entity", f"must be one of {', '.join(Entity)}")
    return Entity(entity)


def _rule(document: dict[str, Any], entity: Entity) -> Any:
    """The document's rule, valid for the entity (RuleError names the bad part)."""
    if "rule" not in document:
        raise Invalid("rule", "is required")
    if has_nul(document["rule"]):
        raise Invalid("rule", "contains a NUL character (\\u0000), which cannot be stored")
    validate(document["rule"], entity)
    return document["rule"]


def _summary(row: Any, member_count: int, recent: dict[str, int] | None = None) -> dict[str, Any]:
    """A segment as the list shows it; `recent`: its entered and exited transitions of the last 24 hours."""
    return {
        "id": row.id,
        "name": row.name,
        "entity": row.entity,
        "rule": row.rule,
        "member_count": member_count,
        "entered_24h": (recent or {}).get(Transition.ENTERED, 0),
        "exited_24h": (recent or {}).get(Transition.EXITED, 0),
        "time_based": is_time_based(row.rule),
        "computed_at": format_timestamp(row.computed_at) if row.computed_at else None,
    }


async def _serialise(conn: AsyncConnection, row: Any) -> dict[str, Any]:
    count = (await conn.execute(sa.select(sa.func.count()).where(memberships.c.segment_id == row.id))).scalar_one()
    return {
        **_summary(row, count),
        "created_at": format_timestamp(row.created_at),
        "updated_at": format_timestamp(row.updated_at),
    }


async def _load(conn: AsyncConnection, segment_id: int) -> Any:
    return (await conn.execute(sa.select(segments).where(segments.c.id == segment_id))).first()


def _name_conflict(name: str) -> ApiError:
    return ApiError(409, f"a segment named {name!r} exists", field="name")


async def _name_taken(conn: AsyncConnection, name: str, other_than: int | None = None) -> bool:
    query = sa.select(segments.c.id).where(segments.c.name == name)
    if other_than is not None:
        query = query.where(segments.c.id != other_than)
    return (await conn.scalar(query)) is not None


@requires_admin
async def list_segments(request: Request) -> JSONResponse:
    """
    summary: Every segment, with its rule, member_count, and the members that entered and exited it in the last
      24 hours (entered_24h, exited_24h)
    responses:
      200: {description: "segments", schema: {$ref: "#/components/schemas/Segments"}}
    """
    async with runtime_of(request).engine.connect() as conn:
        counts: dict[int, int] = dict(
            (
                await conn.execute(
                    sa.select(memberships.c.segment_id, sa.func.count()).group_by(memberships.c.segment_id)
                )
            ).all()
        )
        recent: dict[int, dict[str, int]] = {}
        for segment_id, transition, count in await conn.execute(
            sa.select(transitions.c.segment_id, transitions.c.transition, sa.func.count())
            .where(transitions.c.at >= utcnow() - RECENT)
            .group_by(transitions.c.segment_id, transitions.c.transition)
        ):
            recent.setdefault(segment_id, {})[transition] = count
        rows = list(await conn.execute(sa.select(segments).order_by(segments.c.name)))
    return JSONResponse({"segments": [_summary(row, counts.get(row.id, 0), recent.get(row.id)) for row in rows]})


@requires_admin
async def preview_segment(request: Request) -> JSONResponse:
    """
    summary: How many users (or accounts) a rule matches now, and a sample of them, without saving anything
    description: >-
      The rule is compiled to SQL as a segment's full recompute compiles it, so a segment created with this
      rule right after starts with `count` members.
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [rule]
            properties:
              entity: {type: string, enum: [user, account]}
              rule: {type: object}
    responses:
      200: {description: "count and sample (up to 10, by id)", schema: {$ref: "#/components/schemas/Preview"}}
      400: {description: "invalid rule; `field` names the bad part"}
    """
    try:
        document = await _document(request)
        entity = _entity(document, Entity.USER)
        rule = _rule(document, entity)
    except (Invalid, RuleError) as problem:
        raise _invalid(problem) from None
    async with runtime_of(request).engine.connect() as conn:
        matching = Compiler(conn.dialect.name, entity, utcnow()).select_ids(rule).subquery()
        count = (await conn.execute(sa.select(sa.func.count()).select_from(matching))).scalar_one()
        ids = list(await conn.scalars(sa.select(matching.c.id).order_by(matching.c.id).limit(SAMPLE)))
        summaries = profiles.user_summaries if entity == Entity.USER else profiles.account_summaries
        return JSONResponse({"entity": entity, "count": count, "sample": await summaries(conn, ids)})


@requires_admin
async def create_segment(request: Request) -> JSONResponse:
    """
    summary: Create a segment and compute its initial members (their transitions are marked initial)
    requestBody:
      content:
        application/json:
          schema:
            type: object
            required: [name, rule]
            properties:
              name: {type: string}
              entity: {type: string, enum: [user, account]}
              rule: {type: object, description: "all / any / not groups of attribute and event conditions"}
    responses:
      201: {description: "the segment, with member_count", schema: {$ref: "#/components/schemas/Segment"}}
      400: {description: "invalid segment; `field` names the bad part, e.g. rule.all[1].any[0].op"}
      409: {description: "a segment with this name exists"}
    """
    try:
        values = _check(await _document(request))
    except (Invalid, RuleError) as problem:
        raise _invalid(problem) from None
    engine = runtime_of(request).engine
    async with engine.connect() as conn:
        if await _name_taken(conn, values["name"]):
            raise _name_conflict(values["name"])
    try:
        segment_id = await use_cases.create_segment(engine, values)
    except IntegrityError:
        raise _name_conflict(values["name"]) from None
    async with engine.connect() as conn:
        return JSONResponse(await _serialise(conn, await _load(conn, segment_id)), status_code=201)


@requires_admin
async def get_segment(request: Request) -> JSONResponse:
    """
    summary: One segment, with member_count
    responses:
      200: {description: "the segment", schema: {$ref: "#/components/schemas/Segment"}}
      404: {description: "no such segment"}
    """
    async with runtime_of(request).engine.connect() as conn:
        row = await _load(conn, request.path_params["segment_id"])
        if not row:
            raise ApiError(404, "no such segment")
        return JSONResponse(await _serialise(conn, row))


@requires_admin
async def update_segment(request: Request) -> JSONResponse:
    """
    summary: Rename a segment or change its rule (partial document); a changed rule recomputes every member;
      a rename also renames the segment in every setting that names it (synchronized_segments,
      synchronized_account_segments, segment_events), whatever else the same save changes
    requestBody:
      content:
        application/json:
          schema:
            type: object
            properties:
              name: {type: string}
              rule: {type: object}
    responses:
      200: {description: "the segment, with member_count", schema: {$ref: "#/components/schemas/Segment"}}
      400: {description: "invalid segment; `field` names the bad part"}
      404: {description: "no such segment"}
      409: {description: "another segment has this name, or the settings cannot follow the new name"}
    """
    segment_id = request.path_params["segment_id"]
    runtime = runtime_of(request)
    try:
        document = await _document(request)
        async with runtime.engine.connect() as conn:
            current = await _load(conn, segment_id)
            if current is None:
                raise ApiError(404, "no such segment")
            values = _check(document, current)
            if "name" in values and await _name_taken(conn, values["name"], segment_id):
                raise _name_conflict(values["name"])
    except (Invalid, RuleError) as problem:
        raise _invalid(problem) from None
    try:
        if not await use_cases.change_segment(runtime.engine, runtime.settings, segment_id, values):
            raise ApiError(404, "no such segment")
    except IntegrityError:
        raise ApiError(409, "another segment has this name", field="name") from None
    except ValidationError as problem:
        errors = validation_errors(problem)
        raise ApiError(409, f"the settings cannot follow the new name: {errors[0]['message']}", errors=errors) from None
    async with runtime.engine.connect() as conn:
        return JSONResponse(await _serialise(conn, await _load(conn, segment_id)))


@requires_admin
async def delete_segment(request: Request) -> Response:
    """
    summary: Delete a segment; its members exit it (Segment hears `false`, and Segment Exited and the
      segment_events `removed` as the settings said before), and it is taken out of every setting that names it
    responses:
      204: {description: "deleted"}
      404: {description: "no such segment"}
    """
    runtime = runtime_of(request)
    if not await use_cases.delete_segment(runtime.engine, runtime.settings, request.path_params["segment_id"]):
        raise ApiError(404, "no such segment")
    return Response(status_code=204)


routes = [
    Route("/api/segments", list_segments, methods=["GET"]),
    Route("/api/segments", create_segment, methods=["POST"]),
    Route("/api/segments/preview", preview_segment, methods=["POST"]),
    Route("/api/segments/{segment_id:id}", get_segment, methods=["GET"]),
    Route("/api/segments/{segment_id:id}", update_segment, methods=["PUT"]),
    Route("/api/segments/{segment_id:id}", delete_segment, methods=["DELETE"]),
]
