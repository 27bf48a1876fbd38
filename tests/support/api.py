"""Requests to the connector's HTTP API as the tests make them, each asserting that it was answered as expected.

The inbound side with the API key (`basic_auth`), the admin side with the admin token (`admin_auth`).
"""

from typing import Any

import httpx

from connector.core.runtime import Runtime
from tests.support.app import admin_auth, basic_auth, drain


async def post_batch(client: httpx.AsyncClient, *messages: dict[str, Any]) -> httpx.Response:
    """Messages posted to /v1/batch, answered 200."""
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": list(messages)})
    assert response.status_code == 200, response.text
    return response


async def post_batch_accepted(client: httpx.AsyncClient, *messages: dict[str, Any]) -> httpx.Response:
    """Messages posted to /v1/batch, every one accepted (answered 200, none rejected)."""
    response = await client.post("/v1/batch", headers=basic_auth(), json={"batch": list(messages)})
    assert response.status_code == 200 and "rejected" not in response.json(), response.text
    return response


async def send_and_process(client: httpx.AsyncClient, runtime: Runtime, *messages: dict[str, Any]) -> None:
    """Journal the messages in this order (every one accepted), then process them."""
    await post_batch_accepted(client, *messages)
    await drain(runtime)


async def post_call(client: httpx.AsyncClient, kind: str, **message: Any) -> httpx.Response:
    """One message posted to /v1/<kind> (identify, track, group, ...), answered 200."""
    response = await client.post(f"/v1/{kind}", headers=basic_auth(), json=message)
    assert response.status_code == 200, response.text
    return response


async def put_settings(client: httpx.AsyncClient, **values: Any) -> None:
    """Settings saved through PUT /api/settings, answered 200."""
    response = await client.put("/api/settings", headers=admin_auth(), json=values)
    assert response.status_code == 200, response.text


async def create_segment(client: httpx.AsyncClient, name: str, rule: dict[str, Any], entity: str = "user") -> int:
    """A segment made through the admin API: its initial members come from the real rule engine."""
    response = await client.post(
        "/api/segments", headers=admin_auth(), json={"name": name, "entity": entity, "rule": rule}
    )
    assert response.status_code == 201, response.text
    segment_id: int = response.json()["id"]
    return segment_id
