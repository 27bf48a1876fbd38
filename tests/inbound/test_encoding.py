"""Content-Encoding on the inbound endpoints: gzip or none; anything else is refused with 415."""

import gzip
import zlib

import orjson
import pytest

from tests.support.app import basic_auth, drain
from tests.support.database import stored_counts

SEGMENT_BODY = orjson.dumps(
    [
        {"type": "identify", "userId": "enc-1", "traits": {"plan": "pro"}},
        {"type": "track", "userId": "enc-1", "event": "Signed Up"},
    ]
)
BATCH_BODY = orjson.dumps(
    {
        "batch": [
            {"type": "identify", "userId": "enc-1", "traits": {"plan": "pro"}},
            {"type": "track", "userId": "enc-1", "event": "Signed Up"},
        ]
    }
)
ENDPOINTS = {"/segment": SEGMENT_BODY, "/v1/batch": BATCH_BODY}


def encoded(body: bytes, encoding: str) -> bytes:
    """The body as a sender would compress it (deflate for real); other encodings are sent as-is."""
    return zlib.compress(body) if encoding == "deflate" else body


@pytest.mark.parametrize("encoding", ["br", "deflate", "compress", "zstd", "gzip, br", "identity, deflate", "BR"])
@pytest.mark.parametrize("path", list(ENDPOINTS))
async def test_an_unsupported_content_encoding_is_415_naming_content_encoding_and_stores_nothing(
    client, runtime, path, encoding
):
    response = await client.post(
        path,
        content=encoded(ENDPOINTS[path], encoding),
        headers={**basic_auth(), "Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert response.status_code == 415, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["field"] == "Content-Encoding"
    assert "Content-Encoding" in body["message"]
    assert body["code"] == "unsupported_encoding"
    await drain(runtime)
    assert set((await stored_counts(runtime)).values()) == {0}
    assert (await client.get("/healthz")).status_code == 200


@pytest.mark.parametrize("encoding", ["identity", "", "gzip", "x-gzip", "GZIP"])
@pytest.mark.parametrize("path", list(ENDPOINTS))
async def test_gzip_identity_or_no_content_encoding_is_accepted(client, runtime, path, encoding):
    body = gzip.compress(ENDPOINTS[path]) if "gzip" in encoding.lower() else ENDPOINTS[path]
    response = await client.post(
        path, content=body, headers={**basic_auth(), "Content-Type": "application/json", "Content-Encoding": encoding}
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 2
