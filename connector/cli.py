"""Command line: serve, worker, migrate, schema, and the operator tools."""

import asyncio
import signal
from pathlib import Path

import click
import uvicorn

from connector.config import get_environment
from connector.logs import configure_logging

SCHEMA_PATH = Path("settings.schema.json")


@click.group()
def main() -> None:
    """Hull-style bidirectional Segment connector."""
    configure_logging(get_environment().log_level)


@main.command()
def migrate() -> None:
    """Apply database migrations (the Procfile's release process)."""
    from connector.migrate import upgrade
    upgrade(get_environment().database_url)
    click.echo("database is at the latest migration")


@main.command()
@click.option("--output", type=click.Path(path_type=Path), default=SCHEMA_PATH, show_default=True)
def schema(output: Path) -> None:
    """Write settings.schema.json from the settings model."""
    from connector.settings import write_settings_schema
    write_settings_schema(output)
    click.echo(f"wrote {output}")


@main.command()
@click.option("--no-worker", is_flag=True, help="Do not run the worker inside the web process.")
def serve(no_worker: bool) -> None:
    """Run the web process (with the embedded worker unless RUN_WORKER_IN_WEB=false)."""
    env = get_environment()
    if no_worker:
        env.run_worker_in_web = False
    asyncio.run(_print_welcome(env))
    if env.web_concurrency > 1:
        uvicorn.run("connector.asgi:app", host=env.host, port=env.port, workers=env.web_concurrency,
                    log_level="warning", access_log=False)
    else:
        from connector.web.app import create_app
        uvicorn.run(create_app(env), host=env.host, port=env.port, log_level="warning", access_log=False)


async def _print_welcome(env) -> None:  # type: ignore[no-untyped-def]
    from connector.runtime import Runtime
    from connector.settings import mask_secret
    runtime = await Runtime.start(env)
    await runtime.stop()
    url = env.public_url or f"http://{env.host}:{env.port}"
    click.echo(f"\nSegment connector on {url}  (database: {env.database_url.split('://')[0]})")
    click.echo(f"  dashboard      {url}/")
    if env.environment == "development":
        click.echo(f"  admin token    {runtime.admin_token}")
    else:
        click.echo(f"  admin token    {mask_secret(runtime.admin_token)} (ADMIN_TOKEN)")
    click.echo(f"  inbound key    {runtime.api_key}")
    click.echo("  try it:\n    curl -u '" + runtime.api_key + ":' -H 'Content-Type: application/json' "
               f"{url}/v1/identify -d '{{\"userId\": \"u-1\", \"traits\": {{\"email\": \"ada@example.com\"}}}}'\n")


@main.command("worker")
def worker_command() -> None:
    """Run the worker alone: journal processing (and outbound sending)."""
    asyncio.run(_run_worker())


async def _run_worker() -> None:
    from connector import worker
    from connector.runtime import Runtime
    runtime = await Runtime.start(get_environment())
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await worker.run_forever(runtime, stop)
    finally:
        await runtime.stop()


@main.group()
def journal() -> None:
    """Inbound journal tools."""


@journal.command("retry-failed")
def journal_retry_failed() -> None:
    """Queue failed inbound messages again (after fixing what made them fail)."""
    async def run() -> int:
        from connector.db import create_engine
        from connector.processing.processor import retry_failed
        engine = create_engine(get_environment().database_url)
        try:
            return await retry_failed(engine)
        finally:
            await engine.dispose()
    click.echo(f"{asyncio.run(run())} failed messages queued again")
