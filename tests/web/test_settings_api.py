"""GET/PUT /api/settings, the admin token, and the checked-in settings.schema.json."""

import json
from pathlib import Path
from typing import Any

import pytest

from connector.core.settings import SECTIONS, ConnectorSettings, render_settings_schema
from tests.support.app import admin_auth

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "settings.schema.json"
WRITE_KEY = "wk_live_0123456789abcdefWXYZ"
SHARED_SECRET = "shared-secret-9876"


async def get_settings(client) -> dict[str, Any]:
    response = await client.get("/api/settings", headers=admin_auth())
    assert response.status_code == 200, response.text
    return response.json()


async def put_settings(client, **values):
    return await client.put("/api/settings", headers=admin_auth(), json=values)


async def test_defaults_before_any_save(client):
    body = await get_settings(client)
    assert body == {"version": 0, "settings": ConnectorSettings().model_dump()}


async def test_secrets_are_masked_on_every_read(client):
    response = await put_settings(client, write_key=WRITE_KEY, shared_secret=SHARED_SECRET)
    assert response.status_code == 200
    for body in (response.json(), await get_settings(client)):
        settings = body["settings"]
        assert settings["write_key"].endswith("WXYZ") and WRITE_KEY not in settings["write_key"]
        assert settings["shared_secret"].endswith("9876") and SHARED_SECRET not in settings["shared_secret"]
    raw = (await client.get("/api/settings", headers=admin_auth())).text
    assert WRITE_KEY[:-4] not in raw and SHARED_SECRET[:-4] not in raw


async def test_round_tripping_the_masked_secret_keeps_it(client, runtime):
    await put_settings(client, write_key=WRITE_KEY, shared_secret=SHARED_SECRET)
    document = (await get_settings(client))["settings"]
    response = await put_settings(client, **{**document, "handle_accounts": True})
    assert response.status_code == 200, response.text
    stored = await runtime.settings.current()
    assert stored.write_key == WRITE_KEY and stored.shared_secret == SHARED_SECRET and stored.handle_accounts

    assert (await put_settings(client, write_key="wk_new_key_ABCDEFGH1234")).status_code == 200
    assert (await runtime.settings.current()).write_key == "wk_new_key_ABCDEFGH1234"
    assert (await put_settings(client, shared_secret=None)).status_code == 200
    assert (await runtime.settings.current()).shared_secret is None


async def test_versions_increase_with_each_save(client):
    versions = []
    for value in (True, False, True):
        response = await put_settings(client, handle_accounts=value)
        versions.append(response.json()["version"])
    assert versions == [1, 2, 3]
    body = await get_settings(client)
    assert body["version"] == 3 and body["settings"]["handle_accounts"] is True


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"handle_pages": "sometimes"}, "handle_pages"),
        ({"segment_api_host": "not a url"}, "segment_api_host"),
        ({"synchronized_segments": ["ok", "  "]}, "synchronized_segments"),
        ({"send_events": "Order Completed"}, "send_events"),
        ({"connector_name": ""}, "connector_name"),
        ({"no_such_setting": 1}, "no_such_setting"),
        ({"handle_accounts": True, "write_key": "x" * 300}, "write_key"),
    ],
)
async def test_a_bad_value_is_400_naming_the_field_and_changes_nothing(client, values, field):
    await put_settings(client, handle_screens=False)
    before = await get_settings(client)
    response = await put_settings(client, **values)
    assert response.status_code == 400, response.text
    assert field in response.json()["message"]
    assert response.json()["errors"][0]["field"] == field
    assert await get_settings(client) == before


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"text"'])
async def test_a_malformed_document_is_400(client, body):
    response = await client.put("/api/settings", headers=admin_auth(), content=body)
    assert response.status_code == 400
    assert response.json()["field"] == "body"
    assert (await get_settings(client))["version"] == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/settings"),
        ("PUT", "/api/settings"),
        ("GET", "/api/users?user_id=u1"),
        ("GET", "/api/users/1/events"),
        ("GET", "/api/accounts?group_id=g1"),
        ("GET", "/api/status"),
        ("POST", "/api/api-key/reveal"),
        ("POST", "/api/api-key/rotate"),
        ("GET", "/api/openapi.json"),
    ],
)
async def test_admin_endpoints_need_the_bearer_token(client, runtime, method, path):
    for headers in ({}, admin_auth("wrong-token"), {"Authorization": "Basic dGVzdDo="}, {"Authorization": "Bearer"}):
        response = await client.request(method, path, headers=headers, json={"handle_accounts": True})
        assert response.status_code == 401, headers
        assert response.headers["www-authenticate"] == "Bearer"
    assert (await runtime.settings.current()).handle_accounts is False


async def test_status_masks_the_api_key(client, runtime):
    body = (await client.get("/api/status", headers=admin_auth())).json()
    assert body["api_key"].endswith(runtime.api_key[-4:]) and runtime.api_key not in body["api_key"]


def test_checked_in_schema_is_up_to_date():
    assert SCHEMA_FILE.read_text() == render_settings_schema(), "run `connector schema` and commit the result"


def test_schema_documents_every_setting():
    schema = json.loads(SCHEMA_FILE.read_text())
    assert schema["x-sections"] == SECTIONS and len(SECTIONS) == 6
    assert set(schema["properties"]) == set(ConnectorSettings.model_fields)
    defaults = ConnectorSettings().model_dump()
    for name, field in schema["properties"].items():
        assert field.get("title") and field.get("description"), name
        assert field["section"] in SECTIONS, name
        assert field["default"] == defaults[name], name
    assert {name for name, field in schema["properties"].items() if field.get("writeOnly")} == {
        "write_key",
        "shared_secret",
    }
    assert {field["section"] for field in schema["properties"].values()} == set(SECTIONS)


def test_schema_validates_the_defaults_and_refuses_unknown_settings():
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads(SCHEMA_FILE.read_text())
    jsonschema.Draft202012Validator(schema).validate(ConnectorSettings().model_dump())
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(schema).validate({"no_such_setting": True})


def test_retention_settings_have_the_documented_defaults():
    defaults = ConnectorSettings().model_dump()
    assert (
        defaults["journal_retention_days"],
        defaults["event_retention_days"],
        defaults["activity_retention_days"],
        defaults["dead_letter_retention_days"],
    ) == (7, 0, 30, 30)


@pytest.mark.parametrize(
    "name, value",
    [
        ("journal_retention_days", 0),
        ("event_retention_days", -1),
        ("activity_retention_days", 0),
        ("dead_letter_retention_days", "thirty"),
    ],
)
async def test_a_bad_retention_setting_is_refused_naming_it(client, runtime, name, value):
    response = await client.put("/api/settings", headers=admin_auth(), json={name: value})
    assert response.status_code == 400 and name in response.text
    assert getattr(await runtime.settings.current(), name) == ConnectorSettings().model_dump()[name]


async def test_a_read_that_began_before_a_save_and_ended_after_it_does_not_bring_the_old_settings_back(client, runtime):
    """The worker of a web process reads the settings all the time: a read whose query ran before a save
    committed ends with the version before it, while the save's answer already said the new one is in force."""
    icp = {"rules": [{"rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}, "points": 10}]}
    before = await runtime.settings.current_version()
    response = await put_settings(client, icp={**icp, "good_at": 10, "medium_at": 5})
    assert response.status_code == 200, response.text

    runtime.settings.remember(before)  # what that read ends with

    assert (await get_settings(client))["settings"]["icp"] == {**icp, "good_at": 10, "medium_at": 5}
    assert (await runtime.settings.current()).icp is not None


# --- settings that name segments ----------------------------------------------------------------------


async def create_segments(client) -> None:
    for name, entity, rule in [
        ("Pro users", "user", {"attribute": "traits.plan", "op": "eq", "value": "pro"}),
        ("Pro trials", "user", {"attribute": "traits.plan", "op": "eq", "value": "trial"}),
        ("Big accounts", "account", {"attribute": "traits.employees", "op": "gt", "value": 100}),
    ]:
        response = await client.post(
            "/api/segments", headers=admin_auth(), json={"name": name, "entity": entity, "rule": rule}
        )
        assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("values", "field", "message", "suggestions"),
    [
        (
            {"synchronized_segments": ["ALL", "Pro userz"]},
            "synchronized_segments",
            "no user segment named 'Pro userz'; did you mean 'Pro users'?",
            ["Pro users"],
        ),
        (
            {"synchronized_segments": ["Big accounts"]},
            "synchronized_segments",
            "'Big accounts' is an account segment; this list takes user segments",
            [],
        ),
        (
            {"synchronized_account_segments": ["big acounts"]},
            "synchronized_account_segments",
            "no account segment named 'big acounts'; did you mean 'Big accounts'?",
            ["Big accounts"],
        ),
        (
            {"synchronized_account_segments": ["Pro users"]},
            "synchronized_account_segments",
            "'Pro users' is a user segment; this list takes account segments",
            [],
        ),
        (
            {"segment_events": [{"segment": "Nope", "added": "Nope Entered"}]},
            "segment_events.0.segment",
            "no segment named 'Nope' (the segments: 'Big accounts', 'Pro trials', 'Pro users')",
            [],
        ),
    ],
)
async def test_a_setting_naming_an_unknown_segment_is_refused_with_the_closest_names_and_nothing_is_stored(
    client, values, field, message, suggestions
):
    await create_segments(client)
    before = await get_settings(client)
    response = await put_settings(client, handle_accounts=True, **values)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["message"] == f"{field}: {message}"
    assert body["field"] == field
    [error] = body["errors"]
    assert error["field"] == field and error["message"] == message and error["suggestions"] == suggestions
    assert await get_settings(client) == before


async def test_all_and_existing_segments_are_saved_and_a_name_already_saved_is_not_questioned_again(client):
    await create_segments(client)
    response = await put_settings(
        client,
        synchronized_segments=["ALL", "Pro users"],
        synchronized_account_segments=["Big accounts"],
        segment_events=[{"segment": "Big accounts", "added": "Became Big"}],
    )
    assert response.status_code == 200, response.text
    assert response.json()["settings"]["synchronized_segments"] == ["ALL", "Pro users"]
    # A save of something else sends the whole form back: the names it holds pass again.
    settings = (await get_settings(client))["settings"]
    response = await put_settings(client, **{**settings, "handle_pages": False})
    assert response.status_code == 200, response.text


async def test_with_no_segments_yet_the_refusal_says_to_create_one(client):
    response = await put_settings(client, synchronized_segments=["Paying"])
    assert response.status_code == 400
    assert response.json()["message"] == (
        "synchronized_segments: no user segment named 'Paying': there are no user segments yet "
        "(create one on the Segments page)"
    )
    assert (await get_settings(client))["version"] == 0


@pytest.mark.parametrize(
    ("values", "field", "label", "message"),
    [
        (
            {"segment_api_host": "api.segment.io"},
            "segment_api_host",
            "Segment API host",
            "must be a URL such as https://api.segment.io",
        ),
        (
            {"segment_events": '[{"segment": "VIP",'},
            "segment_events",
            "Segment events",
            "must be a list of entries, each naming a segment and its events",
        ),
        (
            {"synchronized_segments": "ALL"},
            "synchronized_segments",
            "User segments to send",
            "must be a list of segment names",
        ),
        ({"handle_pages": "sometimes"}, "handle_pages", "Store page calls", "must be true or false"),
        (
            {"journal_retention_days": 0},
            "journal_retention_days",
            "Keep processed journal messages (days)",
            "must be at least 1",
        ),
        ({"event_retention_days": "30 days"}, "event_retention_days", "Keep events (days)", "must be a whole number"),
        ({"connector_name": ""}, "connector_name", "Connector name", "must not be empty"),
        ({"write_key": "x" * 300}, "write_key", "Segment write key", "must have at most 256 characters"),
        ({"no_such_setting": 1}, "no_such_setting", "no_such_setting", "is not a setting"),
        (
            {"synchronized_properties": ["email", 7]},
            "synchronized_properties.1",
            "User attributes to send, entry 2",
            'must be an attribute name or a mapping {"from": attribute, "to": name}',
        ),
        (
            {"synchronized_properties": [{"from": "traits.plan"}]},
            "synchronized_properties.0.to",
            "User attributes to send, entry 1, Name in Segment",
            "is required",
        ),
        (
            {"icp": "strong"},
            "icp",
            "Ideal customer profile",
            "must be an object with rules, good_at, medium_at",
        ),
        (
            {"icp": {"rules": [], "good_at": 10, "medium_at": 20}},
            "icp.medium_at",
            "Ideal customer profile, Medium from",
            "must not be above the good score (10)",
        ),
    ],
)
async def test_a_refused_value_is_explained_in_words_under_the_field_s_title(client, values, field, label, message):
    response = await put_settings(client, **values)
    assert response.status_code == 400, response.text
    assert response.json()["errors"] == [{"field": field, "label": label, "message": message}]
    assert response.json()["message"] == f"{field}: {message}"
