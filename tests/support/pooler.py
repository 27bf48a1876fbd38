"""A real PgBouncer in transaction mode in front of the test PostgreSQL, as Heroku's, Supabase's and Neon's
connection pooling are: each transaction may run on another server connection, so nothing may outlive one.

It runs Debian's `pgbouncer` binary with its own configuration, pidfile and log in a temporary directory, on a
free port, as the `postgres` user (PgBouncer refuses to run as root). `stop()` and `start()` again on the same
port stand for the pooler restarting under load.
"""

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.support.app import free_port

PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
POOL_SIZE = 20


def pgbouncer_binary() -> str | None:
    found = shutil.which("pgbouncer")
    return found or next((path for path in PGBOUNCER_PATHS if os.path.exists(path)), None)


class PgBouncer:
    """PgBouncer (pool_mode=transaction, auth_type=any) forwarding every database to `postgres_url`'s server."""

    def __init__(self, binary: str, postgres_url: str):
        self.binary = binary
        server = urlsplit(postgres_url)
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.config = self.directory / "pgbouncer.ini"
        self.log = self.directory / "pgbouncer.log"
        self.config.write_text(
            "[databases]\n"
            f"* = host={server.hostname} port={server.port or 5432} user={server.username or 'postgres'}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {self.port}\nunix_socket_dir =\n"
            "auth_type = any\npool_mode = transaction\n"
            f"default_pool_size = {POOL_SIZE}\nmax_client_conn = 1000\n"
            f"pidfile = {self.directory / 'pgbouncer.pid'}\nlogfile = {self.log}\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        if os.geteuid() == 0:  # the directory must be the postgres user's, who runs PgBouncer
            postgres = pwd.getpwnam("postgres")
            for path in (self.directory, self.config):
                os.chown(path, postgres.pw_uid, postgres.pw_gid)

    def url(self, database_url: str) -> str:
        """`database_url` (same user and database) through the pooler."""
        parts = urlsplit(database_url)
        return parts._replace(netloc=f"{parts.username or 'postgres'}@127.0.0.1:{self.port}").geturl()

    def start(self) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        self.process = subprocess.Popen(
            [*as_postgres, self.binary, str(self.config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 10
        while not _listening(self.port):
            assert self.process.poll() is None, f"pgbouncer exited:\n{self.output()}"
            assert time.monotonic() < deadline, f"pgbouncer did not listen within 10 s:\n{self.output()}"
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop at once (SIGTERM: PgBouncer closes every client and server connection), as a crash or a
        restart of the pooler would."""
        if self.process is None or self.process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
