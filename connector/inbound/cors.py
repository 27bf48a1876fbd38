"""CORS for /v1, so that analytics.js on a website can send to the connector (a plain ASGI middleware).

analytics.js always sends `Authorization`, so each call is preceded by a preflight: an OPTIONS on a /v1 path
with an `Origin` is answered here, 204 with the grant, before any route. Every other /v1 answer to a request
with an `Origin` carries `Access-Control-Allow-Origin` (the request's origin), errors included, so the page
can read why it was refused, unless the route refused the origin itself (a write key whose allowed_origins do
not list it: `refuse_grant`). The grant also exposes `Retry-After`, which is not a CORS-safelisted header: without
it a page reads a 429's Retry-After as null, and analytics.js retries by its own backoff instead of waiting as told.
A preflight carries no key, so it is granted to any origin and any /v1 path; what the call may do is decided by
its key (an unknown path then answers 404 with the grant, readable by the page). /segment, /api and the dashboard
are never granted: this passes them through untouched.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

PREFIX = "/v1/"
REFUSED = "connector.cors_refused"
PREFLIGHT_HEADERS = [
    (b"access-control-allow-methods", b"POST, OPTIONS"),
    # What analytics.js sends: its JSON or text/plain body, the write key as Basic auth, its retry count.
    (b"access-control-allow-headers", b"Content-Type, Authorization, X-Retry-Count"),
    (b"access-control-max-age", b"86400"),  # a day (Chromium caps it at 2 hours, Firefox at 1 day)
    (b"content-length", b"0"),
]
# What a page may read of an answer besides the safelisted headers: how long a 429 asks it to wait.
EXPOSED = [(b"access-control-expose-headers", b"Retry-After")]


def refuse_grant(scope: Scope) -> None:
    """This answer goes without the CORS grant: the browser keeps it from the page."""
    scope[REFUSED] = True


def _origin(scope: Scope) -> bytes | None:
    for name, value in scope["headers"]:
        if name == b"origin":
            return bytes(value)
    return None


class CorsMiddleware:
    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        origin = _origin(scope)
        if origin is None:  # a server library, curl: no browser to grant anything to
            await self.app(scope, receive, send)
            return
        grant = [(b"access-control-allow-origin", origin), (b"vary", b"Origin")]
        if scope["method"] == "OPTIONS":
            await send({"type": "http.response.start", "status": 204, "headers": grant + PREFLIGHT_HEADERS})
            await send({"type": "http.response.body", "body": b""})
            return

        async def send_with_grant(message: Message) -> None:
            if message["type"] == "http.response.start" and not scope.get(REFUSED):
                message["headers"] = [*message.get("headers", ()), *grant, *EXPOSED]
            await send(message)

        await self.app(scope, receive, send_with_grant)
