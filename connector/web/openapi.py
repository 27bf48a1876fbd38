"""The admin API's OpenAPI document: the routes' docstrings, completed with what every route shares.

Each route's docstring gives its summary, parameters and responses; a 2xx response names its
body with `$ref: '#/components/schemas/<Name>'` from SCHEMAS below. What the docstrings leave
out is added here, the same way for every route: each `{name}` of a path is declared with the
type its convertor takes (and the route may answer 404), every 4xx/5xx is the one error shape
(`{"message", ...}`), and an admin route may always answer 401. tests/test_api_schema.py holds the API to this document.
"""

from typing import Any

from starlette.convertors import FloatConvertor, IntegerConvertor
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Route
from starlette.schemas import SchemaGenerator

from connector import __version__
from connector.core.kinds import Entity
from connector.profile.persona import DEPARTMENTS, SENIORITIES
from connector.profile.usage import PATTERNS
from connector.web.auth import requires_admin
from connector.web.paths import MAX_ID_DIGITS, IdConvertor

PATH_PARAMETER_TYPES = {
    IntegerConvertor: {"type": "integer"},
    FloatConvertor: {"type": "number"},
    IdConvertor: {"type": "integer", "minimum": 0, "maximum": 10**MAX_ID_DIGITS - 1},
}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    """An object with these properties (the required ones always present); others may be added later."""
    return {"type": "object", "required": list(required), "properties": {**required, **(optional or {})}}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


TEXT = {"type": "string"}
TIME = {"type": "string", "format": "date-time"}
MAYBE_TIME = {"type": "string", "format": "date-time", "nullable": True}
ID = {"type": "integer"}
COUNT = {"type": "integer", "minimum": 0}
ANY_OBJECT = {"type": "object", "additionalProperties": True}
TEXTS = {"type": "array", "items": TEXT}
MAYBE_TEXT = {"type": "string", "nullable": True}
COUNTS = {"type": "array", "items": COUNT}
TIMES_BY_NAME = {"type": "object", "additionalProperties": TIME, "description": "when each was set"}
MEMBERSHIPS = {
    "type": "array",
    "items": _object({"id": ID, "name": TEXT, "entered_at": TIME}),
    "description": "the segments it is in, with when it entered each",
}

SCHEMAS: dict[str, dict[str, Any]] = {
    "Error": _object({"message": TEXT}, {"field": TEXT, "errors": {"type": "array", "items": ANY_OBJECT}}),
    "Settings": _object(
        {"version": COUNT, "settings": ANY_OBJECT},
        {
            "warnings": {
                "type": "array",
                "items": _object({"field": TEXT, "message": TEXT}),
                "description": "a saved change's entries that name an attribute never seen",
            },
            "queued": _object({"users": COUNT, "accounts": COUNT}),  # a save's answer: what its first sync queued
        },
    ),
    "Sync": _object(
        {
            "sync": {
                **_object(
                    {
                        "id": ID,
                        "trigger": {"type": "string", "enum": ["settings", "resync"]},
                        "segments": {"type": "array", "items": TEXT},
                        "started_at": TIME,
                        "queued": _object({"users": COUNT, "accounts": COUNT}),
                        "sent": COUNT,
                        "skipped": COUNT,
                        "failed": COUNT,
                        "waiting": COUNT,
                    }
                ),
                "nullable": True,
            }
        }
    ),
    "ApiKey": _object({"api_key": TEXT}),
    "WriteKey": _object(
        {
            "id": ID,
            "name": TEXT,
            "key": {"type": "string", "description": "in full when created; masked (hwk_…abcd) in the list"},
            "allowed_origins": TEXTS,
            "created_at": TIME,
        }
    ),
    "WriteKeys": _object({"write_keys": {"type": "array", "items": _ref("WriteKey")}}),
    "Event": _object(
        {
            "id": ID,
            "message_id": TEXT,
            "type": TEXT,
            "event": {"type": "string", "nullable": True},
            "source": TEXT,
            "timestamp": TIME,
            "received_at": TIME,
            "properties": ANY_OBJECT,
            "context": ANY_OBJECT,
        }
    ),
    "Events": _object({"events": {"type": "array", "items": _ref("Event")}}),
    "Account": _object(
        {
            "id": ID,
            "group_id": {"type": "string", "nullable": True},
            "domain": {"type": "string", "nullable": True},
            "traits": ANY_OBJECT,
            "icp": _object(
                {
                    "score": {"type": "integer", "nullable": True},
                    "fit": {"type": "string", "enum": ["good", "medium", "poor", None], "nullable": True},
                }
            ),
            "usage": _ref("UsageAttributes"),
            "created_at": TIME,
            "updated_at": TIME,
            "segments": TEXTS,
        },
        {"trait_timestamps": TIMES_BY_NAME, "memberships": MEMBERSHIPS},
    ),
    "User": _object(
        {
            "id": ID,
            "user_id": {"type": "string", "nullable": True},
            "identifiers": _object({"user_id": TEXTS, "anonymous_id": TEXTS, "email": TEXTS}),
            "traits": ANY_OBJECT,
            "persona": _object(
                {
                    "seniority": {"type": "string", "enum": [*SENIORITIES, None], "nullable": True},
                    "department": {"type": "string", "enum": [*DEPARTMENTS, None], "nullable": True},
                }
            ),
            "usage": _ref("UsageAttributes"),
            "audiences": {"type": "object", "additionalProperties": {"type": "boolean"}},
            "account": {**_ref("Account"), "nullable": True},
            "segments": TEXTS,
            "created_at": TIME,
            "updated_at": TIME,
            "last_seen_at": MAYBE_TIME,
            "recent_events": {"type": "array", "items": _ref("Event")},
        },
        {
            "account_link": {"type": "string", "nullable": True},
            "trait_timestamps": TIMES_BY_NAME,
            "memberships": MEMBERSHIPS,
        },
    ),
    "Segment": _object(
        {
            "id": ID,
            "name": TEXT,
            "entity": {"type": "string", "enum": [*Entity]},
            "rule": {},
            "member_count": {"type": "integer", "minimum": 0, "nullable": True},
            "time_based": {"type": "boolean"},
            "computed_at": MAYBE_TIME,
        },
        {"created_at": TIME, "updated_at": TIME, "entered_24h": COUNT, "exited_24h": COUNT},
    ),
    "Segments": _object({"segments": {"type": "array", "items": _ref("Segment")}}),
    "DeadLetters": _object(
        {
            "waiting": COUNT,
            "dead_letters": {
                "type": "array",
                "items": _object(
                    {
                        "id": ID,
                        "message": ANY_OBJECT,
                        "reason": TEXT,
                        "status_code": {"type": "integer", "nullable": True},
                        "created_at": TIME,
                        "replayed_at": MAYBE_TIME,
                    }
                ),
            },
        }
    ),
    "Replayed": _object({"replayed": COUNT, "failed": COUNT}),
    "WorkspaceConnected": _object(
        {
            "workspace": ANY_OBJECT,
            "region": {"type": "string", "enum": ["us", "eu"]},
            "token": {**TEXT, "description": "masked: its last 4 characters"},
            "source": {**ANY_OBJECT, "description": "the HTTP API source the connector sends back through"},
            "destinations": {
                "type": "array",
                "items": _object(
                    {"source_id": TEXT, "destination_id": TEXT, "action": TEXT, "adopted": {"type": "boolean"}}
                ),
                "description": "the Webhooks destination on each source: created, updated or unchanged; adopted: "
                "one set up by hand that already pointed here (its other hooks are kept)",
            },
            "done": {"type": "array", "items": ANY_OBJECT, "description": "every change made in Segment"},
            "settings_changed": TEXTS,
        }
    ),
    "WorkspaceStatus": _object(
        {"connected": {"type": "boolean"}, "round_trip": ANY_OBJECT},
        {
            "workspace": ANY_OBJECT,
            "region": TEXT,
            "token": TEXT,
            "source_ids": TEXTS,
            "source": ANY_OBJECT,
            "destinations": {
                "type": "array",
                "items": _object(
                    {"source_id": TEXT, "destination_id": TEXT},
                    {"matches": {"type": "boolean"}, "problems": TEXTS, "adopted": {"type": "boolean"}},
                ),
                "description": "`matches` and `problems` once re-read from Segment (absent with `error`)",
            },
            "matches": {"type": "boolean"},
            "error": {**TEXT, "description": "Segment could not be read: the rest is what the last connect saved"},
        },
    ),
    "WorkspaceDisconnected": _object(
        {
            "deleted": {"type": "array", "items": ANY_OBJECT},
            "unhooked": {
                "type": "array",
                "items": ANY_OBJECT,
                "description": "adopted destinations holding other hooks: only the connector's hook was removed",
            },
            "kept": {**ANY_OBJECT, "nullable": True},
        }
    ),
    "WorkspaceSources": _object(
        {"sources": {"type": "array", "items": ANY_OBJECT}, "next": {**TEXT, "nullable": True}}
    ),
    "RoundTrip": _object(
        {
            "outcome": {"type": "string", "enum": ["works", "refused", "lost", "waiting", None], "nullable": True},
            "message": TEXT,
        },
        {"seconds": {"type": "number"}, "sent_at": TIME},
    ),
    "UsageAttributes": _object(
        {
            "top_features": TEXTS,
            "events_30d": {"type": "integer"},
            "score_30d": {"type": "integer"},
            "trend": {"type": "array", "items": COUNT},
            "last_feature_at": MAYBE_TIME,
            "pattern": {"type": "string", "enum": [*PATTERNS, None], "nullable": True},
        }
    ),
    "Usage": _object(
        {
            "entity": {"type": "string", "enum": [*Entity]},
            "id": ID,
            "attributes": ANY_OBJECT,
            "totals": ANY_OBJECT,
            "features": {"type": "array", "items": ANY_OBJECT},
            "trend": {
                "type": "array",
                "items": _object(
                    {"week": {"type": "string", "format": "date"}, "count": COUNT, "score": {"type": "number"}}
                ),
            },
        }
    ),
    "Activity": _object(
        {
            "activity": {
                "type": "array",
                "items": _object(
                    {
                        "id": ID,
                        "action": {
                            **TEXT,
                            "description": "incoming.user.success, segment.entered, outgoing.user.skip, ...",
                        },
                        "message_id": {"type": "string", "nullable": True, "description": "the message it concerns"},
                        "details": {**ANY_OBJECT, "description": "what changed or was sent, or the reason"},
                        "created_at": TIME,
                    }
                ),
            }
        }
    ),
    "Outgoing": _object(
        {
            "messages": {"type": "array", "items": ANY_OBJECT, "description": "identify, then group, as sent"},
            "not_sent": {**TEXTS, "description": "why: not in the filter, unchanged, no write_key, ..."},
        },
        {"last_sent": {"type": "array", "items": ANY_OBJECT, "description": "activity entries: last identify, group"}},
    ),
    "Overview": _object(
        {
            "start": TIME,
            "step_seconds": COUNT,
            "buckets": COUNT,
            "incoming": {"type": "object", "additionalProperties": COUNTS, "description": "<type>.<status>"},
            "outgoing": _object({name: COUNTS for name in ("sent", "skipped", "retried", "dead_lettered")}),
            "write_keys": {
                "type": "array",
                "items": _object({"id": ID, "name": TEXT, "revoked": {"type": "boolean"}, "messages": COUNT}),
                "description": "messages each browser write key sent in the 24 hours",
            },
            "last_errors": {
                "type": "array",
                "items": _object(
                    {
                        "at": TIME,
                        "kind": TEXT,
                        "entity": MAYBE_TEXT,
                        "entity_id": {"type": "integer", "nullable": True},
                        "message_id": MAYBE_TEXT,
                        "status_code": {"type": "integer", "nullable": True},
                        "reason": TEXT,
                        "name": {**MAYBE_TEXT, "description": "userId, else email (a user); group id, else domain"},
                    }
                ),
            },
        }
    ),
    "Names": _object(
        {
            "segments": _object(dict.fromkeys(Entity, TEXTS)),
            "events": TEXTS,
            "audiences": TEXTS,
            "traits": _object(dict.fromkeys(Entity, TEXTS)),
            "attributes": _object(dict.fromkeys(Entity, TEXTS)),
            "settings": {"type": "object", "additionalProperties": TEXTS, "description": "setting -> its choices"},
        }
    ),
    "UserMatches": _object(
        {
            "users": {
                "type": "array",
                "items": _object(
                    {
                        "id": ID,
                        "user_id": MAYBE_TEXT,
                        "anonymous_id": MAYBE_TEXT,
                        "email": MAYBE_TEXT,
                        "last_seen_at": MAYBE_TIME,
                    }
                ),
            }
        }
    ),
    "AccountMatches": _object(
        {
            "accounts": {
                "type": "array",
                "items": _object({"id": ID, "group_id": MAYBE_TEXT, "domain": MAYBE_TEXT, "name": {}}),
            }
        }
    ),
    "Preview": _object(
        {
            "entity": {"type": "string", "enum": [*Entity]},
            "count": COUNT,
            "sample": {"type": "array", "items": ANY_OBJECT, "description": "as in UserMatches or AccountMatches"},
        }
    ),
    "Audiences": _object({"id": ID, "audiences": ANY_OBJECT}),
    "Erasure": _object({"id": ID, "erased": {"type": "object", "additionalProperties": COUNT}, "suppressed": COUNT}),
    "Suppressions": _object(
        {
            "total": COUNT,
            "suppressions": {
                "type": "array",
                "items": _object(
                    {
                        "kind": {"type": "string", "enum": ["user_id", "anonymous_id", "email"]},
                        "hash": {"type": "string", "description": "SHA-256 (hex) of the identifier"},
                        "created_at": TIME,
                    }
                ),
            },
        }
    ),
    "Status": _object(
        {
            "status": {"type": "string", "enum": ["ok", "warning", "error"]},
            "messages": {
                "type": "array",
                "items": _object(
                    {"severity": {"type": "string", "enum": ["warning", "error"]}, "code": TEXT, "message": TEXT},
                    {"link": {"type": "string", "description": "the dashboard page that fixes it (#/settings)"}},
                ),
            },
            "version": TEXT,
            "database": TEXT,
        },
        {
            "public_url": {
                "type": "string",
                "nullable": True,
                "description": "PUBLIC_URL: where Segment and websites reach the connector (null: not set)",
            }
        },
    ),
}

generator = SchemaGenerator(
    {
        "openapi": "3.0.3",
        "info": {"title": "Segment connector admin API", "version": __version__},
        "components": {"securitySchemes": {"admin": {"type": "http", "scheme": "bearer"}}, "schemas": SCHEMAS},
        "security": [{"admin": []}],
    }
)


def build_document(routes: list[BaseRoute]) -> dict[str, Any]:
    document = generator.get_schema(routes=routes)
    by_path = {route.path_format: route for route in routes if isinstance(route, Route)}
    for path, operations in document.get("paths", {}).items():
        for operation in operations.values():
            _declare_path_parameters(operation, by_path[path])
            _complete_responses(operation, by_path[path])
    return document


def _declare_path_parameters(operation: dict[str, Any], route: Route) -> None:
    """OpenAPI requires every {name} in a path to be declared; starlette leaves that to each docstring."""
    parameters = operation.setdefault("parameters", []) if route.param_convertors else []
    declared = {p["name"] for p in parameters if p.get("in") == "path"}
    parameters.extend(
        {
            "name": name,
            "in": "path",
            "required": True,
            "schema": PATH_PARAMETER_TYPES.get(type(convertor), {"type": "string"}),
        }
        for name, convertor in route.param_convertors.items()
        if name not in declared
    )


def _complete_responses(operation: dict[str, Any], route: Route) -> None:
    responses = operation.setdefault("responses", {})
    responses.setdefault(401, {"description": "no admin token, or a wrong one"})
    if route.param_convertors:  # an id no row has, or past 64 bits (paths.IdConvertor)
        responses.setdefault(404, {"description": "no such resource"})
    for status, response in responses.items():
        if int(status) >= 400:
            response.setdefault("content", {"application/json": {"schema": _ref("Error")}})
        elif "schema" in response:  # a docstring's shorthand for a JSON body
            response["content"] = {"application/json": {"schema": response.pop("schema")}}


@requires_admin
async def openapi_document(request: Request) -> JSONResponse:
    return JSONResponse(build_document([r for r in request.app.routes if r.path.startswith("/api")]))
