"""Apply `supabase/migrations/*.sql` once each, in order, recording them where the Supabase CLI does.

Safe to run from several processes at once (app replicas starting together): the whole run holds a
session advisory lock, and each migration commits in its own transaction together with its record.
On a plain Postgres the local shim (auth.jwt(), anon/authenticated roles) is applied first; on a real
Supabase database (it has auth.users) the shim is never applied.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS_DIR = ROOT / "supabase" / "migrations"
SHIM = Path(__file__).with_name("shim.sql")
# Any constant works; this one is "chatmigr" in ASCII so it is recognisable in pg_locks.
LOCK_KEY = 0x636861746D696772
_NAME = re.compile(r"^(\d{14})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if match is None:
            raise RuntimeError(f"Migration file {path.name} must be named <14-digit timestamp>_<name>.sql")
        if found and found[-1].version == match.group(1):
            # Versions are the primary key of schema_migrations: the second file would never run.
            raise RuntimeError(f"Migrations {found[-1].path.name} and {path.name} share the version {match.group(1)}")
        found.append(Migration(match.group(1), match.group(2), path))
    return found


def is_supabase(conn: psycopg.Connection) -> bool:
    row = conn.execute("select to_regclass('auth.users') is not null").fetchone()
    return bool(row and row[0])


def apply_shim(conn: psycopg.Connection) -> None:
    with conn.transaction():
        conn.execute(SHIM.read_text(encoding="utf-8"))


def migrate(conninfo: str, directory: Path = MIGRATIONS_DIR, *, up_to: str | None = None) -> list[str]:
    """Apply pending migrations; return the versions applied by this call. `up_to` stops after that
    version (inclusive): tests use it to write data in an older schema before migrating it."""
    migrations = [m for m in discover(directory) if up_to is None or m.version <= up_to]
    applied_now: list[str] = []
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("select pg_advisory_lock(%s)", [LOCK_KEY])
        try:
            if not is_supabase(conn):
                apply_shim(conn)
            with conn.transaction():
                conn.execute("create schema if not exists supabase_migrations")
                conn.execute(
                    "create table if not exists supabase_migrations.schema_migrations ("
                    " version text primary key, statements text[], name text)"
                )
            done = {row[0] for row in conn.execute("select version from supabase_migrations.schema_migrations")}
            for migration in migrations:
                if migration.version in done:
                    continue
                sql = migration.sql
                with conn.transaction():
                    conn.execute(sql)
                    conn.execute(
                        "insert into supabase_migrations.schema_migrations (version, statements, name)"
                        " values (%s, %s, %s)",
                        [migration.version, [sql], migration.name],
                    )
                log.info("applied migration %s_%s", migration.version, migration.name)
                applied_now.append(migration.version)
        finally:
            conn.execute("select pg_advisory_unlock(%s)", [LOCK_KEY])
    return applied_now
