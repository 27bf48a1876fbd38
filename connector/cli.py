"""Command line: serve, worker, migrate, schema, and the operator tools.

Each command imports what it uses in its own body, never at the top of this module: a process pays only for
its command's modules (`connector resync` neither loads uvicorn nor the web app nor the processing stages), and
an operator command starts working in a fraction of a second. A new command or command group follows the same
pattern; tests/cli/test_cli_imports.py lists what each command must not import.
"""

import asyncio
import contextlib
import errno
import functools
import gc
import os
import signal
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from pydantic import ValidationError

from connector.core.environment import Environment, get_environment
from connector.core.logs import configure_logging

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncEngine

    from connector.core.runtime import Runtime

SCHEMA_PATH = Path("settings.schema.json")
# Heroku sends SIGTERM, then SIGKILL 30 s later: requests in flight get this long to finish.
GRACEFUL_SHUTDOWN_SECONDS = 15


@click.group()
def main() -> None:
    """Hull-style bidirectional Segment connector."""
    configure_logging(checked_environment().log_level)


def checked_environment() -> Environment:
    """The environment, or a one-line error naming what is wrong: pydantic's own message
    would print the config vars it was given, secrets included."""
    try:
        return get_environment()
    except ValidationError as error:
        problems = "; ".join(
            " ".join([*map(str, problem["loc"]), problem["msg"].removeprefix("Value error, ")])
            for problem in error.errors()
        )
        raise click.ClickException(f"invalid configuration: {problems}") from None


@main.command()
def migrate() -> None:
    """Apply database migrations (the Procfile's release process)."""
    from connector.service.migrate import upgrade

    database = get_environment().direct_database  # on Heroku the release runs on the direct connection
    upgrade(database.url, pooler=database.pooler)
    click.echo("database is at the latest migration")


@main.command()
@click.option("--output", type=click.Path(path_type=Path), default=SCHEMA_PATH, show_default=True)
def schema(output: Path) -> None:
    """Write settings.schema.json from the settings model."""
    from connector.core.settings import write_settings_schema

    write_settings_schema(output)
    click.echo(f"wrote {output}")


@main.command()
@click.option("--no-worker", is_flag=True, help="Do not run the worker inside the web process.")
@click.option("--host", help="Interface to listen on (default: HOST, else 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default: PORT, else 8000).")
@click.option(
    "--forwarded-allow-ips",
    help="Proxies whose X-Forwarded-For/-Proto are trusted; '*' behind Heroku's router "
    "(default: FORWARDED_ALLOW_IPS, else 127.0.0.1).",
)
def serve(no_worker: bool, host: str | None, port: int | None, forwarded_allow_ips: str | None) -> None:
    """Run the web process (with the embedded worker unless RUN_WORKER_IN_WEB=false).

    On SIGTERM it stops accepting connections, lets requests in flight finish (up to
    GRACEFUL_SHUTDOWN_SECONDS), stops the embedded worker, and exits.
    """
    if no_worker:
        # Set in the environment so that every web process (WEB_CONCURRENCY > 1) sees it.
        os.environ["RUN_WORKER_IN_WEB"] = "false"
        get_environment.cache_clear()
    env = checked_environment()
    if env.web_concurrency > 1 and env.run_worker_in_web and env.database_url.startswith("sqlite"):
        # Each web process would start a worker, and all but one would be refused (uvicorn restarts them).
        raise click.ClickException(
            "SQLite runs one worker: with WEB_CONCURRENCY > 1, run `connector serve --no-worker` "
            "and one `connector worker`"
        )
    import uvicorn

    host, port = host or env.host, port or env.port
    _refuse_if_in_use(env, host, port)
    asyncio.run(_print_welcome(env, f"http://{host}:{port}"))
    options: dict[str, Any] = {  # uvicorn.run's keywords
        "host": host,
        "port": port,
        "proxy_headers": True,
        "forwarded_allow_ips": forwarded_allow_ips,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_SECONDS,
        "log_level": "warning",
        "log_config": None,  # uvicorn's records go through the root handler: JSON like every line
        "access_log": False,
    }
    if env.web_concurrency > 1:
        uvicorn.run("connector.asgi:app", workers=env.web_concurrency, **options)
    else:
        from connector.core.runtime import settle_heap
        from connector.web.app import create_app

        app = create_app(env)
        settle_heap()
        uvicorn.run(app, **options)


def _refuse_if_in_use(env: Environment, host: str, port: int) -> None:
    """A second `make run` says what is in the way and how to get past it, in one line, before the banner."""
    from connector.service.worker import worker_elsewhere

    try:
        socket.create_server((host, port)).close()
    except OSError as error:
        if error.errno != errno.EADDRINUSE:
            raise click.ClickException(f"cannot listen on {host}:{port}: {error.strerror}") from None
        raise click.ClickException(
            f"port {port} on {host} is in use (another `make run`?): stop that process, "
            f"or choose another port: PORT={port + 1} make run"
        ) from None
    if env.run_worker_in_web and (held := worker_elsewhere(env.database_url)) is not None:
        raise click.ClickException(
            f"SQLite runs one worker, and another connector process works on {held}: stop it, "
            "or give this one a database of its own: DATABASE_URL=sqlite+aiosqlite:///./other.db make run"
        )


async def _print_welcome(env: Environment, listening: str | None = None) -> None:
    from connector.core.runtime import Runtime
    from connector.core.settings import mask_secret

    runtime = await Runtime.start(env)
    await runtime.stop()
    url = env.public_url or listening or f"http://{env.host}:{env.port}"
    click.echo(f"\nSegment connector on {url}  (database: {env.database_url.split('://')[0]})")
    click.echo(f"  dashboard      {url}/")
    if env.environment == "development":
        click.echo(f"  admin token    {runtime.admin_token}")
        click.echo(f"  inbound key    {runtime.api_key}")
        user = f"'{runtime.api_key}:'"
    else:  # stdout is the log stream in production: no secret in full
        click.echo(f"  admin token    {mask_secret(runtime.admin_token)} (ADMIN_TOKEN)")
        click.echo(f"  inbound key    {mask_secret(runtime.api_key)} (the dashboard reveals it)")
        user = '"$API_KEY:"'
    click.echo(
        f"  try it:\n    curl -u {user} -H 'Content-Type: application/json' "
        f'{url}/v1/identify -d \'{{"userId": "u-1", "traits": {{"email": "ada@example.com"}}}}\'\n'
    )


@main.command("worker")
def worker_command() -> None:
    """Run the worker alone: journal processing (and outbound sending).

    On SQLite one worker runs: a second one says so and exits with an error.
    """
    from connector.service import worker

    try:
        with worker.sole_worker(get_environment().database_url):
            asyncio.run(_run_worker())
    except worker.AnotherWorker as refused:
        raise click.ClickException(str(refused)) from None


async def _run_worker() -> None:
    from connector.core.runtime import Runtime, settle_heap
    from connector.service import worker

    runtime = await Runtime.start(get_environment())
    settle_heap()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await worker.run_forever(runtime, stop)
    finally:
        await runtime.stop()


def imports_done() -> None:
    """The garbage collector, off while the command imported (connector/__main__.py), runs from here on; what
    the imports built is frozen out of its sweeps first (it lives as long as the process)."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


@contextlib.asynccontextmanager
async def _database() -> AsyncIterator["AsyncEngine"]:
    """An engine on DATABASE_URL (the direct connection) for one operator command, disposed afterwards."""
    from connector.core.db import create_engine

    database = get_environment().direct_database
    engine = create_engine(database.url, pooler=database.pooler)
    imports_done()
    try:
        yield engine
    finally:
        await engine.dispose()


@main.group()
def journal() -> None:
    """Inbound journal tools."""


@journal.command("retry-failed")
def journal_retry_failed() -> None:
    """Queue failed inbound messages again (after fixing what made them fail)."""

    async def run() -> int:
        from connector.flow.journal import retry_failed

        async with _database() as engine:
            return await retry_failed(engine)

    click.echo(f"{asyncio.run(run())} failed messages queued again")


@main.group()
def usage() -> None:
    """Product usage tools."""


@usage.command("rebuild")
def usage_rebuild() -> None:
    """Recompute product usage from the stored events (holds journal processing off meanwhile)."""

    async def run() -> int:
        from tqdm import tqdm

        from connector.profile import usage as product_usage

        async with _database() as engine:
            with tqdm(total=await product_usage.track_event_count(engine), unit="event", desc="usage") as bar:
                return await product_usage.rebuild(engine, bar.update)

    click.echo(f"product usage rebuilt: {asyncio.run(run())} rows")


@main.group()
def persona() -> None:
    """Persona scanner tools."""


@persona.command("rebuild")
def persona_rebuild() -> None:
    """Read every user's persona (seniority, department) again from the title, after the patterns changed;
    users whose persona changed are re-evaluated in segments and queued for sending."""

    async def run() -> int:
        from tqdm import tqdm

        from connector.core.settings_store import SettingsStore
        from connector.processing.persona_rescan import user_count
        from connector.service.use_cases import rescan_personas

        async with _database() as engine:
            settings = await SettingsStore(engine).current()
            with tqdm(total=await user_count(engine), unit="user", desc="persona") as bar:
                return await rescan_personas(engine, settings, bar.update)

    click.echo(f"personas rebuilt: {asyncio.run(run())} changed")


@main.group()
def retention() -> None:
    """Data lifecycle tools."""


@retention.command("run")
def retention_run() -> None:
    """Delete what the retention settings say has expired, now (the worker does it every RETENTION_INTERVAL_SECONDS)."""

    async def run() -> dict[str, int]:
        from tqdm import tqdm

        from connector.core.settings_store import SettingsStore
        from connector.service import retention as lifecycle

        async with _database() as engine:
            settings = await SettingsStore(engine).current()
            total = sum((await lifecycle.expired_counts(engine, settings)).values())
            with tqdm(total=total, unit="row", desc="retention") as bar:
                return await lifecycle.purge(engine, settings, on_batch=bar.update)

    purged = asyncio.run(run())
    click.echo("deleted: " + ", ".join(f"{count} {table}" for table, count in purged.items()))


@main.command()
@click.option("--segment", "segment_name", help="Only the members of this segment (user or account segment).")
@click.option("--force", is_flag=True, help="Send even what Segment already has (forget the delivered hashes).")
@click.option(
    "--added",
    is_flag=True,
    help="Also send the added event of segment_events to every current member of the segments it follows.",
)
def resync(segment_name: str | None, force: bool, added: bool) -> None:
    """Queue everyone in the outbound filter for sending (initial sync); the worker sends them."""

    async def run() -> tuple[int, int]:
        from tqdm import tqdm

        from connector.core.settings_store import SettingsStore
        from connector.outbound import resync as outbound_resync

        async with _database() as engine:
            settings = await SettingsStore(engine).current()
            try:
                with tqdm(unit="profile", desc="resync") as bar:
                    queued = await outbound_resync.resync(
                        engine, settings, segment_name, force, bar.update, lambda total: bar.reset(total=total)
                    )
            except outbound_resync.UnknownSegment as problem:
                raise click.UsageError(str(problem)) from None
            if not added:
                return queued, 0
            total = await outbound_resync.count_added(engine, settings, segment_name)
            with tqdm(total=total, unit="member", desc="added events") as bar:
                return queued, await outbound_resync.resync_added(engine, settings, segment_name, bar.update)

    queued, members = asyncio.run(run())
    click.echo(f"{queued} profiles queued for sending")
    if added:
        click.echo(f"{members} added events queued for sending")


@main.command()
@click.option("--id", "ids", type=int, multiple=True, help="Only these dead letters (repeatable); default: all.")
def replay(ids: tuple[int, ...]) -> None:
    """Send dead letters to Segment again, with their original messageIds."""

    async def run() -> dict[str, int]:
        from connector.core.settings_store import SettingsStore
        from connector.service.use_cases import replay_dead_letters

        async with _database() as engine:
            try:
                return await replay_dead_letters(engine, await SettingsStore(engine).current(), list(ids) or None)
            except ValueError as problem:
                raise click.UsageError(str(problem)) from None

    counts = asyncio.run(run())
    click.echo(f"{counts['replayed']} dead letters delivered, {counts['failed']} failed")


@main.group("segment-workspace")
def segment_workspace() -> None:
    """Connect a Segment workspace through its Public API (what the Setup page does), and test the round trip."""


@contextlib.asynccontextmanager
async def _runtime() -> AsyncIterator["Runtime"]:
    """A runtime on DATABASE_URL for one command: the settings, the API key and the environment it needs."""
    from connector.core.credentials import API_KEY, ensure_credential
    from connector.core.runtime import Runtime
    from connector.core.settings_store import SettingsStore

    env = get_environment()
    async with _database() as engine:
        await ensure_credential(engine, API_KEY, env.connector_api_key, "hsc_")  # as a process's start does
        yield Runtime(env=env, engine=engine, settings=SettingsStore(engine))


def _workspace_call(call: Callable[["Runtime"], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run a workspace use case; its refusal is the command's one-line error, after what it did."""
    from connector.service.workspace import WorkspaceError

    async def run() -> dict[str, Any]:
        async with _runtime() as runtime:
            return await call(runtime)

    try:
        return asyncio.run(run())
    except WorkspaceError as error:
        for change in error.done:
            click.echo(f"done before it failed: {_change_line(change)}")
        raise click.ClickException(error.message) from None


def _source_label(entry: dict[str, Any]) -> str:
    """A source as people read it: its name and id (the id alone when the name is not known)."""
    name, source_id = entry.get("source_name"), entry.get("source_id")
    return f"{name} ({source_id})" if name and name != source_id else str(source_id)


def _change_line(change: dict[str, Any]) -> str:
    if change.get("kind") == "source":
        return f"HTTP API source {change.get('slug')} ({change.get('source_id')}): {change['action']}"
    if change.get("kind") == "write_key":
        return f"a write key on the HTTP API source {change.get('source_id')} (it had none): {change['action']}"
    return f"{_source_label(change)}: Webhooks destination {change.get('destination_id')} {change['action']}"


TOKEN_OPTION = click.option(
    "--token",
    envvar="SEGMENT_PUBLIC_API_TOKEN",
    help="A Public API token of the workspace (default: $SEGMENT_PUBLIC_API_TOKEN, else the one stored). Prefer "
    "the variable: an option's value is visible to every user of the machine in the process list.",
)
REGION_OPTION = click.option(
    "--region",
    type=click.Choice(["us", "eu"]),
    help="The workspace's region (default: the connected workspace's, else us).",
)


@segment_workspace.command("sources")
@TOKEN_OPTION
@REGION_OPTION
def segment_workspace_sources(token: str | None, region: str | None) -> None:
    """List the workspace's sources (their ids are what `connect --source` takes)."""
    from connector.service.workspace import sources_page

    cursor: str | None = None
    while True:
        page = _workspace_call(functools.partial(sources_page, token=token, region=region, cursor=cursor))
        for source in page["sources"]:
            marks = "  [chosen]" if source["chosen"] else ""
            marks += "  [the connector sends back through it: always connected]" if source["way_back"] else ""
            click.echo(f"{source['id']}  {source['name']}  ({source['kind']}){marks}")
        cursor = page["next"]
        if not cursor:
            return


@segment_workspace.command("connect")
@TOKEN_OPTION
@REGION_OPTION
@click.option(
    "--source",
    "sources",
    multiple=True,
    required=True,
    help="The id of a source (see `sources`) whose data the connector receives. Repeat it for each source: "
    "those left out lose the destination the connector put there.",
)
def segment_workspace_connect(token: str | None, region: str | None, sources: tuple[str, ...]) -> None:
    """Put one Webhooks destination to this connector on each source, and take the write key of the HTTP API
    source it sends back through (run it again to repair what drifted)."""
    from connector.service.workspace import connect

    answer = _workspace_call(lambda runtime: connect(runtime, token, region, list(sources)))
    click.echo(f"workspace {answer['workspace']['name']} ({answer['region']})")
    click.echo(f"HTTP API source {answer['source']['slug']}: {answer['source']['action']}")
    for change in [*answer["destinations"], *answer["done"]]:
        if change.get("kind") == "write_key":
            click.echo(_change_line(change))
        elif change.get("action") in ("deleted", "unhooked"):
            chosen = any(d["source_id"] == change["source_id"] for d in answer["destinations"])
            why = "a second one on the source: never two" if chosen else "no longer chosen"
            click.echo(f"{_change_line(change)} ({why})")
        elif change.get("kind") is None:  # a destination as it now is
            click.echo(_change_line(change))
    click.echo("settings changed: " + (", ".join(answer["settings_changed"]) or "none"))


@segment_workspace.command("status")
def segment_workspace_status() -> None:
    """Whether the destinations and the source still match, re-read from the Public API."""
    from connector.service.workspace import status

    answer = _workspace_call(status)
    if not answer["connected"]:
        click.echo("no Segment workspace is connected")
        return
    click.echo(f"workspace {answer['workspace']['name']} ({answer['region']}), token {answer['token']}")
    for item in [answer["source"], *answer["destinations"]]:
        name = (
            f"HTTP API source {item['slug']} ({item['id']})"
            if "slug" in item
            else f"destination {item['destination_id']} on {_source_label(item)}"
        )
        click.echo(f"{name}: {'matches' if item['matches'] else 'drifted: ' + '; '.join(item['problems'])}")
    if not answer["matches"]:
        raise click.ClickException("something drifted: run `connector segment-workspace connect` again to repair it")


@segment_workspace.command("disconnect")
def segment_workspace_disconnect() -> None:
    """Delete the destinations the connector manages; the source and the write key stay; the token is forgotten."""
    from connector.service.workspace import disconnect

    answer = _workspace_call(disconnect)
    unhooked = f", {len(answer['unhooked'])} left with their other hooks" if answer["unhooked"] else ""
    click.echo(f"deleted {len(answer['deleted'])} destinations{unhooked}; the token is forgotten")


@segment_workspace.command("test")
@click.option(
    "--wait",
    "wait_seconds",
    type=click.FloatRange(1, 120),
    default=30.0,
    show_default=True,
    help="Seconds to wait for the test event to come back.",
)
def segment_workspace_test(wait_seconds: float) -> None:
    """Send one test event through the write key and wait for Segment to deliver it back to /segment (a running
    `connector serve` receives it)."""
    from connector.service import round_trip

    async def run() -> dict[str, Any]:
        async with _runtime() as runtime:
            return await round_trip.run(runtime.engine, await runtime.settings.current(), wait_seconds)

    answer = asyncio.run(run())
    if answer["outcome"] != "works":
        raise click.ClickException(answer["message"])
    click.echo(answer["message"])
