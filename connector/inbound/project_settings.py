"""GET /v1/projects/{write_key}/settings: what analytics.js reads from Segment's CDN, served by the connector.

With it, `AnalyticsBrowser.load({writeKey, cdnURL: "<connector URL>"})` needs no Segment CDN: the document
points analytics.js's "Segment.io" integration (the one that posts the calls) at this connector's /v1, and
turns off what would call Segment itself (its metrics). A revoked or unknown key gets 404, as Segment's CDN
answers. The key is public (it is in the page), so the document holds nothing the page does not already.
"""

from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connector.core.runtime import Runtime
from connector.inbound import write_keys
from connector.inbound.errors import InboundError
from connector.inbound.routes import inbound_endpoint


def settings_document(write_key: str, public_url: str) -> dict[str, object]:
    """The CDN settings of a source whose only destination is this connector at `public_url`."""
    url = urlsplit(public_url)
    api_host = f"{url.netloc}{url.path.rstrip('/')}/v1"  # analytics.js adds the scheme: `protocol`
    return {
        "integrations": {"Segment.io": {"apiKey": write_key, "apiHost": api_host, "protocol": url.scheme}},
        "plan": {"track": {"__default": {"enabled": True, "integrations": {}}}},
        "metrics": {"sampleRate": 0},  # analytics.js would post its own metrics to api.segment.io
        "middlewareSettings": {},
        "enabledMiddleware": {},
        "remotePlugins": [],
    }


@inbound_endpoint("v1_settings")
async def project_settings(request: Request) -> JSONResponse:
    runtime: Runtime = request.app.state.runtime
    key = request.path_params["write_key"]
    if await write_keys.find(runtime.engine, key) is None:
        raise InboundError(404, "no active write key with this value")
    public_url = runtime.env.public_url or str(request.base_url)
    return JSONResponse(settings_document(key, public_url))


routes = [Route("/v1/projects/{write_key:str}/settings", project_settings, methods=["GET"])]
