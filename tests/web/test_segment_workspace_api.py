"""Connecting a Segment workspace through its Public API (POST/GET/DELETE /api/segment-workspace), against the
fake Public API (tests/support/fake_public_api.py) over real HTTP."""

import asyncio
import base64
import logging
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from connector.core.credentials import SEGMENT_PUBLIC_API_TOKEN, read_secret
from connector.core.environment import Environment
from connector.core.logs import configure_logging
from connector.core.models import Credential
from connector.service import public_api as public_api_client
from connector.web.app import create_app
from tests.support.app import API_KEY, admin_auth, make_env, wait_until
from tests.support.fake_public_api import OWNER_TOKEN, READ_ONLY_TOKEN, WEBHOOKS_ID, FakePublicApi

PUBLIC_URL = "https://connector.example.com"
HOOK = PUBLIC_URL + "/segment"
AUTHORIZATION = "Basic " + base64.b64encode(f"{API_KEY}:".encode()).decode()
# The tracking API hosts of Segment's regions, as its documentation gives them.
US_HOST, EU_HOST = "https://api.segment.io", "https://events.eu1.segmentapis.com"


@pytest.fixture
def env(database_url: str, public_api: FakePublicApi) -> Environment:
    return make_env(database_url, public_url=PUBLIC_URL, segment_public_api_url=public_api.url)


def source_id(public_api: FakePublicApi, name: str) -> str:
    return next(source["id"] for source in public_api.sources.values() if source["name"] == name)


async def connect(client: Any, *sources: str, **body: Any) -> Any:
    return await client.post(
        "/api/segment-workspace", headers=admin_auth(), json={"token": OWNER_TOKEN, "source_ids": list(sources), **body}
    )


async def settings_of(client: Any) -> dict[str, Any]:
    document: dict[str, Any] = (await client.get("/api/settings", headers=admin_auth())).json()["settings"]
    return document


def by_hand(
    public_api: FakePublicApi, destination_id: str, source: str, hooks: list[Any], enabled: bool = True
) -> None:
    """A Webhooks destination someone set up in Segment by hand."""
    public_api.destinations[destination_id] = {
        "id": destination_id,
        "name": "by hand",
        "enabled": enabled,
        "metadata": {"id": WEBHOOKS_ID, "name": "Webhooks"},
        "sourceId": source,
        "settings": {"hooks": hooks},
    }


def hooks_here(public_api: FakePublicApi, source: str) -> list[dict[str, Any]]:
    return [d for d in public_api.on_source(source) if any(h["hook"] == HOOK for h in d["settings"].get("hooks", []))]


async def test_connecting_puts_one_webhooks_destination_on_each_chosen_source_and_takes_the_write_key(
    client, public_api
):
    website, mobile = source_id(public_api, "Website"), source_id(public_api, "Mobile app")
    answer = await connect(client, website, mobile)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["workspace"]["name"] == "Acme"
    assert body["token"].endswith(OWNER_TOKEN[-4:]) and OWNER_TOKEN not in answer.text
    back = next(s for s in public_api.sources.values() if s["slug"] == "hull-segment-connector")
    assert back["metadata"]["name"] == "HTTP API"
    assert body["source"]["action"] == "created"
    for source in (website, mobile, back["id"]):
        (destination,) = public_api.on_source(source)
        assert destination["metadata"]["id"] == WEBHOOKS_ID  # "Webhooks", not "Webhooks (Actions)"
        assert destination["enabled"] is True
        assert destination["settings"] == {
            "globalHook": "",
            "hooks": [{"hook": HOOK, "headers": [{"key": "Authorization", "value": AUTHORIZATION}]}],
            "sharedSecret": "",  # unset: Segment's default
        }
    settings = await settings_of(client)
    assert settings["write_key"].endswith(back["writeKeys"][0][-4:])
    assert settings["segment_api_host"] == US_HOST
    # The catalogs were paged (two items a page: 5 destinations, 3 sources) to find "Webhooks" and "HTTP API".
    assert public_api.calls.count("GET /catalog/destinations") == 3
    assert public_api.calls.count("GET /catalog/sources") == 2


async def test_connecting_again_creates_deletes_and_patches_nothing(client, public_api):
    website = source_id(public_api, "Website")
    assert (await connect(client, website)).status_code == 200
    writes = len(public_api.writes())
    again = await connect(client, website)
    assert again.status_code == 200
    assert public_api.writes()[writes:] == []
    assert {d["action"] for d in again.json()["destinations"]} == {"unchanged"}
    assert again.json()["done"] == [] and again.json()["source"]["action"] == "found"


async def test_status_names_what_drifted_and_connecting_again_repairs_only_that(client, public_api):
    website, mobile = source_id(public_api, "Website"), source_id(public_api, "Mobile app")
    await connect(client, website, mobile)
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert status["connected"] is True and status["matches"] is True
    (edited,) = public_api.on_source(website)
    edited["enabled"] = False
    edited["settings"]["hooks"][0]["headers"] = []
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert status["matches"] is False
    drifted = {d["source_id"]: d["problems"] for d in status["destinations"]}
    assert drifted[website] == ["disabled", "its URL or Authorization header was changed"]
    assert drifted[mobile] == []
    writes = len(public_api.writes())
    repaired = await connect(client, *status["source_ids"])  # the stored token: no token in the body
    assert public_api.writes()[writes:] == [f"PATCH /destinations/{edited['id']}"]
    assert (await client.get("/api/segment-workspace", headers=admin_auth())).json()["matches"] is True
    assert repaired.json()["done"] == [
        {
            "kind": "destination",
            "action": "updated",
            "source_id": website,
            "source_name": "Website",
            "destination_id": edited["id"],
        }
    ]


async def test_an_integration_name_other_than_webhooks_is_drift_and_connecting_again_puts_it_back(client, public_api):
    """The loop flag names the destination Segment must skip: `integrations: {"Webhooks": false}`, else Segment
    delivers every outbound call back to /segment."""
    await connect(client, source_id(public_api, "Website"))
    await client.put("/api/settings", headers=admin_auth(), json={"integration_name": "Connector hook"})
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert status["matches"] is False
    assert status["source"]["problems"] == [
        "integration_name is not 'Webhooks': Segment would deliver the connector's own calls back"
    ]
    repaired = await connect(client, source_id(public_api, "Website"))
    assert repaired.json()["settings_changed"] == ["integration_name"]
    assert (await settings_of(client))["integration_name"] == "Webhooks"


async def test_a_webhooks_destination_already_pointing_here_is_adopted_and_never_doubled(client, public_api):
    website = source_id(public_api, "Website")
    for number in (1, 2):
        by_hand(public_api, f"by-hand-{number}", website, [{"hook": HOOK, "headers": []}])
    answer = await connect(client, website)
    assert answer.status_code == 200
    assert [d["id"] for d in hooks_here(public_api, website)] == ["by-hand-1"]
    assert answer.json()["destinations"][0] == {
        "source_id": website,
        "source_name": "Website",
        "destination_id": "by-hand-1",
        "action": "updated",
        "adopted": True,
    }


async def test_an_adopted_webhooks_destination_keeps_the_other_hooks_it_delivers_to(client, public_api):
    """A destination set up by hand may hold up to five hooks; the connector's is one of them, the others are
    someone else's: adopting it changes only the connector's hook, and connecting again changes nothing."""
    website = source_id(public_api, "Website")
    others = [{"hook": "https://crm.example.com/segment", "headers": [{"key": "X-Token", "value": "crm"}]}]
    by_hand(public_api, "by-hand", website, [*others, {"hook": HOOK, "headers": []}])
    assert (await connect(client, website)).status_code == 200
    hooks = public_api.destinations["by-hand"]["settings"]["hooks"]
    assert [hook for hook in hooks if hook["hook"] != HOOK] == others
    assert [hook for hook in hooks if hook["hook"] == HOOK] == [
        {"hook": HOOK, "headers": [{"key": "Authorization", "value": AUTHORIZATION}]}
    ]
    assert (await client.get("/api/segment-workspace", headers=admin_auth())).json()["matches"] is True
    writes = len(public_api.writes())
    assert (await connect(client, website)).status_code == 200
    assert public_api.writes()[writes:] == []


async def test_a_second_destination_pointing_here_loses_only_its_hook_here_when_it_holds_others(client, public_api):
    """Never two deliveries to /segment; but the second destination's other hooks are someone else's."""
    website = source_id(public_api, "Website")
    crm = {"hook": "https://crm.example.com/segment", "headers": []}
    for number, hooks in ((1, [{"hook": HOOK, "headers": []}]), (2, [crm, {"hook": HOOK, "headers": []}])):
        by_hand(public_api, f"by-hand-{number}", website, hooks, enabled=False)
    answer = await connect(client, website)
    assert answer.status_code == 200, answer.text
    assert [d["id"] for d in hooks_here(public_api, website)] == ["by-hand-1"]
    second = public_api.destinations["by-hand-2"]
    assert second["settings"]["hooks"] == [crm] and second["enabled"] is False  # left as it was, but for our hook
    assert {"kind": "destination", "action": "unhooked", "source_id": website, "destination_id": "by-hand-2"} in (
        answer.json()["done"]
    )


async def test_an_adopted_destination_let_go_keeps_its_other_hooks_on_disconnect_and_when_no_longer_chosen(
    client, public_api
):
    website, mobile = source_id(public_api, "Website"), source_id(public_api, "Mobile app")
    crm = {"hook": "https://crm.example.com/segment", "headers": []}
    for source in (website, mobile):
        by_hand(public_api, f"by-hand-{source}", source, [crm, {"hook": HOOK, "headers": []}])
    await connect(client, website, mobile)
    dropped = await connect(client, website)
    assert {"action": "unhooked", "destination_id": f"by-hand-{mobile}"}.items() <= dropped.json()["done"][0].items()
    gone = await client.delete("/api/segment-workspace", headers=admin_auth())
    assert [d["destination_id"] for d in gone.json()["unhooked"]] == [f"by-hand-{website}"]
    assert len(gone.json()["deleted"]) == 1  # the one on the way-back source, which the connector created
    for source in (website, mobile):
        assert public_api.destinations[f"by-hand-{source}"]["settings"]["hooks"] == [crm]


async def test_a_hook_edited_in_a_destination_the_connector_created_is_put_back_not_kept_beside_it(client, public_api):
    website = source_id(public_api, "Website")
    await connect(client, website)
    (created,) = public_api.on_source(website)
    created["settings"]["hooks"][0]["hook"] = "https://typo.example.com/segment"
    await connect(client, website)
    assert created["settings"]["hooks"] == [
        {"hook": HOOK, "headers": [{"key": "Authorization", "value": AUTHORIZATION}]}
    ]


async def test_a_source_no_longer_chosen_loses_the_destination_the_connector_put_there(client, public_api):
    website, mobile = source_id(public_api, "Website"), source_id(public_api, "Mobile app")
    await connect(client, website, mobile)
    answer = await connect(client, website)
    assert public_api.on_source(mobile) == []
    assert len(public_api.on_source(website)) == 1
    assert [d["action"] for d in answer.json()["done"]] == ["deleted"]


async def test_an_existing_http_api_source_of_the_connectors_name_is_used_and_the_eu_host_follows_the_region(
    client, public_api
):
    existing = public_api.add_source("hull-segment-connector", "meta-http-api")
    answer = await connect(client, source_id(public_api, "Website"), region="eu")
    assert answer.status_code == 200
    assert answer.json()["source"] | {"action": "found"} == answer.json()["source"]
    assert "POST /sources" not in public_api.calls
    settings = await settings_of(client)
    assert settings["write_key"].endswith(existing["writeKeys"][0][-4:])
    assert settings["segment_api_host"] == EU_HOST


async def test_a_source_of_the_connectors_name_without_a_write_key_gets_one_and_the_settings_take_it(
    client, public_api
):
    existing = public_api.add_source("hull-segment-connector", "meta-http-api", keyless=True)
    answer = await connect(client, source_id(public_api, "Website"))
    assert answer.status_code == 200, answer.text
    assert {"kind": "write_key", "action": "created", "source_id": existing["id"]} in answer.json()["done"]
    [key] = existing["writeKeys"]
    assert (await settings_of(client))["write_key"].endswith(key[-4:])

    writes = len(public_api.writes())
    assert (await connect(client, source_id(public_api, "Website"))).status_code == 200
    assert public_api.writes()[writes:] == [] and existing["writeKeys"] == [key]  # one key, made once


@pytest.mark.parametrize(
    ("token", "field", "words"),
    [
        ("sgp_wrong", "token", "refused the token (401)"),
        (READ_ONLY_TOKEN, "token", "lacks a scope"),
        ("sgp_pasted with a space", "token", "not a Segment token"),
        ("sgp_é", "token", "not a Segment token"),  # never sent: a header holds ASCII only
    ],
)
async def test_a_bad_token_or_a_missing_scope_is_a_400_in_words_and_saves_nothing(
    client, public_api, token, field, words
):
    answer = await connect(client, source_id(public_api, "Website"), token=token)
    assert answer.status_code == 400
    assert answer.json()["field"] == field and words in answer.json()["message"]
    assert token not in answer.text
    assert (await settings_of(client))["write_key"] is None
    assert (await client.get("/api/segment-workspace", headers=admin_auth())).json()["connected"] is False


async def test_an_unknown_source_is_a_400_naming_it_before_anything_is_changed(client, public_api):
    answer = await connect(client, source_id(public_api, "Website"), "src-nope")
    assert answer.status_code == 400
    assert answer.json()["field"] == "source_ids" and "src-nope" in answer.json()["message"]
    assert public_api.writes() == []


async def test_a_source_segment_no_longer_finds_is_a_400_naming_it_and_nothing_is_changed(client, public_api):
    """Listed, then gone when its destinations are read (deleted in Segment meanwhile): Segment's 404."""
    website = source_id(public_api, "Website")
    public_api.fail(404, count=1, prefix=f"GET /sources/{website}/connected-destinations")
    answer = await connect(client, website)
    assert answer.status_code == 400
    assert answer.json()["field"] == "source_ids"
    assert f"Segment found nothing at GET /sources/{website}/connected-destinations (404)" in answer.json()["message"]
    assert public_api.writes() == [] and answer.json()["done"] == []


async def test_throttling_is_waited_out_after_retry_after(client, public_api):
    public_api.fail(429, count=2, prefix="GET /catalog/destinations", retry_after=0)
    answer = await connect(client, source_id(public_api, "Website"))
    assert answer.status_code == 200
    assert public_api.calls.count("GET /catalog/destinations") == 5  # two refused, then its three pages


async def test_throttling_that_never_ends_is_segment_failing_a_502(client, public_api):
    public_api.fail(429, count=50, prefix="GET /", retry_after=0)
    answer = await connect(client, "src-1")
    assert answer.status_code == 502 and "kept throttling" in answer.json()["message"]
    assert public_api.calls.count("GET /") == 5  # the first call and four retries


async def test_with_a_shared_secret_each_destination_signs_with_it(client, public_api):
    await client.put("/api/settings", headers=admin_auth(), json={"shared_secret": "s3cret-shared-value"})
    website = source_id(public_api, "Website")
    await connect(client, website)
    (destination,) = public_api.on_source(website)
    assert destination["settings"]["sharedSecret"] == "s3cret-shared-value"
    await client.put("/api/settings", headers=admin_auth(), json={"shared_secret": "another-shared-value"})
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert {entry["source_id"]: entry["problems"] for entry in status["destinations"]}[website] == [
        "its shared secret differs"
    ]


async def test_a_shared_secret_segment_answers_masked_is_not_drift_and_not_patched_again(client, public_api):
    public_api.mask_secrets = True  # read back as "••••••••••alue", as Segment shows a secret setting
    await client.put("/api/settings", headers=admin_auth(), json={"shared_secret": "s3cret-shared-value"})
    website = source_id(public_api, "Website")
    await connect(client, website)
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert {entry["source_id"]: entry["problems"] for entry in status["destinations"]}[website] == []
    writes = len(public_api.writes())
    await connect(client, website)
    assert public_api.writes()[writes:] == []
    await client.put("/api/settings", headers=admin_auth(), json={"shared_secret": "another-shared-secret"})
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert {entry["source_id"]: entry["problems"] for entry in status["destinations"]}[website] == [
        "its shared secret differs"
    ]


async def test_a_second_connect_while_one_is_under_way_is_refused_and_the_source_keeps_one_destination(
    client, public_api
):
    website = source_id(public_api, "Website")
    public_api.stall(3.0, count=1, prefix="GET /")  # the first connect is still reading the workspace...
    first = asyncio.create_task(connect(client, website))
    await wait_until(lambda: public_api.calls)
    second = await connect(client, website)  # ...when a second admin clicks Connect
    assert second.status_code == 409, second.text
    assert "another connect or disconnect" in second.json()["message"]
    disconnect = await client.delete("/api/segment-workspace", headers=admin_auth())
    assert disconnect.status_code == 409, disconnect.text
    assert (await first).status_code == 200
    assert len(hooks_here(public_api, website)) == 1
    assert (await connect(client, website)).status_code == 200  # given back once the first was done


async def test_a_connect_that_failed_gives_the_next_one_its_turn_at_once(client, public_api):
    website = source_id(public_api, "Website")
    assert (await connect(client, website, token="not-a-token-segment-knows")).status_code == 400
    public_api.fail(503, count=1, prefix="GET /catalog")
    assert (await connect(client, website)).status_code == 502
    assert (await connect(client, website)).status_code == 200


async def test_segment_failing_midway_answers_502_with_what_was_done_and_a_rerun_completes_it(client, public_api):
    website, mobile, backend = (source_id(public_api, name) for name in ("Website", "Mobile app", "Backend"))
    await connect(client, website)
    settings_before = await settings_of(client)
    public_api.fail(503, count=1, prefix="POST /destinations", after=1)  # the first new one is created, not the second
    answer = await connect(client, website, mobile, backend)
    assert answer.status_code == 502
    assert "nothing was saved in the settings" in answer.json()["message"]
    assert answer.json()["done"] == [
        {
            "kind": "destination",
            "action": "created",
            "source_id": mobile,
            "source_name": "Mobile app",
            "destination_id": public_api.on_source(mobile)[0]["id"],
        }
    ]
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert status["source_ids"] == [website]  # the state is the last complete connect's
    rerun = await connect(client, website, mobile, backend)
    assert rerun.status_code == 200
    assert [len(hooks_here(public_api, s)) for s in (website, mobile, backend)] == [1, 1, 1]
    assert [d["action"] for d in rerun.json()["destinations"]][:3] == ["unchanged", "unchanged", "created"]
    assert (await settings_of(client))["write_key"] == settings_before["write_key"]


async def test_segment_down_on_a_first_connect_leaves_the_settings_untouched(client, public_api):
    public_api.fail(500, count=1, prefix="POST /destinations")
    answer = await connect(client, source_id(public_api, "Website"))
    assert answer.status_code == 502
    assert [d["action"] for d in answer.json()["done"]] == ["created"]  # the HTTP API source
    assert (await settings_of(client))["write_key"] is None
    rerun = await connect(client, source_id(public_api, "Website"))
    assert rerun.status_code == 200 and rerun.json()["source"]["action"] == "found"


async def test_a_status_segment_cannot_answer_says_why_and_keeps_what_the_last_connect_saved(client, public_api):
    website = source_id(public_api, "Website")
    await connect(client, website)
    public_api.fail(503, count=1000, prefix="GET")
    status = (await client.get("/api/segment-workspace", headers=admin_auth())).json()
    assert status["connected"] is True and status["workspace"]["name"] == "Acme"
    assert status["error"] == "Segment's Public API failed (503) (GET /); try again later"
    assert [entry["source_id"] for entry in status["destinations"]] == [website, status["source"]["id"]]
    assert "matches" not in status and status["token"].endswith(OWNER_TOKEN[-4:])
    public_api.fail(503, count=1000, prefix="DELETE")
    refused = await client.delete("/api/segment-workspace", headers=admin_auth())
    assert refused.status_code == 502
    assert refused.json()["message"].endswith("the token is kept: disconnecting again completes it")


async def test_a_public_api_that_does_not_answer_is_a_502(client, public_api, monkeypatch):
    monkeypatch.setattr(public_api_client, "TIMEOUT_SECONDS", 0.3)
    public_api.stall(2.0, count=1, prefix="GET /")
    answer = await connect(client, source_id(public_api, "Website"))
    assert answer.status_code == 502 and "did not answer in time" in answer.json()["message"]


async def test_without_public_url_connect_refuses_and_says_why(database_url, public_api):
    application = create_app(make_env(database_url, segment_public_api_url=public_api.url))
    async with application.router.lifespan_context(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answer = await connect(http, source_id(public_api, "Website"))
    assert answer.status_code == 409
    assert answer.json()["field"] == "PUBLIC_URL" and "PUBLIC_URL" in answer.json()["message"]
    assert public_api.calls == []


async def test_disconnect_deletes_the_managed_destinations_keeps_the_source_and_write_key_and_forgets_the_token(
    client, public_api, runtime
):
    website = source_id(public_api, "Website")
    public_api.destinations["someone-elses"] = {
        "id": "someone-elses",
        "enabled": True,
        "metadata": {"id": "meta-amplitude", "name": "Amplitude"},
        "sourceId": website,
        "settings": {},
    }
    await connect(client, website)
    write_key = (await settings_of(client))["write_key"]
    answer = await client.delete("/api/segment-workspace", headers=admin_auth())
    assert answer.status_code == 200
    assert [d["id"] for d in public_api.on_source(website)] == ["someone-elses"]
    assert any(s["slug"] == "hull-segment-connector" for s in public_api.sources.values())
    assert (await settings_of(client))["write_key"] == write_key
    assert await read_secret(runtime.engine, SEGMENT_PUBLIC_API_TOKEN) is None
    async with runtime.engine.connect() as conn:
        names = (await conn.execute(sa.select(Credential.__table__.c.name))).scalars().all()
    assert SEGMENT_PUBLIC_API_TOKEN not in names
    assert (await client.get("/api/segment-workspace", headers=admin_auth())).json()["connected"] is False
    assert (await client.delete("/api/segment-workspace", headers=admin_auth())).status_code == 409


async def test_the_sources_are_listed_a_page_at_a_time(client, public_api):
    seen, cursor = [], None
    for _ in range(5):
        body = {"token": OWNER_TOKEN, **({"cursor": cursor} if cursor else {})}
        page = (await client.post("/api/segment-workspace/sources", headers=admin_auth(), json=body)).json()
        seen += [source["name"] for source in page["sources"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == ["Website", "Mobile app", "Backend"]


async def test_the_token_never_reaches_the_log_even_at_debug(client, public_api, capfd):
    configure_logging("DEBUG")
    try:
        await connect(client, source_id(public_api, "Website"))
        await client.get("/api/segment-workspace", headers=admin_auth())
        await client.delete("/api/segment-workspace", headers=admin_auth())
    finally:
        configure_logging("WARNING")
        logging.getLogger().setLevel(logging.WARNING)
    out, err = capfd.readouterr()
    # The level was on for the calls that carry the token: httpx logged each request to the Public API.
    assert f"HTTP Request: GET {public_api.url}" in out
    assert OWNER_TOKEN not in out + err
