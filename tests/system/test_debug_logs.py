"""No log level prints a secret: a real `connector serve` (its worker inside) at LOG_LEVEL=DEBUG, the most any
operator turns on, taken through what handles every secret (the admin token signing in, the settings saved with a
write key and a shared secret, a signed /segment and a /v1/batch with the API key, a send to Segment with the write
key), its whole output captured and searched for each secret in full.
"""

import hashlib
import hmac
import json

import httpx

from tests.support.app import ADMIN_TOKEN, API_KEY, admin_auth, basic_auth, free_port, wait_until
from tests.support.processes import Process, process_env, wait_for_http

SHARED_SECRET = "shared-secret-0f9e8d7c6b5a"


async def test_at_log_level_debug_no_secret_reaches_the_log(database_url, segment_api, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = Process(
        ["serve", "--port", str(port)],
        process_env(database_url, LOG_LEVEL="DEBUG", RUN_WORKER_IN_WEB="true"),
        tmp_path / "serve.log",
    )
    try:
        wait_for_http(url, server)
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            settings = {
                "write_key": segment_api.write_key,
                "segment_api_host": segment_api.url,
                "shared_secret": SHARED_SECRET,
                "synchronized_segments": ["ALL"],
                "send_events": ["ALL"],
            }
            assert (await http.put("/api/settings", headers=admin_auth(), json=settings)).status_code == 200
            body = json.dumps({"type": "identify", "userId": "webhook-user", "traits": {"plan": "pro"}}).encode()
            signature = hmac.new(SHARED_SECRET.encode(), body, hashlib.sha1).hexdigest()
            headers = {**basic_auth(), "X-Signature": signature, "Content-Type": "application/json"}
            assert (await http.post("/segment", headers=headers, content=body)).status_code == 200
            batch = {"batch": [{"type": "track", "userId": "webhook-user", "event": "Clicked", "messageId": "t-1"}]}
            assert (await http.post("/v1/batch", headers=basic_auth(), json=batch)).status_code == 200
            assert (await http.get("/api/status", headers=admin_auth())).status_code == 200
            assert (await http.get("/api/settings", headers=admin_auth())).status_code == 200
            await wait_until(lambda: "t-1" in segment_api.message_ids(), timeout=60, interval=0.2)
    finally:
        server.terminate()

    output = server.output()
    assert '"level": "debug"' in output  # the level was on: the search below covers what debug prints
    secrets = {
        "API key": API_KEY,
        "admin token": ADMIN_TOKEN,
        "write key": segment_api.write_key,
        "shared secret": SHARED_SECRET,
    }
    assert [name for name, secret in secrets.items() if secret in output] == []
