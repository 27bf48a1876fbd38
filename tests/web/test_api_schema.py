"""The admin API keeps its word: schemathesis generates requests from /api/openapi.json.

Every operation of the document is called with data generated from its own parameters and
bodies, against the connector on a real socket (with its worker, over a database that holds
a user, an account, events and a segment). Every answer must be no 5xx, and have a status
code, content type, headers and body that the document declares for that operation.
"""

import time
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.result import Ok

from tests.support.app import admin_auth, basic_auth
from tests.support.fake_public_api import FakePublicApi

# Not positive_data_acceptance: some rules cannot be said in OpenAPI 3.0 parameters (GET /api/users
# takes exactly one of user_id, anonymous_id, email), so a schema-valid request may rightly be a 400.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

SEED = [
    {"type": "identify", "userId": "u1", "anonymousId": "a1", "traits": {"email": "ann@acme.com", "plan": "pro"}},
    {"type": "track", "userId": "u1", "event": "Order Completed", "properties": {"feature": "export"}},
    {"type": "group", "userId": "u1", "groupId": "g1", "traits": {"domain": "acme.com", "employees": 12}},
]


@pytest.fixture
def server(live_server_factory: Any, public_api: FakePublicApi) -> Any:
    # The Segment workspace routes reach the fake Public API (a generated token is refused there: a 400).
    server = live_server_factory(
        run_worker_in_web=True, public_url="https://connector.example.com", segment_public_api_url=public_api.url
    )
    with httpx.Client(base_url=server.url, timeout=10) as http:
        assert http.put("/api/settings", headers=admin_auth(), json={"handle_accounts": True}).status_code == 200
        assert http.post("/v1/batch", headers=basic_auth(), json={"batch": SEED}).status_code == 200
        response = http.post(
            "/api/segments",
            headers=admin_auth(),
            json={"name": "Pro", "rule": {"attribute": "traits.plan", "op": "eq", "value": "pro"}},
        )
        assert response.status_code == 201, response.text
        deadline = time.monotonic() + 15
        while http.get("/api/users", headers=admin_auth(), params={"user_id": "u1"}).status_code != 200:
            assert time.monotonic() < deadline, "the worker did not process the seed"
            time.sleep(0.1)
    return server


@pytest.fixture
def operations(server: Any) -> list[Any]:
    with httpx.Client(base_url=server.url, timeout=10) as http:
        document = http.get("/api/openapi.json", headers=admin_auth()).json()
    schema = schemathesis.openapi.from_dict(document)
    found = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        found.append(result.ok())
    assert len(found) >= 10, [f"{o.method} {o.path}" for o in found]
    return found


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(data=st.data())
def test_every_admin_operation_answers_as_its_openapi_document_says(server, operations, data):
    operation = data.draw(st.sampled_from(operations), label="operation")
    case = data.draw(operation.as_strategy(), label="case")
    case.call_and_validate(base_url=server.url, headers=admin_auth(), checks=CHECKS)
