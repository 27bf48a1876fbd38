"""Structured JSON logs: one event name per line, secrets never included."""

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from structlog.typing import FilteringBoundLogger

DATABASE_LOGGERS = ("sqlalchemy", "aiosqlite", "asyncpg")
REDACTED_KEYS = frozenset(
    {"write_key", "writeKey", "shared_secret", "api_key", "authorization", "admin_token", "token"}
)


def _redact(_logger: object, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in REDACTED_KEYS & event.keys():
        event[key] = "[redacted]"
    return event


def _foreign_event(_logger: object, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """A library's record (uvicorn, alembic, ...) as one of ours: its logger's name as the event name, its text
    as `message`, so every line is JSON with one event name."""
    record = event.get("_record")
    event["message"] = event.pop("event", "")
    event["event"] = f"{record.name}.log" if record is not None else "log"
    return event


def configure_logging(level: str = "INFO") -> None:
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_log_level, stamp, _foreign_event, _redact],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # SQLAlchemy's engine (at INFO and DEBUG) and aiosqlite (at DEBUG, LOG_LEVEL=debug) log every statement with
    # its parameters, and SQLAlchemy every row fetched: those hold the API key, the admin token, the write key, the
    # shared secret and profile data. Their records never reach the log, at any level (SQLAlchemy's errors name
    # the SQL without its values: hide_parameters in core/db.py).
    for driver in DATABASE_LOGGERS:
        logging.getLogger(driver).setLevel(logging.WARNING)
    # segment-analytics-python logs a refused batch as text; the sender logs it as outgoing.* with its status.
    logging.getLogger("segment").setLevel(logging.CRITICAL)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            _redact,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=True,
    )


def get_logger() -> FilteringBoundLogger:
    logger: FilteringBoundLogger = structlog.get_logger("connector")  # the wrapper_class configured above
    return logger
