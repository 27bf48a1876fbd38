"""Segment Spec messages: parse, validate and normalise.

Pure functions with no I/O, shared by every inbound endpoint. A message that breaks
the Spec raises SpecError naming the offending field; the caller turns it into a 400.
"""

import hashlib
import uuid
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import orjson

MESSAGE_TYPES = ("identify", "track", "page", "screen", "group", "alias")
# What Segment's Webhooks destination also forwards: a user deletion (`/segment` only).
SEGMENT_TYPES = (*MESSAGE_TYPES, "delete")
MAX_MESSAGE_BYTES = 32 * 1024
MAX_BATCH_MESSAGES = 2500
NUL_ESCAPE = b"\\u0000"  # how JSON writes U+0000, which PostgreSQL cannot store

# Top-level snake_case keys that Segment also accepts, mapped to the Spec's camelCase.
SNAKE_TO_CAMEL = {
    "user_id": "userId",
    "anonymous_id": "anonymousId",
    "message_id": "messageId",
    "previous_id": "previousId",
    "group_id": "groupId",
    "sent_at": "sentAt",
    "received_at": "receivedAt",
    "original_timestamp": "originalTimestamp",
    "write_key": "writeKey",
}
OBJECT_FIELDS = ("traits", "properties", "context", "integrations")
# Values that SDKs and broken integrations send where an id should be. Besides these, any id made only of zeros
# and dashes (the nil UUID 00000000-0000-0000-0000-000000000000, "0000"): Segment blocks "all zeros" too.
BOGUS_IDS = frozenset(
    {
        "",
        "null",
        "undefined",
        "anonymous",
        "0",
        "-1",
        "[object object]",
        "none",
        "nan",
        "true",
        "false",
        "nil",
        "unknown",
        "n/a",
    }
)


class SpecError(ValueError):
    """A message that breaks the Spec; `field` names the culprit for the 400 body."""

    def __init__(self, field: str, message: str, status: int = 400):
        super().__init__(message)
        self.field = field
        self.message = message
        self.status = status

    def as_dict(self) -> dict[str, Any]:
        return {"message": self.message, "field": self.field}


class UnknownTypeError(SpecError):
    def __init__(self, value: Any, types: tuple[str, ...] = MESSAGE_TYPES):
        super().__init__("type", f"unknown message type {value!r}; expected one of {', '.join(types)}", status=501)


def parse_json(body: bytes, max_depth: int) -> Any:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        raise SpecError("body", f"malformed JSON: {error}") from None
    # A value lies inside at most as many objects and arrays as the body has opening brackets (those in
    # strings only add to the count), so a body with fewer than max_depth of them needs no walk.
    if body.count(b"{") + body.count(b"[") >= max_depth:
        check_depth(document, max_depth)
    return document


def check_depth(document: Any, max_depth: int) -> None:
    """Refuse documents nested deeper than max_depth: the document is at depth 1, a value in an object or
    array one deeper than it. Level by level (no recursion limit), descending only into objects and arrays."""
    depth, values = 1, [document]
    while values:
        if depth > max_depth:
            raise SpecError("body", f"JSON nested deeper than the limit of {max_depth} levels", status=400)
        containers = [value for value in values if isinstance(value, (dict, list))]
        values = []
        for container in containers:
            values.extend(container.values() if isinstance(container, dict) else container)
        depth += 1


def is_bogus_id(value: Any) -> bool:
    """True for values that must never become an identifier."""
    if value is None or isinstance(value, (bool, dict, list)):
        return True
    text = str(value).strip()
    unquoted = text.strip("'\"").strip().lower()
    return unquoted in BOGUS_IDS or ("0" in unquoted and set(unquoted) <= {"0", "-"})


def clean_id(value: Any) -> str | None:
    """The identifier as stored, or None when it is missing or bogus."""
    if isinstance(value, str):
        return _clean_text_id(value)
    if is_bogus_id(value):
        return None
    text = str(value).strip()
    return text if len(text) <= 255 else None


@lru_cache(maxsize=65536)
def _clean_text_id(value: str) -> str | None:
    # Cached: a batch asks for the same ids many times (every message of a user, twice or more each).
    if is_bogus_id(value):
        return None
    text = value.strip()
    return text if len(text) <= 255 else None


def parse_timestamp(value: Any, field: str) -> datetime:
    # Out-of-range dates (year 0, epoch milliseconds past year 9999) are the sender's error, not ours.
    try:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            # Epoch milliseconds, as some libraries send.
            return datetime.fromtimestamp(value / 1000, tz=UTC)
        if not isinstance(value, str):
            raise SpecError(field, f"{field} must be an ISO 8601 date string")
        return _parse_text_timestamp(value)
    except (ValueError, OverflowError, OSError):
        raise SpecError(field, f"{field} is not a valid ISO 8601 date: {str(value)[:64]!r}") from None


@lru_cache(maxsize=65536)
def _parse_text_timestamp(value: str) -> datetime:
    # Cached: the messages of one request share their receivedAt, and processing parses each twice.
    text = value.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def format_timestamp(value: datetime) -> str:
    """Fixed-width UTC ISO 8601 (years zero-padded), so that string order is time order."""
    if value.tzinfo is not UTC:  # what this module parses, and utcnow(), are UTC already
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# The messages of one request share their receivedAt: formatted once.
_format_received = lru_cache(maxsize=16)(format_timestamp)
SENDER_TIME_FIELDS = ("timestamp", "originalTimestamp", "sentAt")


def generated_message_id(message: dict[str, Any], batch_sent_at: Any = None) -> str:
    """The id of a message sent without one.

    When the sender dated it, a hash of the body with that time: a retry of the same send
    is a duplicate, the same call made at another time is not. Undated, a unique id, as
    Segment's API does: two identical undated calls are two calls.
    """
    if batch_sent_at is None and all(message.get(field) is None for field in SENDER_TIME_FIELDS):
        return f"auto-{uuid.uuid4().hex}"
    content = {**message, "batchSentAt": batch_sent_at} if batch_sent_at is not None else message
    digest = hashlib.sha256(orjson.dumps(content, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"auto-{digest[:40]}"


def normalise_keys(raw: dict[str, Any]) -> dict[str, Any]:
    message = dict(raw)
    for snake, camel in SNAKE_TO_CAMEL.items():
        if snake in message:
            value = message.pop(snake)
            message.setdefault(camel, value)
    return message


def normalise_message(
    raw: Any,
    received_at: datetime,
    default_type: str | None = None,
    sent_at: Any = None,
    types: tuple[str, ...] = MESSAGE_TYPES,
) -> dict[str, Any]:
    """Validate one message of one of `types` and return it in canonical form.

    The canonical form has camelCase keys, a `messageId`, a corrected `timestamp` (never
    later than `receivedAt`) and `receivedAt` (both fixed-width UTC ISO strings), and
    string ids.
    """
    if not isinstance(raw, dict):
        raise SpecError("body", "each message must be a JSON object")
    encoded = orjson.dumps(raw)
    if len(encoded) > MAX_MESSAGE_BYTES:
        raise SpecError(
            "body", f"message is {len(encoded)} bytes; the limit is {MAX_MESSAGE_BYTES} bytes (32 KB)", status=413
        )
    if NUL_ESCAPE in encoded:  # JSON always escapes U+0000 so: without the escape there is none to look for
        _refuse_nul_characters(raw)
    message = normalise_keys(raw)
    message_type = message.get("type") or default_type
    if default_type and message.get("type") not in (None, default_type):
        raise SpecError("type", f"type {message.get('type')!r} does not match the endpoint /v1/{default_type}")
    if message_type not in types:
        raise UnknownTypeError(message_type, types)
    message["type"] = message_type

    for field in OBJECT_FIELDS:
        if field in message and message[field] is not None and not isinstance(message[field], dict):
            raise SpecError(field, f"{field} must be a JSON object")
        if message.get(field) is None:
            message.pop(field, None)

    _require_identity(message)
    if message_type == "track":
        _require_text(message, "event")
    elif message_type == "group":
        _require_id(message, "groupId")
    elif message_type == "alias":
        _require_id(message, "previousId")
        _require_id(message, "userId")
    elif message_type == "delete":
        _require_id(message, "userId")
    if message_type in ("page", "screen") and message.get("name") is not None and not isinstance(message["name"], str):
        raise SpecError("name", "name must be a string")

    if "messageId" in message and message["messageId"] is not None:
        if not isinstance(message["messageId"], (str, int)) or str(message["messageId"]).strip() == "":
            raise SpecError("messageId", "messageId must be a non-empty string")
        message["messageId"] = str(message["messageId"])[:255]
    else:
        message.pop("messageId", None)
        message["messageId"] = generated_message_id(message, sent_at)

    # Newest wins everywhere, so a clock in the future must not make a message win until then.
    corrected = _corrected_timestamp(message, received_at, sent_at)
    message["receivedAt"] = _format_received(received_at)
    message["timestamp"] = message["receivedAt"] if corrected >= received_at else format_timestamp(corrected)
    message.pop("writeKey", None)
    return message


def _corrected_timestamp(message: dict[str, Any], received_at: datetime, batch_sent_at: Any) -> datetime:
    """Segment's clock-skew rule: timestamp = receivedAt - (sentAt - originalTimestamp)."""
    if message.get("timestamp") is not None:
        return parse_timestamp(message["timestamp"], "timestamp")
    sent_at_value = message.get("sentAt", batch_sent_at)
    original = message.get("originalTimestamp")
    if original is None:
        return received_at
    original_at = parse_timestamp(original, "originalTimestamp")
    if sent_at_value is None:
        return original_at
    sent_at = parse_timestamp(sent_at_value, "sentAt")
    try:
        return received_at - (sent_at - original_at)
    except OverflowError:
        raise SpecError("sentAt", "sentAt and originalTimestamp are too far apart to correct the clock skew") from None


def has_nul(value: Any) -> bool:
    """Whether a string anywhere in a JSON value (object keys included) holds U+0000: PostgreSQL cannot
    store it, in text or in JSON."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _refuse_nul_characters(message: dict[str, Any]) -> None:
    """Refused here rather than failing the journal commit."""
    for key, value in message.items():
        if has_nul(key) or has_nul(value):
            raise SpecError(key, f"{key} contains a NUL character (\\u0000), which cannot be stored")


def _require_identity(message: dict[str, Any]) -> None:
    for field in ("userId", "anonymousId"):
        value = message.get(field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            message[field] = value = str(value)
        if value is not None and not isinstance(value, str):
            raise SpecError(field, f"{field} must be a string")
    if clean_id(message.get("userId")) is None and clean_id(message.get("anonymousId")) is None:
        raise SpecError(
            "userId", "userId or anonymousId is required (and must not be a placeholder such as 'null' or 'undefined')"
        )


def _require_text(message: dict[str, Any], field: str) -> None:
    value = message.get(field)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(field, f"{field} is required for a {message['type']} call")
    if len(value) > 255:
        raise SpecError(field, f"{field} is longer than 255 characters")


def _require_id(message: dict[str, Any], field: str) -> None:
    value = message.get(field)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        message[field] = value = str(value)
    if clean_id(value) is None:
        raise SpecError(field, f"{field} is required for a {message['type']} call")
