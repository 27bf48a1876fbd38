"""The ASGI app for `uvicorn connector.asgi:app` (and for several web workers)."""

from connector.config import get_environment
from connector.logs import configure_logging
from connector.runtime import settle_heap
from connector.web.app import create_app

configure_logging(get_environment().log_level)
app = create_app()
settle_heap()
