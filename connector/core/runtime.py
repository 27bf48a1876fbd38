"""What a running process holds: environment, engine, settings, credentials."""

import gc
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from connector.core.credentials import ADMIN_TOKEN, API_KEY, ensure_credential
from connector.core.db import create_engine
from connector.core.environment import Environment
from connector.core.settings_store import SettingsStore


@dataclass
class Runtime:
    env: Environment
    engine: AsyncEngine
    settings: SettingsStore
    api_key: str = field(default="", repr=False)
    admin_token: str = field(default="", repr=False)

    @classmethod
    async def start(cls, env: Environment) -> "Runtime":
        database = env.service_database
        engine = create_engine(database.url, env.database_max_connections, pooler=database.pooler)
        runtime = cls(env=env, engine=engine, settings=SettingsStore(engine))
        runtime.api_key = await ensure_credential(engine, API_KEY, env.connector_api_key, "hsc_")
        # Outside development ADMIN_TOKEN is required (config.py); in development one is generated once.
        runtime.admin_token = await ensure_credential(engine, ADMIN_TOKEN, env.admin_token, "adm_")
        await runtime.settings.reload()
        return runtime

    async def stop(self) -> None:
        await self.engine.dispose()


GC_YOUNG_ALLOCATIONS = 50_000


def settle_heap() -> None:
    """Take what the process has built at start (its modules above all) out of the garbage collector's
    sweeps: it lives as long as the process, yet every full collection walked all of it, and a worker
    spent a third of its CPU there. Called once per process by the entry points, once started;
    garbage made so far is collected first, since frozen objects are never freed.

    The youngest generation is collected every GC_YOUNG_ALLOCATIONS allocations instead of 700: a batch
    builds hundreds of thousands of short-lived objects that reference counting frees, no cycles, and
    with the default the collector ran over them ~250 times a batch, 15 us of a message's ~70 us."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_ALLOCATIONS, *gc.get_threshold()[1:])
    gc.enable()  # the command line turns it off while it imports (connector/__main__.py)
