"""What the app answers before any endpoint runs: ids in paths, and unknown paths or methods.

`{name:id}` is the path convertor for a database id: digits that fit a 64-bit integer column
(up to 18 significant digits, leading zeros allowed). A longer number never names a row, and
as a query parameter it would overflow the column's type in the driver (a 500); the path does
not match instead, and the app answers 404 in the API's error shape like any unknown path.
"""

from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from connector.inbound.errors import error_body

MAX_ID_DIGITS = 18


class IdConvertor(Convertor[int]):
    regex = f"0*[0-9]{{1,{MAX_ID_DIGITS}}}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(int(value))


ID = IdConvertor()
register_url_convertor("id", ID)


async def http_error(request: Request, error: Exception) -> Response:
    """404 (no route, or an id out of range) and 405 as JSON: the admin API's {"message"} and the
    inbound endpoints' {"code", "message"}; elsewhere (dashboard, static files) starlette's text."""
    assert isinstance(error, HTTPException)
    path = request.url.path
    message = f"no such resource: {path}" if error.status_code == 404 else error.detail
    if path == "/api" or path.startswith("/api/"):
        return JSONResponse({"message": message}, status_code=error.status_code, headers=error.headers)
    if path == "/segment" or path == "/v1" or path.startswith("/v1/"):
        return JSONResponse(
            error_body(error.status_code, message), status_code=error.status_code, headers=error.headers
        )
    return PlainTextResponse(error.detail, status_code=error.status_code, headers=error.headers)
