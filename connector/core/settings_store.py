"""Persist and read the versioned settings document."""

import asyncio
import time
from typing import Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from connector.core.credentials import API_KEY
from connector.core.models import Credential, SettingsVersion, utcnow
from connector.core.settings import SECRET_FIELDS, UNION_TAGS, ConnectorSettings, explain, mask_secret

table = SettingsVersion.__table__
credentials = Credential.__table__


class SettingsStore:
    """The settings and API key in force, cached for `ttl` seconds so other processes' saves are seen."""

    def __init__(self, engine: AsyncEngine, ttl: float = 1.0):
        self.engine = engine
        self.ttl = ttl
        self._cached: tuple[int, ConnectorSettings] | None = None
        self._loaded_at = 0.0
        self._api_key: str | None = None
        self._reloading: asyncio.Future[None] | None = None

    async def current(self) -> ConnectorSettings:
        return (await self.current_version())[1]

    async def current_version(self) -> tuple[int, ConnectorSettings]:
        if self._cached is None or time.monotonic() - self._loaded_at > self.ttl:
            await self._reload_shared()
        assert self._cached is not None
        return self._cached

    async def api_key(self) -> str:
        await self.current_version()
        assert self._api_key is not None, "ensure_api_key() runs at start-up"
        return self._api_key

    async def _reload_shared(self) -> None:
        """One reload for all the callers that find the cache expired while it runs: under load every request
        in flight did, each with a connection of its own. Shielded: a caller cancelled leaves it to the others."""
        if self._reloading is None or self._reloading.done():
            self._reloading = asyncio.ensure_future(self.reload())
        await asyncio.shield(self._reloading)

    async def reload(self, conn: AsyncConnection | None = None) -> None:
        """Read the newest version, on `conn` when given (the sender reads it on the connection it claimed on).
        A version already cached is not validated again: a saved version never changes."""
        if conn is None:
            async with self.engine.connect() as own:
                await self._read(own)
        else:
            await self._read(conn)

    async def _read(self, conn: AsyncConnection) -> None:
        row = (
            await conn.execute(sa.select(table.c.version, table.c.document).order_by(table.c.version.desc()).limit(1))
        ).first()
        self._api_key = (
            await conn.execute(sa.select(credentials.c.value).where(credentials.c.name == API_KEY))
        ).scalar()
        if row is None:
            self.remember((0, ConnectorSettings()))
        elif self._cached is not None and self._cached[0] == row.version:
            self.remember(self._cached)
        else:
            self.remember((row.version, ConnectorSettings.model_validate(row.document)))

    async def save(self, changes: dict[str, Any]) -> tuple[int, ConnectorSettings]:
        """Apply a partial document; raises ValidationError naming the field, storing nothing.

        A secret sent back exactly as masked keeps its stored value, so a form that
        round-trips a GET does not erase secrets.
        """
        async with self.engine.begin() as conn:
            saved = await self.save_in(conn, changes)
        self.remember(saved)
        return saved

    async def proposed(self, changes: dict[str, Any]) -> ConnectorSettings:
        """The settings a save of this partial document would store; raises ValidationError, storing nothing."""
        _, current = await self.current_version()
        document = current.model_dump()
        for name, value in changes.items():
            if name in SECRET_FIELDS and value is not None and value == mask_secret(document.get(name)):
                continue
            document[name] = value
        return ConnectorSettings.model_validate(document)

    async def save_in(self, conn: AsyncConnection, changes: dict[str, Any]) -> tuple[int, ConnectorSettings]:
        """save, inside the caller's transaction (so a change and the settings that follow it commit together);
        the caller calls remember() with what it returns once that transaction has committed."""
        updated = await self.proposed(changes)
        latest = (await conn.execute(sa.select(sa.func.max(table.c.version)))).scalar() or 0
        await conn.execute(
            table.insert().values(version=latest + 1, document=updated.model_dump(), created_at=utcnow())
        )
        self._cached = None
        return latest + 1, updated

    def remember(self, found: tuple[int, ConnectorSettings]) -> None:
        """Cache (version, settings) unless a later version is cached: a read that began before a save committed
        (the worker of this process reads all the time) ends with the version before it, and must not
        replace the saved one."""
        if self._cached is None or found[0] >= self._cached[0]:
            self._cached = found
        self._loaded_at = time.monotonic()


def validation_errors(error: ValidationError) -> list[dict[str, str]]:
    """Each problem of a settings document as a person would say it (settings.explain): `field` the input's path
    (segment_events.0.added, what the form attaches the message to), `label` the same by its titles (Segment
    events, entry 1, Added event), `message` a sentence. An entry that is neither alternative of a union (neither
    an attribute name nor a mapping) is one problem, not one per alternative."""
    items = error.errors()
    found: list[dict[str, str]] = []
    for item in items:
        loc = tuple(item["loc"])
        if loc and loc[-1] in UNION_TAGS and item["type"].endswith("_type"):
            # This alternative does not fit at all: said once for the entry, unless the other one explains more.
            if any(tuple(other["loc"])[: len(loc) - 1] == loc[:-1] and len(other["loc"]) > len(loc) for other in items):
                continue
            item = {**item, "type": "union_type"}
        problem = explain(loc, item["type"], item.get("ctx") or {}, item["msg"])
        if problem not in found:
            found.append(problem)
    return found
