"""Behind a transaction-mode pooler (PgBouncer, Heroku's connection pooling, Supabase, Neon) each transaction may
run on another server connection, so the code keeps nothing on a connection past its transaction
(docs/architecture.md, "Connections"). These tests read the connector's source for what would: a session-level
advisory lock, a SET or set_config outside the transaction, LISTEN, a PREPARE, a temporary table not dropped at
commit.
"""

import re
from pathlib import Path

import pytest

SOURCE = Path(__file__).parents[2] / "connector"

# Each pattern, and what it would keep on the server connection.
SESSION_STATE = {
    "session-level advisory lock (use pg_advisory_xact_lock)": re.compile(r"advisory_(?!xact_)\w*lock", re.I),
    "SET of a session variable (use SET LOCAL)": re.compile(
        r"""["']\s*SET\s+(SESSION\s+)?(ROLE\b|[\w.]+\s*(=|TO\b))""", re.I
    ),
    "set_config for the session (its third argument must be true)": re.compile(
        r"set_config\([^)]*,\s*(false|False)\s*\)", re.I
    ),
    "LISTEN (its notifications go to one server connection)": re.compile(
        r"""["']\s*(UN)?LISTEN\b|add_listener\(""", re.I
    ),
    "PREPARE (a named statement outlives the transaction)": re.compile(r"""["']\s*PREPARE\b""", re.I),
    "temporary table kept past commit (add ON COMMIT DROP)": re.compile(
        r"""(CREATE\s+TEMP(ORARY)?\s+TABLE(?![^"']*ON\s+COMMIT\s+DROP))"""
        r"""|(prefixes=\[["']TEMP(ORARY)?["']\](?![^)]*postgresql_on_commit=["']DROP["']))""",
        re.I,
    ),
}


def session_state(source: str) -> list[str]:
    """What in `source` would keep state on the server connection past the transaction."""
    return [reason for reason, pattern in SESSION_STATE.items() if pattern.search(source)]


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("sa.func.pg_advisory_lock(7, 1)", "session-level advisory lock (use pg_advisory_xact_lock)"),
        ("SELECT pg_try_advisory_lock_shared(1)", "session-level advisory lock (use pg_advisory_xact_lock)"),
        ('sa.text("SET statement_timeout = 5000")', "SET of a session variable (use SET LOCAL)"),
        ("sa.text('SET SESSION work_mem TO 1')", "SET of a session variable (use SET LOCAL)"),
        ("sa.text('set role reader')", "SET of a session variable (use SET LOCAL)"),
        (
            "SELECT set_config('jit', 'off', false)",
            "set_config for the session (its third argument must be true)",
        ),
        ('await conn.execute(sa.text("LISTEN outbox"))', "LISTEN (its notifications go to one server connection)"),
        ("await driver.add_listener('outbox', wake)", "LISTEN (its notifications go to one server connection)"),
        ('sa.text("PREPARE lookup AS SELECT 1")', "PREPARE (a named statement outlives the transaction)"),
        ('sa.text("CREATE TEMP TABLE ids (id bigint)")', "temporary table kept past commit (add ON COMMIT DROP)"),
        (
            'sa.Table("ids", metadata, sa.Column("id", sa.BigInteger), prefixes=["TEMPORARY"])',
            "temporary table kept past commit (add ON COMMIT DROP)",
        ),
    ],
)
def test_code_keeping_state_on_the_connection_is_caught(code, reason):
    assert session_state(code) == [reason]


@pytest.mark.parametrize(
    "code",
    [
        "sa.func.pg_advisory_xact_lock(7, 1)",
        "WHERE pg_try_advisory_xact_lock(:lock_class, p)",
        'sa.text("SET LOCAL lock_timeout = 500")',
        "ondelete='SET NULL'",
        'Field(None, description="Set by Heroku on every dyno")',
        'sa.text("UPDATE outbox SET claimed_until = NULL")',
        "SELECT set_config('jit', 'off', true)",
        'sa.text("CREATE TEMP TABLE ids (id bigint) ON COMMIT DROP")',
        'sa.Table("ids", m, sa.Column("id", sa.BigInteger), prefixes=["TEMPORARY"], postgresql_on_commit="DROP")',
    ],
)
def test_what_ends_with_the_transaction_passes(code):
    assert session_state(code) == []


def test_no_connector_module_keeps_state_on_a_connection_past_its_transaction():
    found = {
        str(path.relative_to(SOURCE)): reasons
        for path in sorted(SOURCE.rglob("*.py"))
        if (reasons := session_state(path.read_text()))
    }
    assert found == {}
