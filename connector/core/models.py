"""Every table, in one place (SQLModel over SQLAlchemy).

JSON columns are JSONB on PostgreSQL. Timestamps are stored and returned as
timezone-aware UTC on both backends.
"""

from datetime import UTC, date, datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.visitors import InternalTraversal, _TraverseInternalsType
from sqlmodel import Field, SQLModel

from connector.core.kinds import Entity

JSONType = sa.JSON().with_variant(JSONB(), "postgresql")
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """DateTime that always comes back timezone-aware UTC (SQLite drops tzinfo)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def _id() -> Any:
    return Field(default=None, sa_column=sa.Column(BigId, primary_key=True, autoincrement=True))


def _json(nullable: bool = False) -> Any:
    return Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=nullable))


def _time(nullable: bool = False, index: bool = False) -> Any:
    default: Any = None if nullable else utcnow
    kwargs: dict[str, Any] = {"default": None} if nullable else {"default_factory": default}
    return Field(**kwargs, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


def _ref(target: str, nullable: bool = False, index: bool = True, ondelete: str | None = "CASCADE") -> Any:
    return Field(
        default=None,
        sa_column=sa.Column(BigId, sa.ForeignKey(target, ondelete=ondelete), nullable=nullable, index=index),
    )


class TableModel(SQLModel):
    """Base of every table class: SQLModel sets each one's SQLAlchemy Core `__table__` without declaring it to mypy.

    The connector reads and writes the tables through SQLAlchemy Core, never through pydantic: no table class
    validates anything, so pydantic does not build their validators (~7 ms of every process start)."""

    __table__: ClassVar[sa.Table]
    model_config = {"defer_build": True}


# --- inbound ---------------------------------------------------------------


class JournalEntry(TableModel, table=True):
    """Every accepted inbound message, in arrival order; the processor consumes it.

    A row is pending while its `journal_queue` row exists (the database adds one with every row
    inserted: migration 0008), failed when it carries an `error`, processed otherwise (journal.py)."""

    __tablename__ = "inbound_journal"
    # The failed rows alone (status counts, the overview's last errors): a few, however long the journal.
    __table_args__ = (
        sa.Index(
            "ix_inbound_journal_failed",
            "id",
            sqlite_where=sa.text("error IS NOT NULL"),
            postgresql_where=sa.text("error IS NOT NULL"),
        ),
        # The skipped rows alone, by type (the status counts the group calls ignored).
        sa.Index(
            "ix_inbound_journal_skipped",
            "type",
            sqlite_where=sa.text("skipped IS NOT NULL"),
            postgresql_where=sa.text("skipped IS NOT NULL"),
        ),
    )

    id: int | None = _id()
    message_id: str = Field(max_length=255, sa_column_kwargs={"unique": True})
    type: str = Field(max_length=16)
    payload: dict[str, Any] = _json()
    # The dashboard's overview counts the last 24 hours by it; retention ages processed rows by it.
    received_at: datetime = _time(index=True)
    # Why the message was parked (a bug, never a data reason); set only on failed rows.
    error: str | None = Field(default=None, sa_type=sa.Text)
    # Why a processed message was not applied (a kind of call the settings turn off: "Handle group calls is
    # off"); set only on skipped rows, which count as `skipped`, not `processed` (journal.py: STATUS).
    skipped: str | None = Field(default=None, sa_type=sa.Text)
    # "segment" for what Segment delivered to /segment, "api" for what a library posted to /v1/*:
    # only the first can be an echo of what we sent, so only it is held back by forward_events.
    source: str = Field(default="segment", max_length=16, sa_column_kwargs={"server_default": "segment"})
    # Derived from the message's identity (journal.partition_of): one identity's messages share a
    # partition, and a partition is applied by one worker at a time, in journal order.
    partition: int = Field(default=0, sa_column=sa.Column(sa.SmallInteger, nullable=False, server_default="0"))
    # The browser write key (write_keys.id) that sent the message to /v1; None for the API key and /segment.
    # No foreign key: a revoked key keeps its row, and the overview counts the messages of each key by it.
    write_key_id: int | None = Field(default=None, sa_column=sa.Column(BigId, nullable=True))


class WriteKey(TableModel, table=True):
    """A browser write key: public (it is in a web page), good on /v1 only. Kept as its SHA-256, never in
    full: the key is shown once, when created. Revoking sets `revoked_at`; the row stays for the overview."""

    __tablename__ = "write_keys"

    id: int | None = _id()
    name: str = Field(max_length=200)
    key_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    key_hint: str = Field(max_length=16)  # the key's last characters, for the masked list
    allowed_origins: list[str] = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = _time()
    revoked_at: datetime | None = _time(nullable=True)


class JournalQueueEntry(TableModel, table=True):
    """A pending journal row: inserted with it (by the database), deleted in the transaction that applies or
    parks it. Deleting a row of this narrow table is what consuming a message costs, where updating the
    journal row's status rewrote the whole message and an entry in each of its indexes (docs/performance.md).
    No foreign key: the trigger only inserts ids that exist, and what deletes journal rows deletes these."""

    __tablename__ = "journal_queue"
    __table_args__ = (sa.Index("ix_journal_queue_partition_id", "partition", "id"),)

    id: int = Field(sa_column=sa.Column(BigId, primary_key=True, autoincrement=False))
    partition: int = Field(sa_column=sa.Column(sa.SmallInteger, nullable=False))


# --- profiles --------------------------------------------------------------


class Account(TableModel, table=True):
    __tablename__ = "accounts"

    id: int | None = _id()
    group_id: str | None = Field(default=None, max_length=255, sa_column_kwargs={"unique": True})
    domain: str | None = Field(default=None, max_length=255, sa_column_kwargs={"unique": True})
    traits: dict[str, Any] = _json()
    trait_timestamps: dict[str, str] = _json()
    # The ideal-customer-profile scanner (segments/icp.py): NULL while the `icp` setting is unset.
    icp_score: int | None = Field(default=None, sa_type=sa.BigInteger)
    icp_fit: str | None = Field(default=None, max_length=8)  # good, medium, poor
    created_at: datetime = _time()
    updated_at: datetime = _time()


class EmailTrait(sa.ColumnElement[str]):
    """The `email` trait of a `traits` column, lower-cased: the expression `ix_users_email_trait` holds. Written
    with its path as a literal, so a query naming it is the index's own expression on both backends."""

    type = sa.String()
    inherit_cache = True
    _traverse_internals: _TraverseInternalsType = [("traits", InternalTraversal.dp_clauseelement)]  # noqa: RUF012 (SQLAlchemy types it so)

    def __init__(self, traits: Any) -> None:
        self.traits = traits


class AfterAt(sa.ColumnElement[str]):
    """What follows the first `@` of a text (all of it when it holds none): an email's domain, the expression of
    `ix_users_email_trait_domain` and `ix_user_identifiers_email_domain`."""

    type = sa.String()
    inherit_cache = True
    _traverse_internals: _TraverseInternalsType = [("text", InternalTraversal.dp_clauseelement)]  # noqa: RUF012 (SQLAlchemy types it so)

    def __init__(self, text: Any) -> None:
        self.text = text


@compiles(EmailTrait, "postgresql")
def _email_trait_postgresql(element: EmailTrait, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower({compiler.process(element.traits, **kw)} ->> 'email')"


@compiles(EmailTrait, "sqlite")
def _email_trait_sqlite(element: EmailTrait, compiler: SQLCompiler, **kw: Any) -> str:
    return f"lower(json_extract({compiler.process(element.traits, **kw)}, '$.email'))"


@compiles(AfterAt, "postgresql")
def _after_at_postgresql(element: AfterAt, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.text, **kw)
    return f"substr({text}, strpos({text}, '@') + 1)"


@compiles(AfterAt, "sqlite")
def _after_at_sqlite(element: AfterAt, compiler: SQLCompiler, **kw: Any) -> str:
    text = compiler.process(element.text, **kw)
    return f"substr({text}, instr({text}, '@') + 1)"


class User(TableModel, table=True):
    __tablename__ = "users"

    id: int | None = _id()
    traits: dict[str, Any] = _json()
    trait_timestamps: dict[str, str] = _json()
    account_id: int | None = _ref("accounts.id", nullable=True, ondelete="SET NULL")
    account_link: str | None = Field(default=None, max_length=16)  # "group" or "domain"
    # The time of the message that set the link: a late, older group call never moves the user back.
    account_linked_at: datetime | None = _time(nullable=True)
    # The persona scanner (persona.py), from the title trait: NULL when no pattern matches.
    persona_seniority: str | None = Field(default=None, max_length=16)
    persona_department: str | None = Field(default=None, max_length=32)
    created_at: datetime = _time()
    updated_at: datetime = _time()
    last_seen_at: datetime | None = _time(nullable=True)


class UserIdentifier(TableModel, table=True):
    """One claim (user_id, anonymous_id or email) pointing at exactly one profile."""

    __tablename__ = "user_identifiers"
    __table_args__ = (
        sa.UniqueConstraint("kind", "value", name="uq_user_identifiers_kind_value"),
        # At most one user_id per profile.
        sa.Index(
            "uq_user_identifiers_one_user_id",
            "user_id",
            unique=True,
            sqlite_where=sa.text("kind = 'user_id'"),
            postgresql_where=sa.text("kind = 'user_id'"),
        ),
        # A userId names one profile, as its user_id or as the previous_user_id it was renamed from: two batches
        # racing to claim one as each kind collide here, and the one that lost is retried (migration 0016).
        sa.Index(
            "uq_user_identifiers_user_id_value",
            "value",
            unique=True,
            sqlite_where=sa.text("kind IN ('user_id', 'previous_user_id')"),
            postgresql_where=sa.text("kind IN ('user_id', 'previous_user_id')"),
        ),
    )

    id: int | None = _id()
    user_id: int = _ref("users.id")
    kind: str = Field(max_length=16)
    value: str = Field(max_length=255)
    created_at: datetime = _time()


# Profile search by the start of an email or of its domain, whether the email is a trait or (identify_by_email)
# an identifier: ranges of these indexes. Only email identifiers enter the last one (the condition is a literal in
# the queries too, so both backends see the index applies); its leading `kind` makes it the one SQLite's planner
# picks over the unique (kind, value) index, which would read every email.
EMAIL_KIND = sa.text("kind = 'email'")
sa.Index("ix_users_email_trait", EmailTrait(User.__table__.c.traits))
sa.Index("ix_users_email_trait_domain", AfterAt(EmailTrait(User.__table__.c.traits)))
sa.Index(
    "ix_user_identifiers_email_domain",
    UserIdentifier.__table__.c.kind,
    AfterAt(UserIdentifier.__table__.c.value),
    postgresql_where=EMAIL_KIND,
    sqlite_where=EMAIL_KIND,
)


class Event(TableModel, table=True):
    __tablename__ = "events"
    __table_args__ = (sa.Index("ix_events_user_time", "user_id", "timestamp"),)

    id: int | None = _id()
    user_id: int = _ref("users.id", index=False)
    message_id: str = Field(max_length=255, sa_column_kwargs={"unique": True})
    type: str = Field(max_length=16)  # track, page, screen
    event: str = Field(max_length=255, index=True)
    source: str = Field(default="segment", max_length=64)
    timestamp: datetime = _time()
    received_at: datetime = _time(index=True)  # retention deletes by it
    properties: dict[str, Any] = _json()
    context: dict[str, Any] = _json()
    # Its sender's routing ({"All": false, "Mixpanel": true}), forwarded with the event; None when it had none.
    integrations: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))
    # The account the user was linked to when the event was stored: account usage counts
    # the event there, and a rebuild from the events must give the same answer.
    account_id: int | None = Field(default=None, sa_type=BigId)


class IdentityAudit(TableModel, table=True):
    """Every merge, every rename by alias, and every link refused because two user_ids differ."""

    __tablename__ = "identity_audit"

    id: int | None = _id()
    action: str = Field(max_length=16)  # merge, conflict, rename
    kept_user_id: int | None = Field(default=None, sa_type=BigId)
    merged_user_id: int | None = Field(default=None, sa_type=BigId)
    message_id: str | None = Field(default=None, max_length=255)
    details: dict[str, Any] = _json()
    created_at: datetime = _time(index=True)


# --- product usage and audiences ------------------------------------------


class FeatureUsage(TableModel, table=True):
    """Track events carrying properties.feature, summed per user or account, feature and UTC day.

    Day granularity keeps the 30-day and 12-week figures exact; the rows only ever add up,
    so late events and merges keep them exact too (score = positive - negative).
    """

    __tablename__ = "feature_usage"

    entity: str = Field(max_length=8, primary_key=True)  # user, account
    entity_id: int = Field(sa_column=sa.Column(BigId, primary_key=True, autoincrement=False))
    feature: str = Field(max_length=255, primary_key=True)
    day: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    count: int = 0
    positive: int = 0
    negative: int = 0
    first_at: datetime = _time()
    last_at: datetime = _time()


class AudienceMembership(TableModel, table=True):
    """An Engage audience a user entered or exited; member while the latest entry is after the latest exit."""

    __tablename__ = "audience_memberships"

    user_id: int = Field(sa_column=sa.Column(BigId, sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True))
    audience: str = Field(max_length=255, primary_key=True, index=True)
    entered_at: datetime | None = _time(nullable=True)
    exited_at: datetime | None = _time(nullable=True)


class SeenName(TableModel, table=True):
    """A name the connector has seen, kept by processing as it applies messages (profile/names.py): a trait key of
    a user or an account, an event's name. Only ever added to: a name once seen stays (pickers offer it, the
    segment editor and the settings know it), whatever retention or erasure later removes."""

    __tablename__ = "seen_names"

    entity: str = Field(max_length=16, primary_key=True)  # user, account
    kind: str = Field(max_length=16, primary_key=True)  # trait, event
    name: str = Field(max_length=255, primary_key=True)


# --- segments --------------------------------------------------------------


class Segment(TableModel, table=True):
    __tablename__ = "segments"

    id: int | None = _id()
    name: str = Field(max_length=200, sa_column_kwargs={"unique": True})
    entity: str = Field(default=Entity.USER.value, max_length=16)  # an Entity
    rule: dict[str, Any] = _json()
    created_at: datetime = _time()
    updated_at: datetime = _time()
    computed_at: datetime | None = _time(nullable=True)


class SegmentMembership(TableModel, table=True):
    __tablename__ = "segment_memberships"
    __table_args__ = (sa.Index("ix_segment_memberships_entity", "entity_id"),)

    segment_id: int = Field(
        sa_column=sa.Column(BigId, sa.ForeignKey("segments.id", ondelete="CASCADE"), primary_key=True)
    )
    entity_id: int = Field(sa_column=sa.Column(BigId, primary_key=True, autoincrement=False))
    entered_at: datetime = _time()


class SegmentTransition(TableModel, table=True):
    """An entry or exit, with the segment's name and entity as they were: a transition outlives a
    rename or the deletion of its segment, so its Segment Exited can still be sent."""

    __tablename__ = "segment_transitions"

    id: int | None = _id()
    segment_id: int | None = _ref("segments.id", nullable=True, ondelete="SET NULL")
    segment_name: str = Field(max_length=200)
    entity: str = Field(max_length=16)  # user, account
    entity_id: int = Field(sa_type=BigId, index=True)
    transition: str = Field(max_length=8)  # entered, exited
    initial: bool = False
    at: datetime = _time(index=True)  # the segment list counts the last 24 hours by it
    # Written when the segment is deleted, on its transitions: what the settings said of it just before (its
    # segment_events entry, whether it was synchronized), since the deletion takes it out of them.
    retired: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONType, nullable=True))


# --- outbound --------------------------------------------------------------


class OutboxItem(TableModel, table=True):
    """Something to send. `key` coalesces: one row per user or account, one per event.

    A change to a row already waiting bumps `version`; the sender deletes the row only
    if the version it sent is still the current one, so no change is ever lost.
    """

    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_available", "available_at", "id"),)

    id: int | None = _id()
    key: str = Field(max_length=255, sa_column_kwargs={"unique": True})
    version: int = 1
    attempts: int = 0
    available_at: datetime = _time()
    claimed_until: datetime | None = _time(nullable=True)
    last_error: str | None = Field(default=None, sa_type=sa.Text)
    failing_since: datetime | None = _time(nullable=True)  # the first failure of the current run of them
    created_at: datetime = _time()


class DeliveryState(TableModel, table=True):
    """What Segment last received per identify/group target: the payload's hash, the segment names
    it carried (so a segment left, renamed or deleted is sent as `false`), and whether the
    target was still in the outbound filter (False once its farewell call was delivered)."""

    __tablename__ = "delivery_state"

    key: str = Field(max_length=255, primary_key=True)
    payload_hash: str = Field(max_length=64)
    segments: list[str] = Field(
        default_factory=list, sa_column=sa.Column(JSONType, nullable=False, server_default=sa.text("'[]'"))
    )
    in_filter: bool = Field(default=True, sa_column_kwargs={"server_default": sa.true()})
    delivered_at: datetime = _time()
    # The account a group call was about (None before migration 0010: taken as the user's account).
    account_id: int | None = Field(default=None, sa_type=BigId)


class DeadLetter(TableModel, table=True):
    __tablename__ = "dead_letters"

    id: int | None = _id()
    message: dict[str, Any] = _json()
    reason: str = Field(sa_type=sa.Text)
    status_code: int | None = None
    created_at: datetime = _time(index=True)
    replayed_at: datetime | None = _time(nullable=True)


# --- operations ------------------------------------------------------------


class ActivityEntry(TableModel, table=True):
    """Hull's user log: what happened to one user or account and why, newest first by id.

    `action` is the log's event name (`incoming.user.success`, `segment.entered`,
    `outgoing.user.skip`, ...); `details` holds what changed or the reason. Written set-based
    in the transactions that did the work; removed after `activity_retention_days`.
    """

    __tablename__ = "activity_log"
    __table_args__ = (sa.Index("ix_activity_log_entity", "entity", "entity_id", "id"),)

    id: int | None = _id()
    entity: str = Field(max_length=8)  # user, account
    entity_id: int = Field(sa_type=BigId)
    action: str = Field(max_length=64)
    message_id: str | None = Field(default=None, max_length=255)
    details: dict[str, Any] = _json()
    created_at: datetime = _time(index=True)


class Suppression(TableModel, table=True):
    """An identifier of an erased profile: its messages are acknowledged and dropped until removed.

    Only a SHA-256 of the value is kept, so the list itself holds no personal data.
    """

    __tablename__ = "suppressions"

    kind: str = Field(max_length=16, primary_key=True)  # user_id, anonymous_id, email
    value_hash: str = Field(max_length=64, primary_key=True, index=True)
    created_at: datetime = _time()


class WorkerHeartbeat(TableModel, table=True):
    """One row per worker process, touched every round: no beat for 60 s makes the status an error."""

    __tablename__ = "worker_heartbeats"

    worker: str = Field(max_length=128, primary_key=True)  # host:pid
    started_at: datetime = _time()
    beat_at: datetime = _time()


class ScheduledRun(TableModel, table=True):
    """When a piece of scheduled work last ran (`icp`: every account scored again), shared by the workers."""

    __tablename__ = "scheduled_runs"

    name: str = Field(max_length=64, primary_key=True)
    ran_at: datetime = _time()


class SyncRun(TableModel, table=True):
    """A sync: the profiles queued at once to be sent to Segment (outbound/resync.py), by a settings save that
    added segments to the outbound filter (`trigger` settings) or by a resync (`resync`: the dashboard's "Send
    to everyone now", `connector resync`). Its progress is counted from the activity log since `started_at`."""

    __tablename__ = "sync_runs"

    id: int | None = _id()
    trigger: str = Field(max_length=16)
    segments: list[str] = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    users: int = 0
    accounts: int = 0
    started_at: datetime = _time(index=True)


class SegmentWorkspace(TableModel, table=True):
    """The Segment workspace connected through the Public API (service/workspace.py), one row: its id, slug
    and name, the region, the sources chosen, the Webhooks destinations the connector manages there (created
    or adopted) and the HTTP API source it sends back through. The token itself is a credential."""

    __tablename__ = "segment_workspace"

    id: int = Field(default=1, primary_key=True)
    workspace: dict[str, Any] = _json()
    region: str = Field(max_length=8)
    source_ids: list[str] = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    destinations: list[dict[str, Any]] = Field(default_factory=list, sa_column=sa.Column(JSONType, nullable=False))
    back_source: dict[str, Any] = _json()
    updated_at: datetime = _time()


class RoundTrip(TableModel, table=True):
    """A round-trip test (flow/round_trips.py): one test event sent through the write key at `sent_at`;
    `refused` says why Segment refused it on the way out, `arrived_at` when it came back to /segment."""

    __tablename__ = "round_trips"

    id: int | None = _id()
    nonce: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    sent_at: datetime = _time(index=True)
    refused: str | None = Field(default=None, sa_column=sa.Column(sa.Text(), nullable=True))
    arrived_at: datetime | None = _time(nullable=True)


class SegmentApiAnswer(TableModel, table=True):
    """The last answer Segment's API gave for a write key (kept by its hash, never the key)."""

    __tablename__ = "segment_api_answers"

    write_key_hash: str = Field(max_length=64, primary_key=True)
    status_code: int | None = None  # None: no HTTP answer (network error)
    reason: str | None = Field(default=None, sa_type=sa.Text)
    answered_at: datetime = _time()


# --- configuration ---------------------------------------------------------


class SettingsVersion(TableModel, table=True):
    """Each saved settings document; the highest version is in force."""

    __tablename__ = "settings_versions"

    version: int = Field(sa_column=sa.Column(sa.Integer, primary_key=True, autoincrement=False))
    document: dict[str, Any] = _json()
    created_at: datetime = _time()


class Credential(TableModel, table=True):
    """Generated secrets (the inbound API key)."""

    __tablename__ = "credentials"

    name: str = Field(max_length=64, primary_key=True)
    value: str = Field(max_length=255)
    created_at: datetime = _time()
