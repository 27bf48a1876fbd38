"""What Heroku reads (app.json, Procfile, .python-version, uv.lock) agrees with what the app does,
and a real process on a dyno (DYNO set, no CONNECTOR_ENV) keeps every secret out of its log stream."""

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connector.cli import main
from connector.core.db import create_engine
from connector.core.environment import Environment
from connector.core.models import Credential
from tests.support.app import free_port
from tests.support.processes import Process, wait_for_http, wait_for_log

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "adm_dyno-admin-token-0123456789abcdef"
PORT = "41234"


def app_json() -> dict[str, Any]:
    return json.loads((ROOT / "app.json").read_text())


def procfile() -> dict[str, str]:
    lines = [line for line in (ROOT / "Procfile").read_text().splitlines() if line.strip()]
    return dict(line.split(":", 1) for line in lines)


def config_vars_read() -> set[str]:
    """Every environment variable the app reads: Environment's fields, by alias where they have one."""
    return {str(field.validation_alias or name).upper() for name, field in Environment.model_fields.items()}


def test_app_json_provisions_postgres_a_generated_admin_token_and_both_dynos():
    manifest = app_json()
    assert 3 <= len(manifest["name"]) <= 30 and len(manifest["description"]) <= 140  # Heroku's schema limits
    plans = [addon if isinstance(addon, str) else addon["plan"] for addon in manifest["addons"]]
    assert [plan.split(":")[0] for plan in plans] == ["heroku-postgresql"]
    env = manifest["env"]
    assert env["ADMIN_TOKEN"]["generator"] == "secret" and "value" not in env["ADMIN_TOKEN"]
    assert env["CONNECTOR_ENV"]["value"] == "production"
    assert env["CONNECTOR_API_KEY"]["required"] is False and "value" not in env["CONNECTOR_API_KEY"]
    assert {name: spec["quantity"] for name, spec in manifest["formation"].items()} == {"web": 1, "worker": 1}
    assert set(manifest["formation"]) == set(procfile()) - {"release"}


def test_every_config_var_app_json_names_is_one_the_app_reads():
    assert set(app_json()["env"]) <= config_vars_read()
    assert {"DATABASE_URL", "ADMIN_TOKEN", "CONNECTOR_ENV", "CONNECTOR_API_KEY", "DYNO"} <= config_vars_read()


def parse(command: str):
    argv = shlex.split(command.replace("$PORT", PORT))
    assert argv[0] == "connector"
    subcommand = main.get_command(None, argv[1])  # type: ignore[arg-type]
    assert subcommand is not None, argv[1]
    return argv[1], subcommand.make_context(argv[1], argv[2:]).params


def test_the_procfile_serves_on_every_interface_at_port_trusting_the_router_and_migrates_on_release():
    processes = {name: parse(command) for name, command in procfile().items()}
    assert processes["web"] == (
        "serve",
        {"no_worker": True, "host": "0.0.0.0", "port": int(PORT), "forwarded_allow_ips": "*"},
    )
    assert processes["worker"] == ("worker", {})
    assert processes["release"] == ("migrate", {})


def test_heroku_installs_the_locked_dependencies_on_a_python_the_project_supports():
    # The buildpack runs `uv sync --locked`: uv.lock must pin what pyproject.toml asks for.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    locked = {package["name"]: package for package in lock["package"]}
    [this] = [package for package in lock["package"] if package["name"] == project["name"]]
    assert this["source"] == {"editable": "."}  # the project itself is installed: `connector` exists
    for requirement in project["dependencies"]:
        name = re.split(r"[\[<>=~! ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert "version" in locked[name], name  # pinned
    assert lock["requires-python"] == project["requires-python"]
    major, minor = map(int, (ROOT / ".python-version").read_text().strip().split("."))
    assert (major, minor) >= tuple(map(int, project["requires-python"].removeprefix(">=").split(".")))


def test_every_install_compiles_bytecode_so_no_process_compiles_its_modules_at_start():
    # `uv sync` reads [tool.uv] wherever it runs in the project: Heroku's build, `make install`, `make run`, CI.
    # A dyno or container with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module at each start.
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["compile-bytecode"] is True


def dyno_env(database_url: str, dyno: str, **extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in ("CONNECTOR_ENV", "ADMIN_TOKEN", "CONNECTOR_API_KEY")
    }
    return {**env, "DATABASE_URL": database_url, "DYNO": dyno, "LOG_LEVEL": "INFO", **extra}


async def generated_api_key(database_url: str) -> str:
    engine = create_engine(database_url)
    try:
        async with engine.connect() as conn:
            table = Credential.__table__
            return (await conn.execute(sa.select(table.c.value).where(table.c.name == "api_key"))).scalar_one()
    finally:
        await engine.dispose()


async def test_on_a_dyno_without_connector_env_no_secret_reaches_the_log_stream(database_url, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    web = Process(
        ["serve", "--port", str(port)], dyno_env(database_url, "web.1", ADMIN_TOKEN=ADMIN_TOKEN), tmp_path / "web.log"
    )
    try:
        wait_for_http(url, web)
        api_key = await generated_api_key(database_url)  # no CONNECTOR_API_KEY: generated on first start
        with httpx.Client(base_url=url, timeout=10) as http:
            assert http.post("/v1/identify", auth=(api_key, ""), json={"userId": "u-dyno"}).status_code == 200
            assert http.post("/v1/identify", auth=(api_key + "x", ""), json={"userId": "u-2"}).status_code == 401
            assert http.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}).status_code == 200
            assert http.get("/api/settings", headers={"Authorization": "Bearer " + ADMIN_TOKEN[:-1]}).status_code == 401
    finally:
        web.terminate()
    worker = Process(["worker"], dyno_env(database_url, "worker.1", ADMIN_TOKEN=ADMIN_TOKEN), tmp_path / "worker.log")
    try:
        wait_for_log(worker, '"worker.start"')
    finally:
        worker.terminate()
    logs = web.output() + worker.output()
    assert "••••••••" + api_key[-4:] in logs and "••••••••" + ADMIN_TOKEN[-4:] in logs  # production's welcome
    for secret in (api_key, ADMIN_TOKEN, api_key[4:20], ADMIN_TOKEN[4:20]):
        assert secret not in logs


@pytest.mark.parametrize("command", [["migrate"], ["worker"], ["serve", "--no-worker"]])
def test_on_a_dyno_without_an_admin_token_every_process_refuses_to_start_and_names_it(database_url, tmp_path, command):
    api_key = "hsc_configured-api-key-0123456789"
    process = Process(command, dyno_env(database_url, "release.1", CONNECTOR_API_KEY=api_key), tmp_path / "out.log")
    try:
        assert process.popen.wait(timeout=30) == 1
    finally:
        process.kill()
    output = process.output()
    assert "ADMIN_TOKEN is required" in output and "DYNO" in output
    assert api_key not in output and api_key[4:14] not in output and "Traceback" not in output
