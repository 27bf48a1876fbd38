"""Short secrets are masked too: a secret of 8 characters or fewer never comes back in full, nor in part,
wherever secrets are masked (the settings API, the status API, `connector serve` in production, the logs).
"""

import json
import subprocess
import sys

import httpx
import pytest

from connector.web.app import create_app
from tests.support.app import admin_auth, make_env

SHORT_SECRETS = ["a", "abc", "wxyz", "12345678"]


def assert_hidden(shown: str | None, secret: str) -> None:
    """Not the secret, and not one character of it: a short secret has nothing to spare."""
    assert shown, f"{secret!r} was dropped instead of masked"
    assert shown != secret
    assert not set(shown) & set(secret), f"{shown!r} reveals part of {secret!r}"


@pytest.mark.parametrize("secret", SHORT_SECRETS)
async def test_a_short_write_key_and_shared_secret_are_masked_on_every_settings_read(client, runtime, secret):
    response = await client.put(
        "/api/settings", headers=admin_auth(), json={"write_key": secret, "shared_secret": secret}
    )
    assert response.status_code == 200, response.text
    read = await client.get("/api/settings", headers=admin_auth())
    for body in (response.json(), read.json()):
        assert_hidden(body["settings"]["write_key"], secret)
        assert_hidden(body["settings"]["shared_secret"], secret)
    if len(secret) > 1:
        assert secret not in response.text and secret not in read.text
    # What was stored is the secret itself, and sending the masked value back keeps it.
    masked = read.json()["settings"]
    again = await client.put(
        "/api/settings",
        headers=admin_auth(),
        json={"write_key": masked["write_key"], "shared_secret": masked["shared_secret"]},
    )
    assert again.status_code == 200, again.text
    stored = await runtime.settings.current()
    assert (stored.write_key, stored.shared_secret) == (secret, secret)


@pytest.mark.parametrize("secret", SHORT_SECRETS)
async def test_a_short_api_key_is_masked_in_the_status(database_url, secret):
    app = create_app(make_env(database_url, connector_api_key=secret))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            response = await http.get("/api/status", headers=admin_auth())
    assert response.status_code == 200, response.text
    assert_hidden(response.json()["api_key"], secret)


@pytest.mark.parametrize(("admin_token", "api_key"), [("abc", "12345678"), ("12345678", "wxyz"), ("q", "zz")])
async def test_short_secrets_are_masked_in_the_production_welcome(database_url, capsys, admin_token, api_key):
    from connector import cli

    env = make_env(database_url, CONNECTOR_ENV="production", admin_token=admin_token, connector_api_key=api_key)
    assert env.environment == "production"
    await cli._print_welcome(env)
    printed = capsys.readouterr().out
    lines = {
        line.split()[0] + " " + line.split()[1]: line
        for line in printed.splitlines()
        if line.strip().startswith(("admin token", "inbound key"))
    }
    assert set(lines) == {"admin token", "inbound key"}, printed
    for name, secret in (("admin token", admin_token), ("inbound key", api_key)):
        shown = lines[name].split()[2]
        assert_hidden(shown, secret)
    assert "abc" not in printed and "12345678" not in printed and "wxyz" not in printed


def test_short_secrets_are_redacted_from_the_logs():
    secrets = {
        "write_key": "abc",
        "writeKey": "wxyz",
        "shared_secret": "12345678",
        "api_key": "a1",
        "admin_token": "tk",
        "authorization": "Basic q",
    }
    program = (
        "import sys, json; from connector.core.logs import configure_logging, get_logger; "
        "configure_logging('INFO'); get_logger().info('settings.saved', **json.loads(sys.argv[1]))"
    )
    result = subprocess.run(
        [sys.executable, "-c", program, json.dumps(secrets)], capture_output=True, text=True, timeout=60, check=True
    )
    logged = json.loads(result.stdout.strip().splitlines()[-1])
    assert logged["event"] == "settings.saved"
    for name, secret in secrets.items():
        assert name in logged and logged[name] != secret and secret not in result.stdout, name
