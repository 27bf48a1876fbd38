"""The process environment, read once with pydantic-settings.

Everything here comes from environment variables (Heroku config vars); the
connector's own settings document lives in the database (see settings.py).
On a Heroku dyno (DYNO is set) CONNECTOR_ENV defaults to production: secrets are
never printed in full to the log stream, and ADMIN_TOKEN is required.
"""

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./connector.db"


def normalise_database_url(url: str) -> str:
    """Map Heroku's and plain driver-less URLs onto the async drivers we ship."""
    for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    return url


@dataclass(frozen=True)
class Database:
    """Where to connect, and whether that is a transaction-mode pooler (core/db.py's `pooler`)."""

    url: str
    pooler: bool


class Environment(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = Field(
        "development",
        validation_alias="CONNECTOR_ENV",
        description="`production` requires ADMIN_TOKEN; the default is production on Heroku (DYNO set).",
    )
    dyno: str | None = Field(None, description="Set by Heroku on every dyno (`web.1`).")
    database_url: str = DEFAULT_DATABASE_URL
    database_connection_pool_url: str | None = Field(
        None,
        description="Heroku's connection pooling (PgBouncer in transaction mode): the web and worker processes "
        "connect through it; `connector migrate` and the operator commands use DATABASE_URL, the direct one.",
    )
    database_pooler: Literal["none", "transaction"] = Field(
        "none",
        description="`transaction` when DATABASE_URL itself is a transaction-mode pooler (Supabase, Neon, "
        "a PgBouncer of your own): no prepared statement is kept past its transaction.",
    )
    port: int = 8000
    host: str = "127.0.0.1"
    admin_token: str | None = None
    connector_api_key: str | None = None
    log_level: str = "INFO"
    web_concurrency: int = 1
    run_worker_in_web: bool = True
    public_url: str | None = Field(
        None,
        description="The URL users reach this service at; the Segment workspace setup points the Webhooks "
        "destination at <PUBLIC_URL>/segment, and refuses without it.",
    )
    segment_public_api_url: str | None = Field(
        None,
        description="Base URL of Segment's Public API, instead of the region's (https://api.segmentapis.com, "
        "https://eu1.api.segmentapis.com).",
    )

    max_body_bytes: int = 512_000
    max_decompressed_bytes: int = 2_000_000
    max_json_depth: int = 32
    journal_batch_size: int = Field(
        8000,
        ge=1,
        description="Journal messages applied per transaction (docs/performance.md: a profile's messages in "
        "one batch are one lookup, one profile write and one segment refresh; 8,000 is a fifth cheaper per "
        "message than 2,000).",
    )
    segment_recompute_seconds: float = Field(
        3600.0, gt=0, description="How often segments with time-based rules are recomputed in full."
    )
    retention_interval_seconds: float = Field(
        300.0, gt=0, description="How often the worker deletes what the retention settings say has expired."
    )
    database_max_connections: int = Field(
        20,
        ge=4,
        description="The most PostgreSQL connections one process opens (half kept in its pool); keep "
        "(web processes + worker processes) x this under the plan's connection limit.",
    )
    outbound_batch_wait_seconds: float = 0.2
    outbound_claim_limit: int = 2_000

    @field_validator("database_url", "database_connection_pool_url")
    @classmethod
    def _async_driver(cls, value: str | None) -> str | None:
        return normalise_database_url(value) if value else None

    @model_validator(mode="after")
    def _production_on_heroku(self) -> "Environment":
        if self.dyno and "environment" not in self.model_fields_set:
            self.environment = "production"
        if self.environment != "development" and not self.admin_token:
            raise ValueError(
                "ADMIN_TOKEN is required in production (CONNECTOR_ENV=production, "
                "or on Heroku, where DYNO is set, unless CONNECTOR_ENV=development)"
            )
        return self

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")

    @property
    def direct_database(self) -> Database:
        """DATABASE_URL: for migrations and operator commands, which need no pooling."""
        return Database(self.database_url, self.database_pooler == "transaction")

    @property
    def service_database(self) -> Database:
        """What the web and worker processes connect to: Heroku's pooler when attached, else DATABASE_URL."""
        if self.database_connection_pool_url:
            return Database(self.database_connection_pool_url, pooler=True)
        return self.direct_database


@lru_cache
def get_environment() -> Environment:
    return Environment()
