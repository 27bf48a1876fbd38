"""The optional per-write-key rate limit (`write_key_rate_limit` requests a second; 0 is off).

Counted per process, in one-second windows: with several web processes (WEB_CONCURRENCY, dynos) a key may
send up to that many times the limit. It protects the journal from one busy or abused website, as Segment's
own API answers 429 with Retry-After past its recommended rate; it is not an exact quota.
"""

from time import monotonic

from connector.inbound.errors import InboundError

RETRY_AFTER_SECONDS = 1


class RateLimiter:
    def __init__(self) -> None:
        self._windows: dict[int, tuple[int, int]] = {}  # key id -> (window second, requests in it)

    def admit(self, key_id: int, limit: int, now: float | None = None) -> None:
        """Count one request of this key; InboundError 429 past `limit` in the current second."""
        if limit <= 0:
            return
        second = int(monotonic() if now is None else now)
        window, count = self._windows.get(key_id, (second, 0))
        if window != second:
            if len(self._windows) > 10_000:  # keys idle since an earlier second: forget them all at once
                self._windows.clear()
            window, count = second, 0
        if count >= limit:
            raise InboundError(
                429,
                f"this write key is limited to {limit} requests a second; retry after {RETRY_AFTER_SECONDS} s",
                limit=limit,
                retry_after=RETRY_AFTER_SECONDS,
            )
        self._windows[key_id] = (window, count + 1)
