"""A fake Segment Public API on a real localhost socket: a workspace, its sources and destinations.

The shapes are those of Segment's published SDK (`@segment/public-api-sdk-typescript`, its api/ and model/
files), written out here by hand: a Bearer token; every answer `{"data": ...}`; every error
`{"errors": [{"type", "message"}]}`; lists need the query `pagination.count` (and take `pagination.cursor`)
and answer `pagination` with `current`, `next` (null on the last page), `previous` and `totalEntries`;
`POST /sources` answers 201 with `{"source": SourceV1}`, `POST /destinations` 200 with
`{"destination": DestinationV1}` (a Webhooks one's settings filled with the catalog's defaults),
`PATCH /destinations/{id}` likewise, `DELETE /destinations/{id}` `{"status": "SUCCESS"}`. A body missing a
required field, or a Webhooks destination whose settings are not
`{"hooks": [{"hook", "headers": [{"key", "value"}]}], "sharedSecret"?}`, gets 400 as Segment gives it.

It pages with PAGE_SIZE items whatever count is asked (Segment caps the count too), so every list is paged;
its catalogs hold distractors ("Webhooks (Actions)" before "Webhooks", "Javascript" before "HTTP API"). It
can be told to answer a status (401, 403, 404, 429, 5xx) for the next requests, optionally only those whose
"METHOD /path" starts with a prefix and after letting some through, or to stall. A 429 is Segment's as its
documentation (docs.segmentapis.com, Rate Limits) gives it: no Retry-After, but `X-RateLimit-Reset` (an RFC
5322 date) and the wait in the error's `data.msBeforeNext`; a Retry-After header only when told one.
"""

import asyncio
import base64
import email.utils
import itertools
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from tests.support.app import LiveServer, ServerThread, free_port, make_env

PAGE_SIZE = 2
OWNER_TOKEN = "sgp_owner-token-0123456789abcdef"
READ_ONLY_TOKEN = "sgp_read-only-token-0123456789"

DESTINATION_CATALOG = [
    {"id": "meta-amplitude", "name": "Amplitude", "slug": "amplitude"},
    {"id": "meta-webhooks-actions", "name": "Webhooks (Actions)", "slug": "actions-webhook"},
    {"id": "meta-google-analytics", "name": "Google Analytics 4", "slug": "google-analytics-4"},
    {"id": "meta-webhooks", "name": "Webhooks", "slug": "webhooks"},
    {"id": "meta-mixpanel", "name": "Mixpanel", "slug": "mixpanel"},
]
SOURCE_CATALOG = [
    {"id": "meta-javascript", "name": "Javascript", "slug": "javascript"},
    {"id": "meta-ios", "name": "iOS", "slug": "ios"},
    {"id": "meta-http-api", "name": "HTTP API", "slug": "http-api"},
]
WEBHOOKS_ID = "meta-webhooks"
# Segment answers a classic Webhooks destination's settings with every one of the catalog's, unset ones at their
# default (its catalog: globalHook, hooks, sharedSecret; destinations exported by terraform-provider-segment).
WEBHOOKS_DEFAULTS = {"globalHook": "", "hooks": [], "sharedSecret": ""}


def _error(status: int, kind: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"type": kind, "message": message}]}, status_code=status, headers=headers)


@dataclass
class Fault:
    status: int | None  # None: stall
    count: int
    prefix: str = ""
    retry_after: int | None = None
    stall_seconds: float = 0.0
    after: int = 0  # matching requests let through first
    ms_before_next: int = 1000  # a 429's wait, in its body as Segment gives it


def _throttled(fault: Fault) -> JSONResponse:
    """Segment's 429: the wait in `data.msBeforeNext`, the window's end in X-RateLimit-Reset."""
    reset = email.utils.formatdate(time.time() + fault.ms_before_next / 1000, usegmt=True)
    headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
    if fault.retry_after is not None:
        headers["Retry-After"] = str(fault.retry_after)
    data = {"remainingPoints": 0, "msBeforeNext": fault.ms_before_next, "consumedPoints": 60}
    body = {"errors": [{"type": "RequestError", "message": "Too many requests", "data": data}]}
    return JSONResponse(body, status_code=429, headers=headers)


class FakePublicApi(ServerThread):
    def __init__(self) -> None:
        self.tokens = {OWNER_TOKEN: "owner", READ_ONLY_TOKEN: "read"}
        self.workspace = {"id": "ws-1", "slug": "acme", "name": "Acme"}
        self.sources: dict[str, dict[str, Any]] = {}
        self.destinations: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []  # "METHOD /path", in order
        self.faults: list[Fault] = []
        self.mask_secrets = False  # answer a destination's sharedSecret masked, as Segment does for secret settings
        self._ids = itertools.count(1)
        for name, metadata_id in [
            ("Website", "meta-javascript"),
            ("Mobile app", "meta-ios"),
            ("Backend", "meta-http-api"),
        ]:
            self.add_source(name, metadata_id)
        routes = [
            Route("/", self._workspace, methods=["GET"]),
            Route("/catalog/destinations", self._destination_catalog, methods=["GET"]),
            Route("/catalog/sources", self._source_catalog, methods=["GET"]),
            Route("/sources", self._list_sources, methods=["GET"]),
            Route("/sources", self._create_source, methods=["POST"]),
            Route("/sources/{source_id}/connected-destinations", self._connected, methods=["GET"]),
            Route("/sources/{source_id}/writekey", self._create_write_key, methods=["POST"]),
            Route("/destinations", self._create_destination, methods=["POST"]),
            Route("/destinations/{destination_id}", self._update_destination, methods=["PATCH"]),
            Route("/destinations/{destination_id}", self._delete_destination, methods=["DELETE"]),
        ]
        super().__init__(Starlette(routes=routes), name="fake Public API")

    # --- control ------------------------------------------------------------

    def fail(
        self,
        status: int,
        count: int = 1,
        prefix: str = "",
        retry_after: int | None = None,
        after: int = 0,
        ms_before_next: int | None = None,
    ) -> None:
        """The next `count` matching requests answer `status`; a 429 asks to wait `ms_before_next` (default: the
        Retry-After when one is given, else a second)."""
        wait = ms_before_next if ms_before_next is not None else 1000 if retry_after is None else retry_after * 1000
        self.faults.append(Fault(status, count, prefix, retry_after, after=after, ms_before_next=wait))

    def stall(self, seconds: float, count: int = 1, prefix: str = "") -> None:
        self.faults.append(Fault(None, count, prefix, stall_seconds=seconds))

    def add_source(
        self,
        name: str,
        metadata_id: str = "meta-javascript",
        slug: str | None = None,
        write_key: str | None = None,
        keyless: bool = False,
    ) -> dict[str, Any]:
        """A source of the workspace; `keyless`: one whose write keys were all removed in Segment."""
        source_id = f"src-{next(self._ids)}"
        metadata = next(item for item in SOURCE_CATALOG if item["id"] == metadata_id)
        self.sources[source_id] = {
            "id": source_id,
            "slug": slug or name.lower().replace(" ", "-"),
            "name": name,
            "metadata": {**metadata, "description": "", "logos": {}, "options": [], "categories": []},
            "workspaceId": self.workspace["id"],
            "enabled": True,
            "writeKeys": [] if keyless else [write_key or secrets.token_hex(12)],
            "labels": [],
        }
        return self.sources[source_id]

    def on_source(self, source_id: str) -> list[dict[str, Any]]:
        return [d for d in self.destinations.values() if d["sourceId"] == source_id]

    def writes(self) -> list[str]:
        return [call for call in self.calls if not call.startswith("GET")]

    # --- the wire -----------------------------------------------------------

    async def _guard(self, request: Request, write: bool = False) -> JSONResponse | None:
        """Authenticate, record, and play the next matching fault."""
        call = f"{request.method} {request.url.path}"
        self.calls.append(call)
        fault = next((f for f in self.faults if call.startswith(f.prefix)), None)
        if fault is not None and fault.after > 0:
            fault.after -= 1
        elif fault is not None:
            fault.count -= 1
            if fault.count <= 0:
                self.faults.remove(fault)
            if fault.status is None:
                await asyncio.sleep(fault.stall_seconds)
            elif fault.status == 429:
                return _throttled(fault)
            else:
                headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
                return _error(fault.status, "injected", f"injected {fault.status}", headers)
        authorization = request.headers.get("authorization", "")
        scope = self.tokens.get(authorization.removeprefix("Bearer ")) if authorization.startswith("Bearer ") else None
        if scope is None:
            return _error(401, "unauthorized", "The provided token is invalid")
        if write and scope != "owner":
            return _error(403, "forbidden", "The token does not have the required scope")
        return None

    def _page(self, request: Request, key: str, items: list[dict[str, Any]]) -> JSONResponse:
        count, cursor = request.query_params.get("pagination.count"), request.query_params.get("pagination.cursor")
        if count is None or not count.isdigit() or not 1 <= int(count) <= 200:
            return _error(400, "validation", "pagination.count is required: an integer from 1 to 200")
        try:
            start = int(base64.urlsafe_b64decode(cursor).decode()) if cursor else 0
        except ValueError:
            return _error(400, "validation", "pagination.cursor is not a cursor this API gave")
        end = start + min(int(count), PAGE_SIZE)
        following = base64.urlsafe_b64encode(str(end).encode()).decode() if end < len(items) else None
        previous = base64.urlsafe_b64encode(str(max(0, start - PAGE_SIZE)).encode()).decode() if start else None
        pagination = {"current": cursor or "MA==", "next": following, "previous": previous, "totalEntries": len(items)}
        return JSONResponse({"data": {key: items[start:end], "pagination": pagination}})

    async def _workspace(self, request: Request) -> JSONResponse:
        return await self._guard(request) or JSONResponse({"data": {"workspace": self.workspace}})

    async def _destination_catalog(self, request: Request) -> JSONResponse:
        return await self._guard(request) or self._page(request, "destinationsCatalog", DESTINATION_CATALOG)

    async def _source_catalog(self, request: Request) -> JSONResponse:
        return await self._guard(request) or self._page(request, "sourcesCatalog", SOURCE_CATALOG)

    async def _list_sources(self, request: Request) -> JSONResponse:
        return await self._guard(request) or self._page(request, "sources", list(self.sources.values()))

    async def _connected(self, request: Request) -> JSONResponse:
        refused = await self._guard(request)
        if refused:
            return refused
        source_id = request.path_params["source_id"]
        if source_id not in self.sources:
            return _error(404, "not-found", f"source {source_id} not found")
        return self._page(request, "destinations", [self._shown(d) for d in self.on_source(source_id)])

    def _shown(self, destination: dict[str, Any]) -> dict[str, Any]:
        secret = destination["settings"].get("sharedSecret")
        if not (self.mask_secrets and secret):
            return destination
        return {**destination, "settings": {**destination["settings"], "sharedSecret": "•" * 10 + secret[-4:]}}

    async def _create_source(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, write=True)
        if refused:
            return refused
        body = await request.json()
        if not isinstance(body.get("slug"), str) or not isinstance(body.get("enabled"), bool):
            return _error(400, "validation", "slug (string) and enabled (boolean) are required")
        if body.get("metadataId") not in {item["id"] for item in SOURCE_CATALOG}:
            return _error(400, "validation", "metadataId is not a source in the catalog")
        if any(source["slug"] == body["slug"] for source in self.sources.values()):
            return _error(400, "validation", f"a source with the slug {body['slug']} exists")
        source = self.add_source(body["slug"], body["metadataId"], slug=body["slug"])
        source["enabled"] = body["enabled"]
        return JSONResponse({"data": {"source": source}}, status_code=201)

    async def _create_write_key(self, request: Request) -> JSONResponse:
        """Segment's createWriteKeyForSource: a new key added to the source, which is answered whole."""
        refused = await self._guard(request, write=True)
        if refused:
            return refused
        source = self.sources.get(request.path_params["source_id"])
        if source is None:
            return _error(404, "not-found", f"source {request.path_params['source_id']} not found")
        source["writeKeys"].append(secrets.token_hex(12))
        return JSONResponse({"data": {"source": source}})

    async def _create_destination(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, write=True)
        if refused:
            return refused
        body = await request.json()
        if body.get("sourceId") not in self.sources:
            return _error(404, "not-found", "sourceId names no source")
        metadata = next((item for item in DESTINATION_CATALOG if item["id"] == body.get("metadataId")), None)
        problem = "metadataId is not a destination in the catalog" if metadata is None else _settings_problem(body)
        if problem:
            return _error(400, "validation", problem)
        assert metadata is not None
        destination_id = f"dst-{next(self._ids)}"
        self.destinations[destination_id] = {
            "id": destination_id,
            "name": body.get("name"),
            "enabled": bool(body.get("enabled", False)),
            "metadata": {**metadata, "description": "", "logos": {}, "options": []},
            "sourceId": body["sourceId"],
            "settings": {**WEBHOOKS_DEFAULTS, **body["settings"]}
            if metadata["id"] == WEBHOOKS_ID
            else body["settings"],
        }
        return JSONResponse({"data": {"destination": self.destinations[destination_id]}})

    async def _update_destination(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, write=True)
        if refused:
            return refused
        destination = self.destinations.get(request.path_params["destination_id"])
        if destination is None:
            return _error(404, "not-found", "destination not found")
        body = await request.json()
        if "settings" in body and (problem := _settings_problem({**destination, **body})):
            return _error(400, "validation", problem)
        if "enabled" in body and not isinstance(body["enabled"], bool):
            return _error(400, "validation", "enabled must be a boolean")
        destination.update({key: body[key] for key in ("name", "enabled") if key in body})
        destination["settings"] = {**destination["settings"], **body.get("settings", {})}
        return JSONResponse({"data": {"destination": destination}})

    async def _delete_destination(self, request: Request) -> JSONResponse:
        refused = await self._guard(request, write=True)
        if refused:
            return refused
        if self.destinations.pop(request.path_params["destination_id"], None) is None:
            return _error(404, "not-found", "destination not found")
        return JSONResponse({"data": {"status": "SUCCESS"}})


def _settings_problem(body: dict[str, Any]) -> str | None:
    """What is wrong with a destination's settings: an object; for Webhooks, the hooks' shape."""
    settings = body.get("settings")
    if not isinstance(settings, dict):
        return "settings must be an object"
    if (body.get("metadataId") or (body.get("metadata") or {}).get("id")) != WEBHOOKS_ID:
        return None
    hooks = settings.get("hooks", [])
    if not isinstance(hooks, list) or not all(_hook_shaped(hook) for hook in hooks):
        return 'settings.hooks must be a list of {"hook": "https://...", "headers": [{"key", "value"}]}'
    if "sharedSecret" in settings and not isinstance(settings["sharedSecret"], str):
        return "settings.sharedSecret must be a string"
    return None


def _hook_shaped(hook: Any) -> bool:
    if not isinstance(hook, dict) or not str(hook.get("hook", "")).startswith(("http://", "https://")):
        return False
    headers = hook.get("headers", [])
    return isinstance(headers, list) and all(
        isinstance(h, dict) and isinstance(h.get("key"), str) and isinstance(h.get("value"), str) for h in headers
    )


@pytest.fixture
def public_api() -> Iterator[FakePublicApi]:
    with FakePublicApi() as fake:
        yield fake


@pytest.fixture
def own_url_server(database_url: str, public_api: FakePublicApi) -> Iterator[LiveServer]:
    """A live connector (its worker embedded) whose PUBLIC_URL is its own address, on the fake Public API:
    the Webhooks destinations connect puts in the fake point back at it."""
    port = free_port()
    env = make_env(
        database_url,
        public_url=f"http://127.0.0.1:{port}",
        segment_public_api_url=public_api.url,
        run_worker_in_web=True,
    )
    with LiveServer(env, port=port) as server:
        yield server
