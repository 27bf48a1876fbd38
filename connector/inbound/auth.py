"""Who may write: the API key as Basic user name (or writeKey), a browser write key on /v1, and the optional
HMAC signature."""

import base64
import hashlib
import hmac

import orjson
from starlette.requests import Request

from connector.core.credentials import secrets_match
from connector.core.runtime import Runtime
from connector.inbound import write_keys
from connector.inbound.cors import refuse_grant
from connector.inbound.errors import InboundError
from connector.inbound.rate_limit import RateLimiter


def basic_auth_user(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and non-ASCII in the header
        return None
    return decoded.partition(":")[0]


def require_key(given: str | None, api_key: str) -> None:
    if given is None:
        raise InboundError(401, "missing credentials: send the API key as the Basic auth user name")
    if not secrets_match(given, api_key):
        raise InboundError(401, "invalid API key")


async def v1_sender(request: Request, runtime: Runtime, given: str | None) -> int | None:
    """Who may post to /v1: the API key (server libraries; None) or an active browser write key (its id).
    A write key's allowed_origins are checked against the request's Origin (403, and no CORS grant), then
    its rate limit (429)."""
    api_key = await runtime.settings.api_key()
    if given is None or not given.startswith(write_keys.PREFIX) or secrets_match(given, api_key):
        require_key(given, api_key)
        return None
    key = await write_keys.find(runtime.engine, given)
    if key is None:
        raise InboundError(401, "invalid write key (unknown or revoked)")
    if not key.allows(request.headers.get("origin")):
        refuse_grant(request.scope)
        raise InboundError(403, "this write key does not allow this Origin (see its allowed_origins)", field="Origin")
    limiter: RateLimiter = request.app.state.rate_limiter
    limiter.admit(key.id, (await runtime.settings.current()).write_key_rate_limit)
    return key.id


def require_signature(request: Request, raw_body: bytes, document: object, shared_secret: str) -> None:
    """X-Signature is hex HMAC-SHA1 of the raw body; for an Actions batch, of its first element."""
    signature = request.headers.get("x-signature", "").strip().lower()
    if not signature:
        raise InboundError(401, "missing X-Signature header (a shared secret is configured)", field="X-Signature")
    candidates = [raw_body]
    if isinstance(document, list) and document:
        candidates.append(orjson.dumps(document[0]))
    key = shared_secret.encode()
    for candidate in candidates:
        expected = hmac.new(key, candidate, hashlib.sha1).hexdigest()
        if hmac.compare_digest(expected.encode(), signature.encode()):  # str compare_digest refuses non-ASCII
            return
    raise InboundError(401, "X-Signature does not match the body", field="X-Signature")
