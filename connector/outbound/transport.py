"""Segment's transport: one POST /v1/batch through segment-analytics-python, what a failure is worth (retried or
not, and when), and batches cut to Segment's limits.

Sizes are measured on the bytes the transport sends: segment-analytics-python posts
`json.dumps(body)` (ASCII escapes for every non-ASCII character, a space after each
`,` and `:`), so a batch's size is exactly the sum of its messages' `json.dumps`
lengths, their separators and the envelope around them.
"""

import asyncio
import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from time import perf_counter
from typing import Any, TypeVar

from segment.analytics import request as segment_request

from connector.core.metrics import DELIVERY_LATENCY
from connector.core.models import utcnow
from connector.core.settings import ConnectorSettings
from connector.core.spec import MAX_BATCH_MESSAGES

MAX_BATCH_BYTES = 475_000  # Segment refuses a body over 500 KB: keep a margin below it
BATCH_SEPARATOR_BYTES = len(", ")
REQUEST_TIMEOUT_SECONDS = 15.0
BACKOFF_BASE_SECONDS = 1.0
BACKOFF_CAP_SECONDS = 600.0
RETRY_FOR_SECONDS = 4 * 3600
RETRYABLE_STATUSES = frozenset({408, 410, 429, 460})
NOT_RETRYABLE_SERVER_STATUSES = frozenset({501, 505})


@dataclass
class Failure:
    reason: str
    status: int | None = None
    retry: bool = False
    retry_after: float | None = None


def classify(error: Exception) -> Failure:
    """Which failures are worth another try (Segment's own list), and how long Segment asks us to wait."""
    if isinstance(error, segment_request.APIError):
        status = int(error.status)
        retry = status in RETRYABLE_STATUSES or (500 <= status < 600 and status not in NOT_RETRYABLE_SERVER_STATUSES)
        retry_after = segment_request.parse_retry_after(error.response) if error.response is not None else None
        return Failure(f"HTTP {status}: {error.message}"[:1000], status, retry, retry_after)
    # Timeouts, refused connections and anything unforeseen: retried, since dropping would lose data.
    return Failure(f"{type(error).__name__}: {error}"[:1000], None, True)


async def post_batch(
    settings: ConnectorSettings, batch: list[dict[str, Any]], request_timeout: float = REQUEST_TIMEOUT_SECONDS
) -> Failure | None:
    """One POST /v1/batch with segment-analytics-python's transport; None when Segment accepted it."""
    started = perf_counter()
    try:
        await asyncio.to_thread(
            segment_request.post,
            settings.write_key,
            host=settings.segment_api_host,
            batch=batch,
            sentAt=utcnow().isoformat(),
            timeout=request_timeout,
        )
    except Exception as error:  # every failure is classified: retried or dead-lettered, never lost
        return classify(error)
    finally:
        DELIVERY_LATENCY.observe(perf_counter() - started)
    return None


def backoff_seconds(attempts: int, retry_after: float | None = None) -> float:
    """Exponential with equal jitter (never less than half the step), at least Retry-After."""
    step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** min(attempts, 30))
    return max(step / 2 + random.uniform(0, step / 2), retry_after or 0.0)


def retry_budget_spent(failing_since: datetime, now: datetime) -> bool:
    """True once a row has been failing for RETRY_FOR_SECONDS: it is dead-lettered instead of retried."""
    return (now - failing_since).total_seconds() >= RETRY_FOR_SECONDS


def wire_size(message: dict[str, Any]) -> int:
    """The bytes a message takes in the transport's request body."""
    return len(json.dumps(message, cls=segment_request.DatetimeSerializer).encode())


def envelope_size(write_key: str | None) -> int:
    """The bytes around the messages: {"batch": [], "sentAt": ..., "writeKey": ...}, at the longest sentAt."""
    longest_sent_at = "2000-01-01T00:00:00.000000+00:00"
    return len(json.dumps({"batch": [], "sentAt": longest_sent_at, "writeKey": write_key}).encode())


Item = TypeVar("Item")


def batches(messages: Sequence[Item], size_of: Callable[[Item], int], write_key: str | None) -> list[list[Item]]:
    """Split in order into batches within Segment's limits (bytes on the wire and count)."""
    empty = envelope_size(write_key)
    result: list[list[Item]] = []
    current: list[Item] = []
    current_bytes = empty
    for item in messages:
        size = size_of(item) + (BATCH_SEPARATOR_BYTES if current else 0)
        if current and (len(current) >= MAX_BATCH_MESSAGES or current_bytes + size > MAX_BATCH_BYTES):
            result.append(current)
            current, current_bytes = [], empty
            size -= BATCH_SEPARATOR_BYTES
        current.append(item)
        current_bytes += size
    if current:
        result.append(current)
    return result
