"""Migration 20261128001100 (the message tree) on a database holding data written by the previous schema.

The database is migrated only up to the version before the tree, rows are written the way the app wrote
them then (as the user, under RLS, with the old columns), then the remaining migrations run and the
resulting parents and current leaves are checked message by message.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from services.app_tokens import APP_ISSUER
from services.store import embedded
from services.store.migrate import discover, migrate

TREE = "20261128001100"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def _as_user(conn: psycopg.Connection, sub: str) -> None:
    conn.execute(
        "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
        [json.dumps({"iss": APP_ISSUER, "chat_scope": "user", "sub": sub, "role": "authenticated"})],
    )


def _write_old(admin_url: str, sub: str, roles: list[str]) -> tuple[uuid.UUID, list[uuid.UUID]]:
    """One conversation with messages of these roles, one second apart, written through the old shape."""
    with psycopg.connect(admin_url) as conn:
        with conn.transaction():
            _as_user(conn, sub)
            row = conn.execute("insert into public.conversations (title) values ('old') returning id").fetchone()
            assert row is not None
            cid = row[0]
            ids = []
            for n, role in enumerate(roles):
                inserted = conn.execute(
                    "insert into public.messages (conversation_id, role, content, model, created_at)"
                    " values (%s, %s, %s, 'demo:echo-1', %s) returning id",
                    [cid, role, f"{role} {n}", T0 + timedelta(seconds=n)],
                ).fetchone()
                assert inserted is not None
                ids.append(inserted[0])
    return cid, ids


@pytest.fixture(scope="module")
def old_then_new(pg_server: embedded.EmbeddedDatabase) -> tuple[str, dict[str, tuple[uuid.UUID, list[uuid.UUID]]]]:
    name = "mig_tree_data"
    embedded.ensure_database(pg_server.admin_url, name)
    admin = pg_server.url_for(name, admin=True)
    previous = max(m.version for m in discover() if m.version < TREE)
    migrate(admin, up_to=previous)
    with psycopg.connect(admin) as conn:
        assert conn.execute(
            "select count(*) from information_schema.columns"
            " where table_name = 'messages' and column_name = 'parent_id'"
        ).fetchone() == (0,)
    written = {
        # a plain exchange
        "linear": _write_old(admin, "user_a", ["user", "assistant", "user", "assistant"]),
        # Regenerate twice after the first question, then a follow-up: the replies become three siblings
        "stacked": _write_old(admin, "user_a", ["user", "assistant", "assistant", "assistant", "user", "assistant"]),
        # a reply that failed, then a new question (two user messages in a row), answered
        "double_user": _write_old(admin, "user_b", ["user", "user", "assistant"]),
        # the last turn has no reply yet
        "unanswered": _write_old(admin, "user_b", ["user", "assistant", "user"]),
        "empty": _write_old(admin, "user_b", []),
    }
    migrate(admin)
    return admin, written


def _parents(admin: str, ids: list[uuid.UUID]) -> list[uuid.UUID | None]:
    with psycopg.connect(admin) as conn:
        found = conn.execute("select id, parent_id from public.messages where id = any(%s)", [ids]).fetchall()
    rows: dict[uuid.UUID, uuid.UUID | None] = dict(found)
    return [rows[i] for i in ids]


def _leaf(admin: str, cid: uuid.UUID) -> uuid.UUID | None:
    with psycopg.connect(admin) as conn:
        row = conn.execute("select current_leaf_id from public.conversations where id = %s", [cid]).fetchone()
    assert row is not None
    return row[0]


def test_nothing_is_lost(old_then_new: tuple[str, dict[str, tuple[uuid.UUID, list[uuid.UUID]]]]) -> None:
    admin, written = old_then_new
    every = [m for _, ids in written.values() for m in ids]
    with psycopg.connect(admin) as conn:
        rows = conn.execute("select id, content from public.messages order by created_at, id").fetchall()
    assert sorted(r[0] for r in rows) == sorted(every)
    assert all(content for _, content in rows)


def test_a_linear_conversation_becomes_a_chain(old_then_new: tuple[str, dict]) -> None:
    admin, written = old_then_new
    cid, (u1, a1, u2, a2) = written["linear"]
    assert _parents(admin, [u1, a1, u2, a2]) == [None, u1, a1, u2]
    assert _leaf(admin, cid) == a2


def test_stacked_regenerated_replies_become_siblings(old_then_new: tuple[str, dict]) -> None:
    admin, written = old_then_new
    cid, (u1, a1, a2, a3, u2, a4) = written["stacked"]
    # all three replies answer u1; the follow-up continues from the newest one, which the context used
    assert _parents(admin, [u1, a1, a2, a3, u2, a4]) == [None, u1, u1, u1, a3, u2]
    assert _leaf(admin, cid) == a4


def test_consecutive_user_messages_stay_a_chain(old_then_new: tuple[str, dict]) -> None:
    admin, written = old_then_new
    cid, (u1, u2, a1) = written["double_user"]
    assert _parents(admin, [u1, u2, a1]) == [None, u1, u2]
    assert _leaf(admin, cid) == a1


def test_an_unanswered_last_message_is_the_leaf_and_an_empty_conversation_has_none(
    old_then_new: tuple[str, dict],
) -> None:
    admin, written = old_then_new
    cid, (u1, a1, u2) = written["unanswered"]
    assert _parents(admin, [u1, a1, u2]) == [None, u1, a1]
    assert _leaf(admin, cid) == u2
    assert _leaf(admin, written["empty"][0]) is None


def test_a_migrated_parent_can_no_longer_be_changed(old_then_new: tuple[str, dict]) -> None:
    admin, written = old_then_new
    _, (u1, a1, *_) = written["linear"]
    with psycopg.connect(admin) as conn, pytest.raises(psycopg.errors.CheckViolation, match="parent cannot"):
        conn.execute("update public.messages set parent_id = null where id = %s", [a1])
