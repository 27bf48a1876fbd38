"""Who may write: the API key as Basic user name (or writeKey), and the optional HMAC signature."""

import base64
import hashlib
import hmac

import orjson
from starlette.requests import Request

from connector.core.credentials import secrets_match
from connector.inbound.errors import InboundError


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
