"""Read a request body within the size limits, decompressing gzip with a cap."""

import zlib

from starlette.requests import Request

from connector.inbound.errors import InboundError


async def read_body(request: Request, max_bytes: int, max_decompressed_bytes: int) -> bytes:
    declared = request.headers.get("content-length", "")
    # isdecimal, not isdigit: int() refuses digits like "²"; and it refuses more than 4,300 digits.
    if declared.isdecimal() and (len(declared) > 100 or int(declared) > max_bytes):
        raise _too_large("request body", max_bytes)
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise _too_large("request body", max_bytes)
        chunks.append(chunk)
    body = b"".join(chunks)
    encoding = request.headers.get("content-encoding", "identity").lower().strip()
    if encoding in ("", "identity"):
        return body
    if encoding in ("gzip", "x-gzip"):
        return gunzip_capped(body, max_decompressed_bytes)
    raise InboundError(415, f"unsupported Content-Encoding {encoding!r}; use gzip or none", field="Content-Encoding")


def gunzip_capped(body: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decompressor.decompress(body, limit + 1)
    except zlib.error as error:
        raise InboundError(400, f"body is not valid gzip: {error}", field="body") from None
    if len(data) > limit or decompressor.unconsumed_tail:
        raise _too_large("decompressed body", limit)
    return data


def _too_large(what: str, limit: int) -> InboundError:
    return InboundError(413, f"{what} exceeds the limit of {limit} bytes", limit=limit)
