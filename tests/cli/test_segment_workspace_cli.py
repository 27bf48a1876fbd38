"""`connector segment-workspace sources|connect|status|disconnect|test` against the fake Public API."""

from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from connector.cli import main
from connector.core.environment import get_environment
from tests.support.app import API_KEY
from tests.support.fake_public_api import OWNER_TOKEN, FakePublicApi


@pytest.fixture
def run(database_url: str, public_api: FakePublicApi, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    for name, value in {
        "DATABASE_URL": database_url,
        "ADMIN_TOKEN": "x",
        "CONNECTOR_API_KEY": API_KEY,
        "PUBLIC_URL": "https://connector.example.com",
        "SEGMENT_PUBLIC_API_URL": public_api.url,
        "LOG_LEVEL": "WARNING",
    }.items():
        monkeypatch.setenv(name, value)
    get_environment.cache_clear()

    def invoke(*args: str) -> Result:
        return CliRunner().invoke(main, ["segment-workspace", *args])

    yield invoke
    get_environment.cache_clear()


def test_connect_status_and_disconnect_from_a_terminal(run, public_api):
    listed = run("sources", "--token", OWNER_TOKEN)
    assert listed.exit_code == 0, listed.output
    website = next(s["id"] for s in public_api.sources.values() if s["name"] == "Website")
    assert f"{website}  Website  (Javascript)" in listed.output
    assert "Backend" in listed.output  # on the second page
    connected = run("connect", "--token", OWNER_TOKEN, "--source", website)
    assert connected.exit_code == 0, connected.output
    assert "workspace Acme (us)" in connected.output
    assert "HTTP API source hull-segment-connector: created" in connected.output
    assert "settings changed: write_key" in connected.output
    assert OWNER_TOKEN not in connected.output
    status = run("status")
    assert status.exit_code == 0 and "drifted" not in status.output
    (destination,) = public_api.on_source(website)
    destination["enabled"] = False
    drifted = run("status")
    assert drifted.exit_code == 1
    assert f"destination {destination['id']} on Website ({website}): drifted: disabled" in drifted.output
    assert run("connect", "--source", website).exit_code == 0  # the stored token repairs it
    assert run("status").exit_code == 0
    gone = run("disconnect")
    assert gone.exit_code == 0 and "deleted 2 destinations" in gone.output
    assert "no Segment workspace is connected" in run("status").output


def test_connect_names_each_source_and_says_what_it_deleted(run, public_api):
    website, mobile = (
        next(s["id"] for s in public_api.sources.values() if s["name"] == n) for n in ("Website", "Mobile app")
    )
    assert run("connect", "--token", OWNER_TOKEN, "--source", website, "--source", mobile).exit_code == 0
    (kept,), (dropped,) = public_api.on_source(website), public_api.on_source(mobile)
    again = run("connect", "--source", website)
    assert again.exit_code == 0, again.output
    assert f"Website ({website}): Webhooks destination {kept['id']} unchanged" in again.output
    assert f"Mobile app ({mobile}): Webhooks destination {dropped['id']} deleted (no longer chosen)" in again.output


def test_the_help_says_what_the_options_default_to_and_that_sources_left_out_are_disconnected(run):
    connect = " ".join(run("connect", "--help").output.split())  # as read, whatever the terminal's width
    assert "default: the connected workspace's, else us" in connect
    assert "Repeat it for each source: those left out lose the destination" in connect
    assert "Seconds to wait for the test event to come back" in " ".join(run("test", "--help").output.split())


def test_a_refusal_is_one_line_in_words(run, public_api):
    refused = run("connect", "--token", "sgp_wrong", "--source", "src-1")
    assert refused.exit_code == 1
    assert "Segment refused the token (401)" in refused.output
    assert "sgp_wrong" not in refused.output


def test_the_round_trip_without_a_write_key_blames_the_write_key(run):
    result = run("test", "--wait", "1")
    assert result.exit_code == 1 and "no write key is set" in result.output
