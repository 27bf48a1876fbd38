"""The outbound side as the tests see it: the outbox's rows, and `connector replay` run as an operator runs it."""

import asyncio
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connector import cli
from connector.core.environment import Environment, get_environment
from connector.core.models import OutboxItem
from connector.core.runtime import Runtime

outbox = OutboxItem.__table__


async def rows(runtime: Runtime, table: Any = outbox) -> list[Any]:
    """Every row of `table` (the outbox unless told), in id order."""
    async with runtime.engine.connect() as conn:
        return list((await conn.execute(sa.select(table).order_by(table.c.id))).all())


async def replay_from_the_command_line(env: Environment, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """`connector replay` as an operator runs it: what it prints, line by line (its JSON log lines
    and its summary)."""
    monkeypatch.setenv("DATABASE_URL", env.database_url)
    get_environment.cache_clear()
    try:
        result = await asyncio.to_thread(CliRunner().invoke, cli.main, ["replay"])
    finally:
        get_environment.cache_clear()
    assert result.exit_code == 0, result.output
    return result.output.splitlines()
