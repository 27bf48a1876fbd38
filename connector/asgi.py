"""The ASGI app for `uvicorn connector.asgi:app` (and for several web workers)."""

from connector.core.environment import get_environment
from connector.core.logs import configure_logging
from connector.core.runtime import settle_heap
from connector.web.app import create_app

configure_logging(get_environment().log_level)
app = create_app()
settle_heap()
