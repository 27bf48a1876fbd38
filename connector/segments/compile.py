"""The SQL evaluator: a (valid) rule compiled to SQLAlchemy Core, for SQLite and PostgreSQL.

Every condition compiles to an expression that is true or false, never NULL (so that
``not`` means what it means in Python), and every type test guards the operation that
needs it with CASE, because PostgreSQL does not promise to evaluate AND left to right
(a cast of a string to a number would fail the whole statement). Semantics: rules.py.
"""

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from connector.core.kinds import Entity
from connector.core.models import Account, Event, User
from connector.profile.audiences import member_condition
from connector.segments.evaluate import compare, event_since
from connector.segments.rules import DEFAULT_COUNT, Scalar, attribute_of, datetime_key, parse_date

TABLES = {Entity.USER: User.__table__, Entity.ACCOUNT: Account.__table__}
events = Event.__table__
SQLITE_KINDS = {
    "string": ("text",),
    "number": ("integer", "real"),
    "boolean": ("true", "false"),
    "array": ("array",),
    "object": ("object",),
}
DATE_GLOB = "[0-9][0-9][0-9][0-9]-[0-9][0-9]-[0-9][0-9]"
TIME_GLOB = "[0-9][0-9]:[0-9][0-9]:[0-9][0-9]"


def _guard(condition: Any, then: Any) -> Any:
    return sa.case((condition, then), else_=sa.false())


class SqliteJson:
    """A JSON value in SQLite: its json_type() and its SQL value (text, number, 1/0 for booleans)."""

    def __init__(self, type_: Any, value: Any, elements: Any = None):
        self.type_, self.value, self._elements = type_, value, elements

    @classmethod
    def at(cls, column: Any, path: tuple[str, ...]) -> "SqliteJson":
        where = "$" + "".join(f'."{part}"' for part in path)
        return cls(
            sa.func.json_type(column, where),
            sa.func.json_extract(column, where),
            lambda: sa.func.json_each(column, where).table_valued("type", "value").alias("element"),
        )

    def present(self) -> Any:
        return sa.func.coalesce(self.type_, "null") != "null"

    def is_kind(self, kind: str) -> Any:
        return self.type_.in_(SQLITE_KINDS[kind])

    def text(self) -> Any:
        return self.value

    def number(self) -> Any:
        # As a 64-bit float, as in Python and PostgreSQL: SQLite compares an integer with a real exactly.
        return sa.cast(self.value, sa.Float)

    def boolean_is(self, value: bool) -> Any:
        return self.type_ == ("true" if value else "false")

    def elements(self) -> tuple[Any, "SqliteJson"]:
        table = self._elements()
        return table, SqliteJson(table.c.type, table.c.value)


class PostgresJson:
    """A JSONB value in PostgreSQL."""

    def __init__(self, value: Any):
        self.value = value
        self.type_ = sa.func.jsonb_typeof(value)

    @classmethod
    def at(cls, column: Any, path: tuple[str, ...]) -> "PostgresJson":
        # `->` with a text key never indexes into an array (unlike `#>`), as in Python.
        value: sa.ColumnElement[Any] = sa.type_coerce(column, JSONB)
        for part in path:
            value = value.op("->", return_type=JSONB)(sa.literal(part, sa.Text))
        return cls(value)

    def present(self) -> Any:
        return sa.func.coalesce(self.type_, "null") != "null"

    def is_kind(self, kind: str) -> Any:
        return self.type_ == kind

    def text(self) -> Any:
        return self.value.op("#>>", return_type=sa.Text)(sa.literal_column("'{}'"))

    def number(self) -> Any:
        return sa.cast(self.value, sa.Float)

    def boolean_is(self, value: bool) -> Any:
        return self.text() == ("true" if value else "false")

    def elements(self) -> tuple[Any, "PostgresJson"]:
        table = sa.func.jsonb_array_elements(self.value).table_valued("value").alias("element")
        return table, PostgresJson(sa.type_coerce(table.c.value, JSONB))


class ColumnValue:
    """A plain column or scalar subquery (a string, a number or a timestamp), NULL when absent."""

    def __init__(self, column: Any, kind: str):
        self.column, self.kind = column, kind

    def present(self) -> Any:
        return self.column.is_not(None)

    def is_kind(self, kind: str) -> Any:
        return self.column.is_not(None) if kind == self.kind else sa.false()

    # Each is only reached under a guard that is true for its own kind; the NULLs keep
    # PostgreSQL from type-checking, say, a number against a text literal.
    def text(self) -> Any:
        return self.column if self.kind == "string" else sa.null()

    def number(self) -> Any:
        return self.column if self.kind == "number" else sa.null()

    def boolean_is(self, value: bool) -> Any:
        return sa.false()


class ListValue:
    """A list given by a SELECT of one column, one row per element (of `kind`); never absent."""

    def __init__(self, select: Any, kind: str):
        self.select, self.kind = select, kind

    def present(self) -> Any:
        return sa.true()

    def is_kind(self, kind: str) -> Any:
        return sa.true() if kind == "array" else sa.false()

    def text(self) -> Any:
        return sa.null()

    def number(self) -> Any:
        return sa.null()

    def boolean_is(self, value: bool) -> Any:
        return sa.false()

    def elements(self) -> tuple[Any, ColumnValue]:
        table = self.select.subquery("element")
        return table, ColumnValue(next(iter(table.c)), self.kind)


class Compiler:
    """Compiles rules for one entity and one `now`; collects the joins the rule needs."""

    def __init__(self, dialect: str, entity: Entity, now: datetime):
        self.dialect, self.entity, self.now = dialect, entity, now
        self.today = now.astimezone(UTC).date()  # what usage windows are relative to
        self.table = TABLES[entity]
        self.joins: dict[Any, tuple[Any, Any]] = {}
        self.json = PostgresJson if dialect == "postgresql" else SqliteJson

    def select_ids(self, rule: dict[str, Any]) -> Any:
        """SELECT the ids of every user (or account) that matches `rule`."""
        condition = self.compile(rule)
        source: Any = self.table
        for joined, on in self.joins.values():
            source = source.outerjoin(joined, on)
        return sa.select(self.table.c.id).select_from(source).where(condition)

    def compile(self, rule: dict[str, Any]) -> Any:
        if "all" in rule:
            parts = [self.compile(part) for part in rule["all"]]
            return sa.and_(*parts) if parts else sa.true()
        if "any" in rule:
            parts = [self.compile(part) for part in rule["any"]]
            return sa.or_(*parts) if parts else sa.false()
        if "not" in rule:
            return sa.not_(self.compile(rule["not"]))
        kind = next(key for key in CONDITIONS if key in rule)
        return CONDITIONS[kind](self, rule)

    # --- what attribute roots use (attributes.py) ---------------------------------

    def account(self) -> Any:
        """The user's account, LEFT JOINed once."""
        if "account" not in self.joins:
            account = Account.__table__.alias("account")
            self.joins["account"] = (account, account.c.id == self.table.c.account_id)
        return self.joins["account"][0]

    def json_value(self, column: Any, path: tuple[str, ...]) -> Any:
        return self.json.at(column, path)

    def column_value(self, column: Any, kind: str) -> ColumnValue:
        return ColumnValue(column, kind)

    def list_value(self, select: Any, kind: str) -> ListValue:
        return ListValue(select, kind)

    # --- operators ---------------------------------------------------------------

    def equals(self, value: Any, scalar: Scalar) -> Any:
        if scalar.kind == "boolean":
            test = value.boolean_is(scalar.value)
        elif scalar.kind == "number":
            test = value.number() == sa.literal(scalar.value, sa.Float)
        else:
            test = value.text() == sa.literal(scalar.value, sa.Text)
        return _guard(value.is_kind(scalar.kind), test)

    def contains(self, value: Any, expected: Any) -> Any:
        branches = []
        if isinstance(expected, str):
            position = sa.func.strpos if self.dialect == "postgresql" else sa.func.instr
            branches.append((value.is_kind("string"), position(value.text(), sa.literal(expected, sa.Text)) > 0))
        if hasattr(value, "elements"):
            table, element = value.elements()
            found = sa.select(sa.literal(1)).select_from(table).where(self.equals(element, Scalar.of(expected)))
            branches.append((value.is_kind("array"), sa.exists(found)))
        return sa.case(*branches, else_=sa.false()) if branches else sa.false()

    def affix(self, value: Any, op: str, expected: str) -> Any:
        text, size = value.text(), len(expected)
        if op == "starts_with":
            part = sa.func.substr(text, 1, size)
        else:
            part = sa.func.right(text, size) if self.dialect == "postgresql" else sa.func.substr(text, -size)
        return _guard(value.is_kind("string"), part == sa.literal(expected, sa.Text))

    def matches(self, text: Any, glob: str) -> Any:
        if self.dialect == "postgresql":
            return text.op("~")(sa.literal(f"^{glob}$", sa.Text))  # the globs used here are valid regexes
        return text.op("GLOB")(sa.literal(glob, sa.Text))

    def date_key(self, text: Any) -> Any:
        """SQL for rules.date_key: the comparable `YYYY-MM-DD HH:MM:SS` of a date-like string."""
        day, time = sa.func.substr(text, 1, 10, type_=sa.Text), sa.func.substr(text, 12, 8, type_=sa.Text)
        key = day.concat(" ").concat(sa.case((sa.func.length(text) == 10, "00:00:00"), else_=time))
        return sa.collate(key, "C") if self.dialect == "postgresql" else key

    def date_shape(self, text: Any) -> Any:
        day, time = sa.func.substr(text, 1, 10, type_=sa.Text), sa.func.substr(text, 12, 8, type_=sa.Text)
        return sa.and_(
            self.matches(day, DATE_GLOB),
            sa.or_(
                sa.func.length(text) == 10,
                sa.and_(sa.func.substr(text, 11, 1).in_(["T", " "]), self.matches(time, TIME_GLOB)),
            ),
        )

    def date(self, value: Any, kind: str, op: str, expected: Any) -> Any:
        if kind == "datetime":
            moment = value.column
            if op == "within_last_days":
                test = sa.and_(moment >= self.now - timedelta(days=expected), moment <= self.now)
            else:
                bound = parse_date(expected)
                test = moment < bound if op == "before" else moment > bound
            return _guard(moment.is_not(None), test)
        key = self.date_key(value.text())
        if op == "within_last_days":
            test = sa.and_(key >= datetime_key(self.now - timedelta(days=expected)), key <= datetime_key(self.now))
        else:
            # as in evaluate.py: the value's offset applies (a validated rule's value is a date)
            bound_key = datetime_key(cast(datetime, parse_date(expected)))
            test = key < bound_key if op == "before" else key > bound_key
        return _guard(value.is_kind("string"), _guard(self.date_shape(value.text()), test))


def _attribute(compiler: Compiler, node: dict[str, Any]) -> Any:
    attribute, path = attribute_of(compiler.entity, node)
    value = attribute.sql(compiler, path)
    op: str = node["op"]
    expected: Any = node.get("value")  # its JSON type follows op: rules.py validated the rule
    if op in ("exists", "not_exists"):
        return value.present() if op == "exists" else sa.not_(value.present())
    if op in ("eq", "neq"):
        test = compiler.equals(value, Scalar.of(expected))
        return test if op == "eq" else sa.not_(test)
    if op in ("in", "not_in"):
        test = sa.or_(*(compiler.equals(value, Scalar.of(item)) for item in expected))
        return test if op == "in" else sa.not_(test)
    if op == "contains":
        return compiler.contains(value, expected)
    if op in ("starts_with", "ends_with"):
        return compiler.affix(value, op, expected)
    if op in ("gt", "gte", "lt", "lte"):
        return _guard(value.is_kind("number"), compare(value.number(), op, sa.literal(float(expected), sa.Float)))
    return compiler.date(value, attribute.kind, op, expected)


def _event(compiler: Compiler, node: dict[str, Any]) -> Any:
    since = event_since(node, compiler.now)
    key = ("event", node["event"], since)
    if key not in compiler.joins:
        conditions = [events.c.event == node["event"]]
        if since is not None:
            conditions.append(events.c.timestamp >= since)
        counts = (
            sa.select(events.c.user_id, sa.func.count().label("n"))
            .where(*conditions)
            .group_by(events.c.user_id)
            .subquery(f"event_counts_{len(compiler.joins)}")
        )
        compiler.joins[key] = (counts, counts.c.user_id == compiler.table.c.id)
    count = sa.func.coalesce(compiler.joins[key][0].c.n, 0)
    # BigInteger: PostgreSQL would otherwise take the bound for an int4 and refuse one past 2**31.
    return sa.and_(
        *(
            compare(count, op, sa.literal(bound, sa.BigInteger))
            for op, bound in node.get("count", DEFAULT_COUNT).items()
        )
    )


def _audience(compiler: Compiler, node: dict[str, Any]) -> Any:
    return member_condition(compiler.table.c.id, node["audience"])


CONDITIONS = {"attribute": _attribute, "event": _event, "audience": _audience}
