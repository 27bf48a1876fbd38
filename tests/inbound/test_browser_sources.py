"""Browser sources: analytics.js posting straight to /v1 from a website (CORS, short paths, text/plain bodies,
browser write keys, the CDN settings document, the per-key rate limit)."""

import gzip
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import sqlalchemy as sa

import connector.inbound.analytics_js
from connector.core.db import create_engine
from connector.core.logs import configure_logging
from connector.core.models import JournalEntry
from connector.inbound.project_settings import settings_document
from connector.inbound.writer import open_journal
from tests.support.api import put_settings
from tests.support.app import admin_auth, basic_auth, drain, free_port
from tests.support.inbound_cases import find_user

journal = JournalEntry.__table__
SHOP = "https://shop.example"
ELSEWHERE = "https://elsewhere.example"


async def create_key(client: httpx.AsyncClient, name: str = "website", **body: Any) -> dict[str, Any]:
    response = await client.post("/api/write-keys", headers=admin_auth(), json={"name": name, **body})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def beacon(key: str, **message: Any) -> dict[str, Any]:
    """What sendBeacon and a keepalive fetch post: the write key in the body, as text/plain."""
    return {
        "content": orjson.dumps({**message, "writeKey": key}),
        "headers": {"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP},
    }


async def journal_rows(runtime) -> list[Any]:
    async with runtime.engine.connect() as conn:
        return list(await conn.execute(sa.select(journal).order_by(journal.c.id)))


# --- CORS ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/t", "/v1/b", "/v1/track", "/v1/batch", "/v1/projects/k/settings"])
async def test_a_preflight_on_v1_is_granted_with_the_headers_analytics_js_sends(client, path):
    response = await client.options(
        path,
        headers={
            "Origin": SHOP,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        },
    )
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == SHOP
    assert response.headers["access-control-allow-methods"] == "POST, OPTIONS"
    allowed = {name.strip().lower() for name in response.headers["access-control-allow-headers"].split(",")}
    assert {"content-type", "authorization", "x-retry-count"} <= allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in response.headers["vary"].lower()


async def test_a_preflight_carries_no_key_so_it_is_granted_and_the_call_is_judged_by_its_key(client):
    key = (await create_key(client, allowed_origins=[SHOP]))["key"]
    preflight = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "authorization"}
    calls = []
    for origin, path in [(ELSEWHERE, "/v1/t"), (SHOP, "/v1/nowhere")]:
        granted = await client.options(path, headers={"Origin": origin, **preflight})
        assert (granted.status_code, granted.headers["access-control-allow-origin"]) == (204, origin)
        calls.append(await client.post(path, headers={"Origin": origin, **basic_auth(key)}, json={"userId": "u1"}))
    # The foreign origin's 403 goes without the grant (the browser keeps it from the page); the unknown path's 404
    # carries it, so the page can read what is wrong.
    assert [(call.status_code, call.headers.get("access-control-allow-origin")) for call in calls] == [
        (403, None),
        (404, SHOP),
    ]


async def test_every_v1_answer_to_a_browser_carries_the_grant_errors_included(client):
    key = (await create_key(client))["key"]
    headers = {"Origin": SHOP, **basic_auth(key)}
    answers = [
        await client.post("/v1/t", headers=headers, json={"userId": "u1", "event": "Clicked"}),
        await client.post("/v1/t", headers=headers, json={"userId": "u1"}),  # 400: no event
        await client.post("/v1/t", headers={"Origin": SHOP, **basic_auth("wrong")}, json={}),  # 401
        await client.post("/v1/nowhere", headers=headers, json={}),  # 404
        await client.get("/v1/track", headers=headers),  # 405
    ]
    assert [answer.status_code for answer in answers] == [200, 400, 401, 404, 405]
    assert [answer.headers.get("access-control-allow-origin") for answer in answers] == [SHOP] * 5


async def test_a_body_too_large_for_v1_is_refused_with_the_grant(client):
    key = (await create_key(client))["key"]
    batch = {"batch": [{"type": "track", "userId": "u1", "event": "E", "properties": {"x": "a" * 1000}}] * 600}
    headers = {"Origin": SHOP, "Content-Type": "application/json", **basic_auth(key)}
    plain = await client.post("/v1/b", headers=headers, content=orjson.dumps(batch))
    gzipped = await client.post(
        "/v1/b", headers={**headers, "Content-Encoding": "gzip"}, content=gzip.compress(orjson.dumps(batch))
    )
    assert [plain.status_code, gzipped.status_code] == [413, 413]
    assert [plain.headers.get("access-control-allow-origin"), gzipped.headers.get("access-control-allow-origin")] == [
        SHOP,
        SHOP,
    ]


async def test_storage_unavailable_is_a_503_a_website_can_read(app, client):
    key = (await create_key(client))["key"]
    dead = create_engine(f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/gone", pool_pre_ping=False)
    journal, app.state.journal = app.state.journal, open_journal(dead)
    try:
        response = await client.post(
            "/v1/t", headers={"Origin": SHOP, **basic_auth(key)}, json={"userId": "u1", "event": "E"}
        )
    finally:
        app.state.journal = journal
        await dead.dispose()
    assert response.status_code == 503, response.text
    assert response.headers["access-control-allow-origin"] == SHOP  # analytics.js sees a 5xx and retries


@pytest.mark.parametrize(
    ("method", "path"),
    [("OPTIONS", "/segment"), ("POST", "/segment"), ("OPTIONS", "/api/status"), ("GET", "/api/status")],
)
async def test_segment_and_the_admin_api_never_grant_cors(client, method, path):
    headers = {"Origin": SHOP, "Access-Control-Request-Method": "POST", **admin_auth()}
    response = await client.request(method, path, headers=headers)
    assert "access-control-allow-origin" not in response.headers
    assert response.status_code != 204


async def test_a_server_library_without_origin_gets_no_cors_headers(client):
    response = await client.post("/v1/track", headers=basic_auth(), json={"userId": "u1", "event": "E"})
    assert response.status_code == 200
    assert not [name for name in response.headers if name.startswith("access-control-")]


async def test_an_origin_outside_the_keys_allowed_origins_is_refused_without_a_grant(client, runtime):
    key = (await create_key(client, allowed_origins=[SHOP]))["key"]
    refused = await client.post(
        "/v1/t", headers={"Origin": ELSEWHERE, **basic_auth(key)}, json={"userId": "u1", "event": "E"}
    )
    assert refused.status_code == 403
    assert refused.json()["field"] == "Origin"
    assert "access-control-allow-origin" not in refused.headers
    allowed = await client.post(
        "/v1/t", headers={"Origin": SHOP, **basic_auth(key)}, json={"userId": "u1", "event": "E"}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == SHOP
    assert len(await journal_rows(runtime)) == 1


async def test_a_key_limited_to_some_sites_refuses_a_call_without_an_origin(client, runtime):
    key = (await create_key(client, allowed_origins=[SHOP]))["key"]
    response = await client.post("/v1/t", headers=basic_auth(key), json={"userId": "u1", "event": "E"})
    assert response.status_code == 403
    assert await journal_rows(runtime) == []


# --- the paths and bodies analytics.js sends ----------------------------------------------------------------

SHORT_PATHS = {
    "/v1/t": "track",
    "/v1/p": "page",
    "/v1/i": "identify",
    "/v1/g": "group",
    "/v1/s": "screen",
    "/v1/a": "alias",
}
MESSAGES: dict[str, dict[str, Any]] = {
    "track": {"userId": "u1", "event": "Viewed"},
    "page": {"anonymousId": "a1", "name": "Home"},
    "identify": {"userId": "u1", "traits": {"email": "u1@shop.example"}},
    "group": {"userId": "u1", "groupId": "g1"},
    "screen": {"userId": "u1", "name": "Main"},
    "alias": {"userId": "u1", "previousId": "a1"},
}


async def test_the_short_paths_take_the_call_they_name(client, runtime):
    key = (await create_key(client))["key"]
    for path, message_type in SHORT_PATHS.items():
        response = await client.post(path, headers={"Origin": SHOP, **basic_auth(key)}, json=MESSAGES[message_type])
        assert response.status_code == 200, (path, response.text)
    assert [row.type for row in await journal_rows(runtime)] == list(SHORT_PATHS.values())


async def test_the_short_batch_path_takes_a_batch(client, runtime):
    key = (await create_key(client))["key"]
    batch = [{"type": kind, **message} for kind, message in MESSAGES.items()]
    response = await client.post("/v1/b", headers={"Origin": SHOP, **basic_auth(key)}, json={"batch": batch})
    assert response.json() == {"success": True, "accepted": 6, "skipped": 0}


async def test_a_text_plain_body_with_the_write_key_inside_is_accepted_as_sendbeacon_sends_it(client, runtime):
    key = (await create_key(client))["key"]
    single = await client.post("/v1/t", **beacon(key, userId="u1", event="Left page"))
    batch = await client.post("/v1/b", **beacon(key, batch=[{"type": "page", "anonymousId": "a1"}]))
    assert (single.status_code, batch.status_code) == (200, 200)
    assert single.headers["access-control-allow-origin"] == SHOP
    await drain(runtime)
    assert await find_user(client, user_id="u1") is not None


async def test_a_delete_is_refused_on_v1_whatever_the_key(client, runtime):
    key = (await create_key(client))["key"]
    for credentials in (basic_auth(key), basic_auth()):
        single = await client.post(
            "/v1/batch", headers=credentials, json={"batch": [{"type": "delete", "userId": "u1"}]}
        )
        assert single.status_code == 400
        assert single.json()["rejected"][0]["field"] == "type"
        assert single.json()["rejected"][0]["status"] == 400
    shortcut = await client.post("/v1/t", headers=basic_auth(key), json={"type": "delete", "userId": "u1"})
    assert shortcut.status_code == 400
    assert await journal_rows(runtime) == []


async def test_a_delete_in_a_browser_batch_is_refused_alone(client, runtime):
    key = (await create_key(client))["key"]
    batch = [{"type": "track", "userId": "u1", "event": "E"}, {"type": "delete", "userId": "u1"}]
    response = await client.post("/v1/b", **beacon(key, batch=batch))
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert [(item["index"], item["field"]) for item in response.json()["rejected"]] == [(1, "type")]
    assert [row.type for row in await journal_rows(runtime)] == ["track"]


# --- write keys ---------------------------------------------------------------------------------------------


async def test_a_write_key_is_shown_once_then_masked(client):
    created = await create_key(client, allowed_origins=[SHOP])
    assert set(created) == {"id", "name", "key", "allowed_origins", "created_at"}
    assert created["name"] == "website"
    assert created["allowed_origins"] == [SHOP]
    assert len(created["key"]) > 30
    listed = (await client.get("/api/write-keys", headers=admin_auth())).json()["write_keys"]
    assert [key["id"] for key in listed] == [created["id"]]
    assert created["key"] not in str(listed)
    assert listed[0]["key"].endswith(created["key"][-4:])


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"name": ""},
        {"name": "x", "allowed_origins": ["shop.example"]},
        {"name": "x", "allowed_origins": ["https://shop.example/"]},
        {"name": "x", "extra": 1},
    ],
)
async def test_a_write_key_needs_a_name_and_real_origins(client, body):
    response = await client.post("/api/write-keys", headers=admin_auth(), json=body)
    assert response.status_code == 400
    assert "message" in response.json()


async def test_a_revoked_write_key_is_refused_at_once(client, runtime):
    created = await create_key(client)
    headers = {"Origin": SHOP, **basic_auth(created["key"])}
    assert (await client.post("/v1/t", headers=headers, json={"userId": "u1", "event": "E"})).status_code == 200
    assert (await client.delete(f"/api/write-keys/{created['id']}", headers=admin_auth())).status_code == 204
    after = await client.post("/v1/t", headers=headers, json={"userId": "u1", "event": "E"})
    assert after.status_code == 401
    assert (await client.get("/api/write-keys", headers=admin_auth())).json()["write_keys"] == []
    assert (await client.delete(f"/api/write-keys/{created['id']}", headers=admin_auth())).status_code == 404


async def test_a_write_key_opens_neither_segment_nor_the_admin_api(client):
    key = (await create_key(client))["key"]
    segment = await client.post(
        "/segment", headers=basic_auth(key), json={"type": "track", "userId": "u", "event": "E"}
    )
    assert segment.status_code == 401
    admin = await client.get("/api/write-keys", headers={"Authorization": f"Bearer {key}"})
    assert admin.status_code == 401


async def test_a_write_key_is_never_logged_in_full(client, capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging("DEBUG")  # the JSON lines a deployed process writes, at every level
    try:
        created = await create_key(client, allowed_origins=[SHOP])
        key = created["key"]
        await client.post("/v1/t", headers={"Origin": SHOP, **basic_auth(key)}, json={"userId": "u1", "event": "E"})
        await client.post("/v1/t", headers={"Origin": ELSEWHERE, **basic_auth(key)}, json={"userId": "u1"})
        await client.get(f"/v1/projects/{key}/settings", headers={"Origin": SHOP})
        await client.post("/segment", headers=basic_auth(key), json={"type": "track", "userId": "u", "event": "E"})
        await client.delete(f"/api/write-keys/{created['id']}", headers=admin_auth())
        await client.post("/v1/t", headers={"Origin": SHOP, **basic_auth(key)}, json={"userId": "u1", "event": "E"})
        logged = capsys.readouterr()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    # The connector's lines: the test's own client (httpx) logs each URL it requests, the settings' key included.
    lines = [line for line in (logged.out + logged.err).splitlines() if '"httpx.log"' not in line]
    assert any('"write_key.create"' in line for line in lines) and any('"write_key.revoke"' in line for line in lines)
    assert not [line for line in lines if key.removeprefix("hwk_")[:8] in line]


async def test_the_api_key_still_works_on_v1_for_server_libraries(client, runtime):
    response = await client.post("/v1/t", headers=basic_auth(), json={"userId": "u1", "event": "E"})
    assert response.status_code == 200
    assert [row.write_key_id for row in await journal_rows(runtime)] == [None]


async def test_each_message_records_the_write_key_that_sent_it(client, runtime):
    first, second = await create_key(client), await create_key(client)
    await client.post("/v1/t", headers=basic_auth(first["key"]), json={"userId": "u1", "event": "E"})
    await client.post("/v1/b", **beacon(second["key"], batch=[{"type": "page", "anonymousId": "a1"}] * 2))
    assert [row.write_key_id for row in await journal_rows(runtime)] == [first["id"], second["id"], second["id"]]
    assert {row.source for row in await journal_rows(runtime)} == {"api"}


# --- the settings analytics.js reads from its CDN -----------------------------------------------------------


async def test_the_cdn_settings_point_analytics_js_at_the_connector(client):
    key = (await create_key(client))["key"]
    response = await client.get(f"/v1/projects/{key}/settings", headers={"Origin": SHOP})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == SHOP
    segment_io = response.json()["integrations"]["Segment.io"]
    assert segment_io == {"apiKey": key, "apiHost": "testserver/v1", "protocol": "http"}


@pytest.mark.parametrize(
    ("public_url", "api_host", "protocol"),
    [
        ("https://connector.example", "connector.example/v1", "https"),
        ("https://connector.example/", "connector.example/v1", "https"),
        ("https://tools.example/segment-connector", "tools.example/segment-connector/v1", "https"),
        ("http://127.0.0.1:8000", "127.0.0.1:8000/v1", "http"),
    ],
)
def test_the_cdn_settings_name_the_connector_as_analytics_js_joins_host_and_path(public_url, api_host, protocol):
    # analytics.js posts to `${protocol}://${apiHost}/t`: apiHost carries the host and the path, not the scheme.
    document = settings_document("hwk_key", public_url)
    assert document["integrations"] == {"Segment.io": {"apiKey": "hwk_key", "apiHost": api_host, "protocol": protocol}}
    assert document["metrics"] == {"sampleRate": 0}  # nothing sent to api.segment.io


async def test_the_cdn_settings_of_an_unknown_or_revoked_key_are_404(client):
    created = await create_key(client)
    await client.delete(f"/api/write-keys/{created['id']}", headers=admin_auth())
    for key in ("hwk_unknown", created["key"], "test-api-key-0123456789"):
        assert (await client.get(f"/v1/projects/{key}/settings")).status_code == 404


# --- analytics.js served as Segment's CDN serves it --------------------------------------------------------


async def test_analytics_js_is_served_for_an_active_write_key_at_the_path_of_segments_cdn(client):
    key = (await create_key(client))["key"]
    answer = await client.get(f"/analytics.js/v1/{key}/analytics.min.js")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/javascript")
    assert answer.headers["cache-control"] == "public, max-age=300"  # a new version reaches pages within minutes
    assert b"analytics-next/bundles/" in answer.content  # the standalone build, which loads its parts from there
    assert len(answer.content) > 50_000


async def test_analytics_js_and_its_parts_are_sent_gzipped_to_a_browser_that_takes_it(client):
    served = Path(connector.inbound.analytics_js.__file__).with_name("analytics_next")
    key = (await create_key(client))["key"]
    part = next(served.glob("queryString.bundle.*.js")).name
    for path, file in (
        (f"/analytics.js/v1/{key}/analytics.min.js", "standalone.js"),
        (f"/analytics-next/bundles/{part}", part),
    ):
        raw = await client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
        assert raw.headers["content-encoding"] == "gzip"
        assert int(raw.headers["content-length"]) < (served / file).stat().st_size * 0.6  # what went over the wire
        assert raw.content == (served / file).read_bytes()  # httpx took the gzip off
        plain = await client.get(path, headers={"Accept-Encoding": "identity"})
        assert "content-encoding" not in plain.headers
        assert plain.content == (served / file).read_bytes()


async def test_analytics_js_for_an_unknown_or_revoked_key_is_404(client):
    created = await create_key(client)
    await client.delete(f"/api/write-keys/{created['id']}", headers=admin_auth())
    for key in ("hwk_unknown", created["key"], "test-api-key-0123456789"):
        answer = await client.get(f"/analytics.js/v1/{key}/analytics.min.js")
        assert answer.status_code == 404
        assert answer.json()["code"] == "not_found"


async def test_analytics_js_parts_are_cached_for_good_and_nothing_else_is_reachable_beside_them(client):
    served = Path(connector.inbound.analytics_js.__file__).with_name("analytics_next")
    name = next(served.glob("queryString.bundle.*.js")).name  # the part behind the ajs_ query string
    answer = await client.get(f"/analytics-next/bundles/{name}")
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "public, max-age=31536000, immutable"
    for path in ("../analytics_js.py", "..%2Fanalytics_js.py", "nothing.bundle.js"):
        assert (await client.get(f"/analytics-next/bundles/{path}")).status_code == 404


# --- the rate limit -----------------------------------------------------------------------------------------


async def test_past_the_rate_limit_a_write_key_gets_429_with_retry_after(client):
    await put_settings(client, write_key_rate_limit=2)
    key = (await create_key(client))["key"]
    headers = {"Origin": SHOP, **basic_auth(key)}
    answers = [await client.post("/v1/t", headers=headers, json={"userId": "u", "event": "E"}) for _ in range(20)]
    assert [answer.status_code for answer in answers[:2]] == [200, 200]
    limited = [answer for answer in answers if answer.status_code == 429]
    assert limited, "20 calls in a few seconds at 2 a second: some are refused"
    assert {answer.status_code for answer in answers} == {200, 429}
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].headers["access-control-allow-origin"] == SHOP
    # Retry-After is not CORS-safelisted: the page (analytics.js) reads it only if the grant exposes it.
    assert "retry-after" in limited[0].headers["access-control-expose-headers"].lower()
    api_key = [await client.post("/v1/t", headers=basic_auth(), json={"userId": "u", "event": "E"}) for _ in range(6)]
    assert {answer.status_code for answer in api_key} == {200}


def test_the_rate_limit_counts_each_key_in_one_second_windows():
    from connector.inbound.errors import InboundError
    from connector.inbound.rate_limit import RateLimiter

    limiter = RateLimiter()
    for _ in range(2):
        limiter.admit(1, 2, now=100.2)
    with pytest.raises(InboundError) as refused:
        limiter.admit(1, 2, now=100.9)
    assert refused.value.status == 429
    limiter.admit(2, 2, now=100.9)  # another key has its own count
    limiter.admit(1, 2, now=101.0)  # the next second starts again
    limiter.admit(1, 0, now=101.0)  # 0: no limit


async def test_the_overview_counts_the_messages_of_each_write_key_revoked_ones_included(client):
    shop, blog = [await create_key(client, name=name) for name in ("shop", "blog")]
    await create_key(client, name="unused")
    for _ in range(3):
        await client.post("/v1/t", headers=basic_auth(shop["key"]), json={"userId": "u1", "event": "E"})
    await client.post("/v1/b", **beacon(blog["key"], batch=[{"type": "page", "anonymousId": "a1"}] * 2))
    await client.post("/v1/t", headers=basic_auth(), json={"userId": "u1", "event": "E"})  # the API key: no key
    await client.delete(f"/api/write-keys/{blog['id']}", headers=admin_auth())
    overview = (await client.get("/api/overview", headers=admin_auth())).json()
    assert overview["write_keys"] == [
        {"id": shop["id"], "name": "shop", "revoked": False, "messages": 3},
        {"id": blog["id"], "name": "blog", "revoked": True, "messages": 2},
    ]
