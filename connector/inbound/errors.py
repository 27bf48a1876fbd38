"""The JSON error every inbound endpoint answers with: {"message": ..., "field"?: ...}."""

from typing import Any

from starlette.responses import JSONResponse


class InboundError(Exception):
    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Basic realm="segment"'} if self.status == 401 else None
        return JSONResponse({"message": self.message, **self.details}, status_code=self.status, headers=headers)
