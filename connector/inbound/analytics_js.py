"""analytics.js itself, served to websites as Segment's CDN serves it, so that a page needs no Segment host.

The files are @segment/analytics-next's standalone build and the parts it loads on demand (trackLink, the
ajs_ query string, ...), copied unchanged from the npm package pinned in tests/package.json
(scripts/vendor-analytics-next) into `analytics_next/`:

- `GET /analytics.js/v1/{write_key}/analytics.min.js`: the standalone build, at the path of Segment's CDN
  (`cdn.segment.com/analytics.js/v1/<write key>/analytics.min.js`). 404 for an unknown or revoked key, as
  the CDN settings answer (project_settings.py). Cached a few minutes, as Segment's CDN does: a new
  version reaches pages soon.
- `GET /analytics-next/bundles/{name}`: the parts. Their names carry their content's hash, so they are
  cached for good.
Both are sent gzipped to a browser that takes it (a third of the bytes), as Segment's CDN sends them, each
file read and compressed once per process, when first asked for.

The standalone build takes the host it reads its settings and parts from from `window.analytics._cdn` (the
Setup page's snippet sets it to the connector) and the write key from `window.analytics._writeKey`. Like
the dashboard's files, these are public: they are the same for everyone and hold no data.
"""

import functools
import gzip
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from connector.core.runtime import Runtime
from connector.inbound import write_keys
from connector.inbound.errors import InboundError
from connector.inbound.routes import inbound_endpoint

FILES = Path(__file__).with_name("analytics_next")
NAMES = frozenset(path.name for path in FILES.glob("*.js"))
JAVASCRIPT = "text/javascript; charset=utf-8"
LOADER_CACHE = "public, max-age=300"
PART_CACHE = "public, max-age=31536000, immutable"


@functools.cache
def _file(name: str) -> tuple[bytes, bytes]:
    """A file as it is and gzipped, read and compressed once per process, when first asked for."""
    plain = (FILES / name).read_bytes()
    return plain, gzip.compress(plain, mtime=0)


def _script(request: Request, name: str, cache: str) -> Response:
    plain, gzipped = _file(name)
    headers = {"Cache-Control": cache, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("accept-encoding", ""):
        return Response(gzipped, media_type=JAVASCRIPT, headers={**headers, "Content-Encoding": "gzip"})
    return Response(plain, media_type=JAVASCRIPT, headers=headers)


@inbound_endpoint("analytics_js")
async def loader(request: Request) -> Response:
    runtime: Runtime = request.app.state.runtime
    if await write_keys.find(runtime.engine, request.path_params["write_key"]) is None:
        raise InboundError(404, "no active write key with this value")
    return _script(request, "standalone.js", LOADER_CACHE)


@inbound_endpoint("analytics_js_part")
async def part(request: Request) -> Response:
    name = request.path_params["name"]
    if name not in NAMES:  # only the files copied from the package: a name is never a path
        raise InboundError(404, "analytics.js has no such part")
    return _script(request, name, PART_CACHE)


routes = [
    Route("/analytics.js/v1/{write_key:str}/analytics.min.js", loader, methods=["GET"]),
    Route("/analytics-next/bundles/{name:str}", part, methods=["GET"]),
]
