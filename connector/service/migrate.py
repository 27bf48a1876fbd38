"""Run Alembic migrations programmatically (used by `connector migrate` and the tests)."""

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

ALEMBIC_INI = Path(__file__).parent.parent / "alembic.ini"


def alembic_config(database_url: str | None = None, pooler: bool = False) -> Config:
    """Alembic's configuration; `pooler`: `database_url` is a transaction-mode pooler (core/db.py)."""
    config = Config(str(ALEMBIC_INI))
    if database_url:
        config.attributes["database_url"] = database_url
        config.attributes["pooler"] = pooler
    return config


def upgrade(database_url: str | None = None, revision: str = "head", pooler: bool = False) -> None:
    """Upgrade to `revision`; safe to call from inside a running event loop."""
    config = alembic_config(database_url, pooler)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        command.upgrade(config, revision)
        return
    # env.py calls asyncio.run, which cannot nest: run it on a fresh thread.
    import threading

    errors: list[BaseException] = []

    def target() -> None:
        try:
            command.upgrade(config, revision)
        except BaseException as error:  # re-raised on the caller's thread
            errors.append(error)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
