"""A client of Segment's Public API (https://docs.segmentapis.com), the calls the workspace setup makes.

Wire format as Segment's published SDK (`@segment/public-api-sdk-typescript`) has it: a Bearer workspace token,
answers wrapped in `{"data": ...}`, errors as `{"errors": [{"type", "message"}]}`, lists paged with the query
`pagination.count` / `pagination.cursor` and answering `pagination.next` (null on the last page).

Every failure becomes a PublicApiError whose `kind` says whose it is: the user's (`token` for a 401,
`scope` for a 403, `not_found` for a 404, `refused` for another 4xx) or Segment's (`unavailable`: a 5xx, a
timeout, a connection that failed, or throttling that outlasted the retries). A 429 is retried after the wait
it names: its `Retry-After` when it has one, else what Segment's own 429 gives (docs.segmentapis.com, Rate
Limits: no Retry-After, the error's `data.msBeforeNext`, the window's end in `X-RateLimit-Reset`); a wait
longer than an admin request should hang is Segment being unavailable, said with the wait. The token is only
ever in the Authorization header: never in a message, never logged.
"""

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import httpx

BASE_URLS = {"us": "https://api.segmentapis.com", "eu": "https://eu1.api.segmentapis.com"}
PAGE_SIZE = 200  # the most the Public API answers per page
TIMEOUT_SECONDS = 15.0
THROTTLE_RETRIES = 4
THROTTLE_BUDGET_SECONDS = 20.0  # waits beyond it are Segment being unavailable (Heroku's router gives up at 30 s)
DEFAULT_THROTTLE_SECONDS = 1.0

KIND_OF_STATUS = {401: "token", 403: "scope", 404: "not_found"}


class PublicApiError(Exception):
    """A Public API call that failed: `kind` (token, scope, not_found, refused, unavailable), `status` (None:
    no answer) and Segment's own words."""

    def __init__(self, kind: str, status: int | None, message: str, call: str):
        super().__init__(message)
        self.kind, self.status, self.message, self.call = kind, status, message, call

    @property
    def is_segments(self) -> bool:
        """Segment's own failure (5xx, timeout, throttled for too long), not the user's mistake."""
        return self.kind == "unavailable"


def base_url(region: str, override: str | None) -> str:
    """SEGMENT_PUBLIC_API_URL when set, else the region's."""
    return (override or BASE_URLS[region]).rstrip("/")


class PublicApi:
    """One workspace token's calls. Use as an async context manager (one connection pool for a use case)."""

    def __init__(
        self,
        url: str,
        token: str,
        timeout: float | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ):
        self._http = httpx.AsyncClient(
            base_url=url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout or TIMEOUT_SECONDS,
        )
        self._sleep = sleep

    async def __aenter__(self) -> "PublicApi":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._http.aclose()

    # --- the calls ---------------------------------------------------------

    async def workspace(self) -> dict[str, Any]:
        """GET /: the token's workspace (id, slug, name)."""
        workspace: dict[str, Any] = (await self._call("GET", "/"))["workspace"]
        return workspace

    async def destination_catalog(self) -> list[dict[str, Any]]:
        return await self._every("/catalog/destinations", "destinationsCatalog")

    async def source_catalog(self) -> list[dict[str, Any]]:
        return await self._every("/catalog/sources", "sourcesCatalog")

    async def sources(self) -> list[dict[str, Any]]:
        return await self._every("/sources", "sources")

    async def sources_page(self, cursor: str | None) -> tuple[list[dict[str, Any]], str | None]:
        """One page of the workspace's sources and the cursor of the next (None on the last)."""
        data = await self._call("GET", "/sources", params=_page(cursor))
        return data["sources"], data["pagination"].get("next")

    async def connected_destinations(self, source_id: str) -> list[dict[str, Any]]:
        return await self._every(f"/sources/{_segment(source_id)}/connected-destinations", "destinations")

    async def create_source(self, slug: str, metadata_id: str) -> dict[str, Any]:
        body = {"slug": slug, "enabled": True, "metadataId": metadata_id}
        source: dict[str, Any] = (await self._call("POST", "/sources", json=body))["source"]
        return source

    async def create_write_key(self, source_id: str) -> dict[str, Any]:
        """A new write key on the source; the source as it then is."""
        source: dict[str, Any] = (await self._call("POST", f"/sources/{_segment(source_id)}/writekey"))["source"]
        return source

    async def create_destination(self, source_id: str, metadata_id: str, name: str, settings: dict[str, Any]) -> str:
        body = {"sourceId": source_id, "metadataId": metadata_id, "name": name, "enabled": True, "settings": settings}
        destination_id: str = (await self._call("POST", "/destinations", json=body))["destination"]["id"]
        return destination_id

    async def update_destination(
        self, destination_id: str, settings: dict[str, Any], enabled: bool | None = True
    ) -> None:
        """Its settings (and `enabled`, unless None: left as it is)."""
        body = {**({"enabled": enabled} if enabled is not None else {}), "settings": settings}
        await self._call("PATCH", f"/destinations/{_segment(destination_id)}", json=body)

    async def delete_destination(self, destination_id: str) -> None:
        await self._call("DELETE", f"/destinations/{_segment(destination_id)}")

    # --- the wire ----------------------------------------------------------

    async def _every(self, path: str, key: str) -> list[dict[str, Any]]:
        """Every item of a paged list, following `pagination.next` to the end."""
        items: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            data = await self._call("GET", path, params=_page(cursor))
            items += data[key]
            cursor = (data.get("pagination") or {}).get("next")
            if not cursor:
                return items

    async def _call(
        self, method: str, path: str, params: dict[str, Any] | None = None, json: Any = None
    ) -> dict[str, Any]:
        call, waited = f"{method} {path}", 0.0
        for attempt in range(THROTTLE_RETRIES + 1):
            try:
                answer = await self._http.request(method, path, params=params, json=json)
            except httpx.TimeoutException:
                raise PublicApiError("unavailable", None, "Segment's Public API did not answer in time", call) from None
            except httpx.TransportError as error:
                message = f"Segment's Public API could not be reached ({type(error).__name__})"
                raise PublicApiError("unavailable", None, message, call) from None
            wait = _throttled_for(answer)
            if wait is None:
                return _data(answer, call)
            if attempt == THROTTLE_RETRIES or waited + wait > THROTTLE_BUDGET_SECONDS:
                break
            await self._sleep(wait)
            waited += wait
        message = f"Segment's Public API kept throttling the requests (429): try again in {wait:.0f} s"
        raise PublicApiError("unavailable", 429, message, call)


def _page(cursor: str | None) -> dict[str, Any]:
    return {"pagination.count": PAGE_SIZE, **({"pagination.cursor": cursor} if cursor else {})}


def _segment(value: str) -> str:
    """An id as one path segment (a source id is typed by the user: it must not reach another path)."""
    return quote(value, safe="")


def _throttled_for(answer: httpx.Response) -> float | None:
    """Seconds to wait before asking again (a 429), or None when the answer is not a throttle: Retry-After, else
    the error's `data.msBeforeNext`, else until `X-RateLimit-Reset`, else a second."""
    if answer.status_code != 429:
        return None
    for wait in (_retry_after(answer), _ms_before_next(answer), _until_reset(answer)):
        if wait is not None:
            return max(0.0, wait)
    return DEFAULT_THROTTLE_SECONDS


def _retry_after(answer: httpx.Response) -> float | None:
    try:
        return float(answer.headers["retry-after"])
    except (KeyError, ValueError):
        return None


def _ms_before_next(answer: httpx.Response) -> float | None:
    try:
        return float(answer.json()["errors"][0]["data"]["msBeforeNext"]) / 1000
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _until_reset(answer: httpx.Response) -> float | None:
    try:
        return email.utils.parsedate_to_datetime(answer.headers["x-ratelimit-reset"]).timestamp() - time.time()
    except (KeyError, ValueError, TypeError):
        return None


def _data(answer: httpx.Response, call: str) -> dict[str, Any]:
    if answer.status_code >= 500:
        raise PublicApiError(
            "unavailable", answer.status_code, f"Segment's Public API failed ({answer.status_code})", call
        )
    if answer.status_code >= 400:
        kind = KIND_OF_STATUS.get(answer.status_code, "refused")
        raise PublicApiError(kind, answer.status_code, _error_words(answer), call)
    try:
        data: dict[str, Any] = answer.json()["data"]
    except (ValueError, KeyError, TypeError):
        raise PublicApiError(
            "unavailable", answer.status_code, "Segment's Public API answered without data", call
        ) from None
    return data


def _error_words(answer: httpx.Response) -> str:
    """Segment's own message of the first error, when the answer has one."""
    try:
        errors = answer.json().get("errors") or []
        return str(errors[0].get("message") or errors[0].get("type"))
    except (ValueError, AttributeError, IndexError, TypeError):
        return f"status {answer.status_code}"
