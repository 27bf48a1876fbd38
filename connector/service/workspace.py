"""Segment workspace setup through the Public API: connect, status, disconnect (Hull's "Enable with Segment").

Connect makes the workspace deliver to this connector and take what it sends back:
- each chosen source, and the source the connector sends back through (so the round-trip test can come back:
  the connector's own calls carry `integrations: {<integration_name>: false}`, which stops Segment from
  delivering them there), has exactly one Webhooks destination pointing at `<PUBLIC_URL>/segment` with the
  connector's key (and shared secret), enabled: created, or the one already there adopted and patched;
- one HTTP API source, slug from `connector_name`, exists; its write key and the region's tracking host become
  the `write_key` and `segment_api_host` settings, and `integration_name` is "Webhooks" (the loop flag must
  name the destination Segment is to skip).
Everything is read before anything is written (an unknown source changes nothing), and a re-run creates and
deletes nothing and patches only what differs. The settings, the token and the `segment_workspace` row (this
module owns it) are saved only once every call succeeded; a call that fails midway answers what was done, and
running connect again completes it. The token is a credential (core/credentials.py), forgotten on disconnect.
"""

import base64
import re
import unicodedata
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.credentials import SEGMENT_PUBLIC_API_TOKEN, forget_secret, keep_secret, read_secret
from connector.core.logs import get_logger
from connector.core.models import SegmentWorkspace, utcnow
from connector.core.runtime import Runtime
from connector.core.settings import ConnectorSettings, mask_secret
from connector.segments import schedule
from connector.service import use_cases
from connector.service.public_api import PublicApi, PublicApiError, base_url

REGIONS = ("us", "eu")
TOKEN_SHAPE = re.compile(r"[\x21-\x7e]{1,1000}")  # printable ASCII: it travels in an HTTP header
TRACKING_HOSTS = {"us": "https://api.segment.io", "eu": "https://events.eu1.segmentapis.com"}
WEBHOOKS = "Webhooks"  # the classic destination's catalog name ("Webhooks (Actions)" is another one)
HTTP_API = "HTTP API"
DESTINATION_NAME = "Segment connector"
OPERATION = "segment_workspace"  # the lease of a connect or disconnect, in scheduled_runs
OPERATION_LEASE_SECONDS = 300  # longer than a connect takes, Segment's throttling waited out included
table = SegmentWorkspace.__table__
log = get_logger()


class WorkspaceError(Exception):
    """A refusal in words: the admin API's status (400 the user's mistake, 409 not possible now, 502 Segment's
    failure), the field at fault, and what was done before it (a re-run completes it)."""

    def __init__(self, status: int, message: str, field: str | None = None, done: list[dict[str, Any]] | None = None):
        super().__init__(message)
        self.status, self.message, self.field, self.done = status, message, field, done or []


@dataclass
class Target:
    """What a source should hold: the Webhooks destination whose settings point at this connector.

    A destination the connector created holds its hook alone. One it adopted (set up by hand, already pointing
    here) may hold others (a Webhooks destination takes up to five): those are someone else's and are kept."""

    hook: str
    authorization: str
    shared_secret: str | None

    def ours(self) -> dict[str, Any]:
        return {"hook": self.hook, "headers": [{"key": "Authorization", "value": self.authorization}]}

    def settings(self, destination: dict[str, Any] | None = None, adopted: bool = False) -> dict[str, Any]:
        others = [hook for hook in _hooks(destination) if hook.get("hook") != self.hook] if adopted else []
        return {"hooks": [self.ours(), *others], **({"sharedSecret": self.shared_secret} if self.shared_secret else {})}

    def points_here(self, destination: dict[str, Any]) -> bool:
        return any(hook.get("hook") == self.hook for hook in _hooks(destination))

    def problems(self, destination: dict[str, Any], adopted: bool = False) -> list[str]:
        """What differs from what it should be, in words (empty: it matches)."""
        problems = [] if destination.get("enabled") else ["disabled"]
        hooks = _hooks(destination)
        if [hook for hook in hooks if adopted is False or hook.get("hook") == self.hook] != [self.ours()]:
            problems.append("its URL or Authorization header was changed")
        read = (destination.get("settings") or {}).get("sharedSecret")
        if self.shared_secret and not _same_secret(read, self.shared_secret):
            problems.append("its shared secret differs")
        return problems


def _same_secret(read: Any, expected: str) -> bool:
    """Whether a secret setting read back from Segment is `expected`: Segment may answer a secret masked, its last
    characters after bullets ("••••••••••6546"), which then can only be compared by those characters."""
    if not isinstance(read, str):
        return False
    shown = read.lstrip("•*")
    return read == expected or (shown != read and len(shown) >= 4 and expected.endswith(shown))


def _hooks(destination: dict[str, Any] | None) -> list[dict[str, Any]]:
    hooks = ((destination or {}).get("settings") or {}).get("hooks")
    return [hook for hook in hooks if isinstance(hook, dict)] if isinstance(hooks, list) else []


def target_of(runtime: Runtime, settings: ConnectorSettings, api_key: str) -> Target:
    if not runtime.env.public_url:
        raise WorkspaceError(
            409,
            "PUBLIC_URL is not set: Segment's Webhooks destination needs the address this connector is reached "
            "at (set PUBLIC_URL, e.g. https://connector.example.com, and restart)",
            field="PUBLIC_URL",
        )
    authorization = "Basic " + base64.b64encode(f"{api_key}:".encode()).decode()
    return Target(_hook_of(runtime.env.public_url), authorization, settings.shared_secret)


def _hook_of(public_url: str) -> str:
    """The URL Segment's Webhooks destination delivers to."""
    return public_url.rstrip("/") + "/segment"


def slug_of(name: str) -> str:
    """Segment's source slug from `connector_name`: ASCII lower case, runs of other characters as one hyphen."""
    plain = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()  # Über -> Uber
    return re.sub(r"[^a-z0-9]+", "-", plain.lower()).strip("-") or "segment-connector"


SAVED_NOTHING = "nothing was saved in the settings, try again later"
TRY_LATER = "try again later"  # after a read that failed: nothing was changed


def in_words(error: PublicApiError, then: str = SAVED_NOTHING) -> WorkspaceError:
    """A Public API failure as the user reads it (`done` is added by the caller); `then`, after Segment's own
    failure, what it left and what to do."""
    if error.kind == "token":
        return WorkspaceError(400, "Segment refused the token (401): check it is copied whole and not revoked", "token")
    if error.kind == "scope":
        message = f"the token lacks a scope this needs (403 on {error.call}): give it the Workspace Owner role"
        return WorkspaceError(400, message, "token")
    if error.kind == "not_found":
        return WorkspaceError(400, f"Segment found nothing at {error.call} (404): {error.message}", "source_ids")
    if error.kind == "refused":
        return WorkspaceError(400, f"Segment refused {error.call} ({error.status}): {error.message}")
    return WorkspaceError(502, f"{error.message} ({error.call}); {then}")


# --- the stored state ---------------------------------------------------------


async def read_state(engine: AsyncEngine) -> dict[str, Any] | None:
    async with engine.connect() as conn:
        row = (await conn.execute(sa.select(table))).mappings().first()
    return dict(row) if row else None


async def _stored(engine: AsyncEngine) -> tuple[dict[str, Any] | None, str | None]:
    """The stored state and the token, each None when there is none."""
    return await read_state(engine), await read_secret(engine, SEGMENT_PUBLIC_API_TOKEN)


async def _save_state(engine: AsyncEngine, state: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.delete())
        await conn.execute(table.insert().values(id=1, updated_at=utcnow(), **state))


async def _forget_state(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(table.delete())


async def _token(runtime: Runtime, given: str | None) -> str:
    token = given or await read_secret(runtime.engine, SEGMENT_PUBLIC_API_TOKEN)
    if not token:
        raise WorkspaceError(
            400, "a Segment Public API token is required (Settings > Access Management > Tokens)", "token"
        )
    if not TOKEN_SHAPE.fullmatch(token):
        raise WorkspaceError(400, "this is not a Segment token: it holds spaces or characters no token has", "token")
    return token


def _region(given: str | None, state: dict[str, Any] | None) -> str:
    region = given or (state or {}).get("region") or "us"
    if region not in REGIONS:
        raise WorkspaceError(400, f"region must be one of {', '.join(REGIONS)}", "region")
    return region


def _client(runtime: Runtime, region: str, token: str) -> PublicApi:
    return PublicApi(base_url(region, runtime.env.segment_public_api_url), token)


def _named(catalog: list[dict[str, Any]], name: str) -> str:
    found = [str(item["id"]) for item in catalog if item.get("name") == name]
    if not found:
        raise WorkspaceError(502, f"Segment's catalog has no {name!r}; nothing was changed")
    return found[0]


# --- connect --------------------------------------------------------------------


@dataclass
class Found:
    """What connect read before writing anything."""

    workspace: dict[str, Any]
    webhooks_id: str
    back: dict[str, Any] | None  # the HTTP API source to send back through, when it exists
    back_metadata_id: str | None  # the catalog's HTTP API, to create it
    connected: dict[str, list[dict[str, Any]]]  # source id -> its connected destinations
    names: dict[str, str]  # source id -> its name, for people to read


@asynccontextmanager
async def _one_at_a_time(engine: AsyncEngine) -> AsyncIterator[None]:
    """Connect and disconnect hold a lease (a claimed run of `scheduled_runs`) for as long as they talk to Segment,
    so that two at once (two admins, two clicks) cannot both find no destination and create two: the second is
    refused at once. A process that dies holding it keeps it for OPERATION_LEASE_SECONDS at most."""
    async with engine.begin() as conn:
        claimed = await schedule.claim_run(conn, OPERATION, OPERATION_LEASE_SECONDS, utcnow())
    if not claimed:
        message = (
            "another connect or disconnect of the Segment workspace is under way; try again once it has finished "
            f"(within {OPERATION_LEASE_SECONDS // 60} minutes)"
        )
        raise WorkspaceError(409, message)
    try:
        yield
    finally:
        async with engine.begin() as conn:
            await schedule.release_run(conn, OPERATION)


async def connect(runtime: Runtime, token: str | None, region: str | None, source_ids: list[str]) -> dict[str, Any]:
    """Connect (or repair) the workspace; the answer says what was found, created and changed."""
    async with _one_at_a_time(runtime.engine):
        return await _connect(runtime, token, region, source_ids)


async def _connect(runtime: Runtime, token: str | None, region: str | None, source_ids: list[str]) -> dict[str, Any]:
    settings = await runtime.settings.current()
    target = target_of(runtime, settings, await runtime.settings.api_key())
    state = await read_state(runtime.engine)
    token, region = await _token(runtime, token), _region(region, state)
    chosen = list(dict.fromkeys(source_ids))
    done: list[dict[str, Any]] = []
    async with _client(runtime, region, token) as api:
        try:
            found = await _read(api, settings, chosen, state)
            back = await _back_source(api, found, slug_of(settings.connector_name), done)
            destinations = await _destinations(api, found, target, [*chosen, back["id"]], state, done)
        except PublicApiError as error:
            log.warning(
                "workspace.connect.failed", call=error.call, status=error.status, kind=error.kind, done=len(done)
            )
            failure = in_words(error)
            failure.done = done
            raise failure from None
    changes = _settings_changes(settings, back, region)
    await keep_secret(runtime.engine, SEGMENT_PUBLIC_API_TOKEN, token)
    await _save_state(runtime.engine, _state(found, region, chosen, destinations, back))
    if changes:
        await use_cases.save_settings(runtime.engine, runtime.settings, changes)
    log.info("workspace.connect", workspace=found.workspace.get("slug"), changes=len(done), settings=sorted(changes))
    return {
        "workspace": found.workspace,
        "region": region,
        "token": mask_secret(token),
        "source": {
            **_source_shown(back),
            "action": next((d["action"] for d in done if d.get("kind") == "source"), "found"),
        },
        "destinations": destinations,
        "done": done,
        "settings_changed": sorted(changes),
    }


async def _read(api: PublicApi, settings: ConnectorSettings, chosen: list[str], state: dict[str, Any] | None) -> Found:
    workspace = await api.workspace()
    webhooks_id = _named(await api.destination_catalog(), WEBHOOKS)
    sources = await api.sources()
    unknown = sorted(set(chosen) - {source["id"] for source in sources})
    if unknown:
        message = f"the workspace {workspace.get('name')!r} has no source {', '.join(unknown)}; nothing was changed"
        raise WorkspaceError(400, message, "source_ids")
    slug = slug_of(settings.connector_name)
    back = next((source for source in sources if source.get("slug") == slug), None)
    back_metadata_id = None if back else _named(await api.source_catalog(), HTTP_API)
    connected = {}
    for source_id in dict.fromkeys([*chosen, *([back["id"]] if back else [])]):
        connected[source_id] = await api.connected_destinations(source_id)
    names = {source["id"]: source.get("name") or source.get("slug") or source["id"] for source in sources}
    return Found(workspace, webhooks_id, back, back_metadata_id, connected, names)


async def _back_source(api: PublicApi, found: Found, slug: str, done: list[dict[str, Any]]) -> dict[str, Any]:
    """The HTTP API source the connector sends back through, created when missing, with a write key (one is
    created when every key of the source was removed in Segment)."""
    source = found.back
    if source is None:
        assert found.back_metadata_id is not None
        source = await api.create_source(slug, found.back_metadata_id)
        found.connected[source["id"]] = []
        found.names[source["id"]] = slug
        done.append({"kind": "source", "action": "created", "source_id": source["id"], "slug": slug})
    if not source.get("writeKeys"):
        source = await api.create_write_key(source["id"])
        done.append({"kind": "write_key", "action": "created", "source_id": source["id"]})
    return source


async def _destinations(
    api: PublicApi,
    found: Found,
    target: Target,
    sources: list[str],
    state: dict[str, Any] | None,
    done: list[dict[str, Any]],
) -> list[dict[str, Any]]:
    """Exactly one Webhooks destination to this connector on each source; none left where no longer wanted."""
    previous = (state or {}).get("destinations") or []
    managed = {entry["destination_id"]: bool(entry.get("adopted")) for entry in previous}  # id -> adopted
    result = []
    for source_id in dict.fromkeys(sources):
        ours = [
            destination
            for destination in found.connected.get(source_id, [])
            if destination["id"] in managed
            or ((destination.get("metadata") or {}).get("id") == found.webhooks_id and target.points_here(destination))
        ]
        result.append(await _one_destination(api, found, target, source_id, ours, managed, done))
    for entry in previous:
        if entry["source_id"] not in sources:
            done.append({"kind": "destination", "action": await _let_go_managed(api, target.hook, entry), **entry})
    return result


async def _one_destination(
    api: PublicApi,
    found: Found,
    target: Target,
    source_id: str,
    ours: list[dict[str, Any]],
    managed: dict[str, bool],
    done: list[dict[str, Any]],
) -> dict[str, Any]:
    adopted = False
    if not ours:
        destination_id = await api.create_destination(source_id, found.webhooks_id, DESTINATION_NAME, target.settings())
        action = "created"
    else:
        keep, *extra = ours
        adopted = managed.get(keep["id"], True)  # one the connector did not create was adopted
        destination_id, problems = keep["id"], target.problems(keep, adopted)
        if problems:
            await api.update_destination(destination_id, target.settings(keep, adopted))
        action = "updated" if problems else "unchanged"
        for duplicate in extra:  # never two: a second one would deliver every message twice
            let_go = await _let_go(api, target.hook, duplicate["id"], duplicate)
            done.append(
                {"kind": "destination", "action": let_go, "source_id": source_id, "destination_id": duplicate["id"]}
            )
    entry = {
        "source_id": source_id,
        "source_name": found.names.get(source_id, source_id),
        "destination_id": destination_id,
    }
    if action != "unchanged":
        done.append({"kind": "destination", "action": action, **entry})
    return {**entry, "action": action, "adopted": adopted}


async def _let_go(api: PublicApi, hook: str | None, destination_id: str, destination: dict[str, Any] | None) -> str:
    """A destination the connector no longer wants: deleted, or, when it holds other hooks (someone else's),
    left with those alone, as enabled as it was ("unhooked")."""
    others = [each for each in _hooks(destination) if each.get("hook") != hook]
    if destination is not None and hook is not None and others:
        await api.update_destination(destination_id, {"hooks": others}, enabled=None)
        return "unhooked"
    await _delete(api, destination_id)
    return "deleted"


async def _let_go_managed(api: PublicApi, hook: str | None, entry: dict[str, Any]) -> str:
    """`_let_go` of a managed destination: one the connector created holds nothing else; an adopted one is read."""
    destination = await _managed_destination(api, entry) if entry.get("adopted") and hook is not None else None
    return await _let_go(api, hook, entry["destination_id"], destination)


async def _managed_destination(api: PublicApi, entry: dict[str, Any]) -> dict[str, Any] | None:
    """The managed destination `entry` names as Segment has it now; None when it, or its source, is gone."""
    try:
        connected = await api.connected_destinations(entry["source_id"])
    except PublicApiError as error:
        if error.kind != "not_found":
            raise
        return None
    return next((d for d in connected if d["id"] == entry["destination_id"]), None)


async def _delete(api: PublicApi, destination_id: str) -> None:
    """Delete a destination; one already gone is what was wanted."""
    try:
        await api.delete_destination(destination_id)
    except PublicApiError as error:
        if error.kind != "not_found":
            raise


def _settings_changes(settings: ConnectorSettings, back: dict[str, Any], region: str) -> dict[str, Any]:
    keys = back.get("writeKeys") or []
    if not keys:
        raise WorkspaceError(502, f"Segment's source {back.get('slug')!r} has no write key; nothing was saved")
    wanted = {"write_key": keys[0], "segment_api_host": TRACKING_HOSTS[region], "integration_name": WEBHOOKS}
    return {name: value for name, value in wanted.items() if getattr(settings, name) != value}


def _state(
    found: Found, region: str, chosen: list[str], destinations: list[dict[str, Any]], back: dict[str, Any]
) -> dict[str, Any]:
    return {
        "workspace": {key: found.workspace.get(key) for key in ("id", "slug", "name")},
        "region": region,
        "source_ids": chosen,
        "destinations": [
            {key: d[key] for key in ("source_id", "source_name", "destination_id", "adopted")} for d in destinations
        ],
        "back_source": _source_shown(back),
    }


def _source_shown(source: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": source["id"],
        "slug": source.get("slug"),
        "name": source.get("name"),
        "kind": (source.get("metadata") or {}).get("name"),
        "enabled": source.get("enabled"),
    }


# --- status, disconnect, the sources to choose from -------------------------------


async def status(runtime: Runtime) -> dict[str, Any]:
    """Connected or not; re-read from the Public API: whether each destination and the source still match."""
    state, token = await _stored(runtime.engine)
    if state is None or token is None:
        return {"connected": False}
    settings = await runtime.settings.current()
    target = target_of(runtime, settings, await runtime.settings.api_key())
    async with _client(runtime, state["region"], token) as api:
        try:
            workspace = await api.workspace()
            destinations = [await _checked(api, target, entry) for entry in state["destinations"]]
            source = _source_checked(state["back_source"], await api.sources(), settings, state["region"])
        except PublicApiError as error:
            raise in_words(error, TRY_LATER) from None
    return {
        "connected": True,
        "token": mask_secret(token),
        "region": state["region"],
        "workspace": {key: workspace.get(key) for key in ("id", "slug", "name")},
        "source_ids": state["source_ids"],
        "source": source,
        "destinations": destinations,
        "matches": source["matches"] and all(entry["matches"] for entry in destinations),
    }


async def unchecked(runtime: Runtime) -> dict[str, Any]:
    """The connected workspace as the last connect saved it, not re-read (for when Segment cannot be read)."""
    state, token = await _stored(runtime.engine)
    if state is None or token is None:
        return {"connected": False}
    return {
        "connected": True,
        "token": mask_secret(token),
        **{key: state[key] for key in ("region", "workspace", "source_ids", "destinations")},
        "source": state["back_source"],
    }


async def _checked(api: PublicApi, target: Target, entry: dict[str, Any]) -> dict[str, Any]:
    destination = await _managed_destination(api, entry)
    problems = (
        ["deleted in Segment"] if destination is None else target.problems(destination, entry.get("adopted", False))
    )
    return {**entry, "matches": not problems, "problems": problems}


def _source_checked(
    back: dict[str, Any], sources: list[dict[str, Any]], settings: ConnectorSettings, region: str
) -> dict[str, Any]:
    source = next((s for s in sources if s["id"] == back["id"]), None)
    problems = []
    if source is None:
        problems.append("deleted in Segment")
    elif settings.write_key not in (source.get("writeKeys") or [])[:1]:
        problems.append("the write_key setting is not this source's write key")
    if settings.segment_api_host != TRACKING_HOSTS[region]:
        problems.append(f"segment_api_host is not the {region} region's {TRACKING_HOSTS[region]}")
    if settings.integration_name != WEBHOOKS:  # the loop flag names the destination Segment skips
        problems.append(f"integration_name is not {WEBHOOKS!r}: Segment would deliver the connector's own calls back")
    return {**back, "matches": not problems, "problems": problems}


async def disconnect(runtime: Runtime) -> dict[str, Any]:
    """Delete the destinations the connector manages (an adopted one holding other hooks only loses its hook here);
    keep the source and the write key; forget the token."""
    async with _one_at_a_time(runtime.engine):
        return await _disconnect(runtime)


async def _disconnect(runtime: Runtime) -> dict[str, Any]:
    state, token = await _stored(runtime.engine)
    if state is None and token is None:
        raise WorkspaceError(409, "no Segment workspace is connected")
    let_go: list[dict[str, Any]] = []
    if state is not None and token is not None:
        hook = _hook_of(runtime.env.public_url) if runtime.env.public_url else None  # to unhook adopted ones alone
        async with _client(runtime, state["region"], token) as api:
            for entry in state["destinations"]:
                try:
                    let_go.append({**entry, "action": await _let_go_managed(api, hook, entry)})
                except PublicApiError as error:
                    failure = in_words(error, "the token is kept: disconnecting again completes it")
                    failure.done = [{"kind": "destination", **d} for d in let_go]
                    raise failure from None
    await forget_secret(runtime.engine, SEGMENT_PUBLIC_API_TOKEN)
    await _forget_state(runtime.engine)
    log.info("workspace.disconnect", let_go=len(let_go))
    return {
        "deleted": [d for d in let_go if d["action"] == "deleted"],
        "unhooked": [d for d in let_go if d["action"] == "unhooked"],
        "kept": (state or {}).get("back_source"),
    }


async def sources_page(runtime: Runtime, token: str | None, region: str | None, cursor: str | None) -> dict[str, Any]:
    """One page of the workspace's sources to choose from, and the cursor of the next (null on the last);
    `way_back`: the HTTP API source the connector sends back through (always connected, chosen or not)."""
    state, slug = await read_state(runtime.engine), slug_of((await runtime.settings.current()).connector_name)
    token, region = await _token(runtime, token), _region(region, state)
    async with _client(runtime, region, token) as api:
        try:
            sources, following = await api.sources_page(cursor)
        except PublicApiError as error:
            raise in_words(error, TRY_LATER) from None
    chosen = set((state or {}).get("source_ids") or [])
    shown = [{**_source_shown(s), "chosen": s["id"] in chosen, "way_back": s.get("slug") == slug} for s in sources]
    return {"sources": shown, "next": following}
