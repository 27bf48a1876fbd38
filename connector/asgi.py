"""The ASGI app for `uvicorn connector.asgi:app` (and for several web workers)."""

from connector.web.app import create_app

app = create_app()
