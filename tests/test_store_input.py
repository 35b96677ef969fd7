"""Bad input gets a clear error and leaves nothing half-written; odd but valid text is stored verbatim."""

from __future__ import annotations

import base64
import json
import uuid

import psycopg
import pytest

from services.auth import Principal
from services.store import InvalidCursor, InvalidInput, NotFound
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

P = Principal("user_input")


def message_count(database: EmbeddedDatabase) -> int:
    with psycopg.connect(database.admin_url) as conn:
        row = conn.execute("select count(*) from messages where user_id = 'user_input'").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture(scope="module")
def conv(store: PostgresStore) -> uuid.UUID:
    return store.create_conversation(P, "inputs").id


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("hello\x00world", "NUL"),
        ("x" * 1_048_576, "too long: 1,048,576 characters, the limit is 32,000"),
        ("x" * 32_001, "limit is 32,000"),
        ("", "empty"),
        ("   \n\t ", "empty"),
    ],
)
def test_rejected_content_is_explained_and_not_stored(
    store: PostgresStore, database: EmbeddedDatabase, conv: uuid.UUID, content: str, fragment: str
) -> None:
    before = message_count(database)
    with pytest.raises(InvalidInput, match=fragment):
        store.add_message(P, conv, "user", content, "demo")
    assert message_count(database) == before


def test_content_at_the_limit_is_accepted(store: PostgresStore, conv: uuid.UUID) -> None:
    assert len(store.add_message(P, conv, "user", "y" * 32_000, "demo").content) == 32_000


@pytest.mark.parametrize(
    "content",
    [
        "'; drop table messages; --",
        "Robert'); DELETE FROM conversations WHERE ('1'='1",
        "<script>alert(1)</script><img src=x onerror=alert(2)>",
        "%s %(x)s {0} $1 \\x00 \\' \"",
        "emoji 🦜 and RTL \u202e and combining é",
        "line1\r\nline2\n\n",
    ],
)
def test_metacharacters_and_html_are_stored_verbatim(store: PostgresStore, conv: uuid.UUID, content: str) -> None:
    saved = store.add_message(P, conv, "user", content, "demo")
    assert saved.content == content
    assert store.recent_messages(P, conv, limit=1)[0].content == content


def test_a_streaming_reply_is_updated_in_place(store: PostgresStore, conv: uuid.UUID) -> None:
    draft = store.add_message(P, conv, "assistant", "", "demo", "streaming")
    done = store.update_message(
        P, draft.id, content="full reply", status="complete", input_tokens=3, output_tokens=2, latency_ms=40
    )
    assert (done.id, done.status, done.content, done.input_tokens, done.output_tokens) == (
        draft.id,
        "complete",
        "full reply",
        3,
        2,
    )
    with pytest.raises(InvalidInput):
        store.update_message(P, draft.id, content="x", status="finished")


def _b64(obj: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!!",
        "x" * 300,
        _b64([1, 2, 3]),
        _b64({"v": 2, "t": "2026-01-01T00:00:00+00:00", "i": str(uuid.uuid4()), "o": "abc"}),
        _b64({"v": 1, "t": "not a time", "i": str(uuid.uuid4()), "o": "abc"}),
        _b64({"v": 1, "t": "2026-01-01T00:00:00", "i": str(uuid.uuid4()), "o": "abc"}),
        _b64({"v": 1, "t": "2026-01-01T00:00:00+00:00", "i": "not-a-uuid", "o": "abc"}),
        "' or 1=1 --",
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
    ],
)
def test_garbage_cursors_are_a_clear_error(store: PostgresStore, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="page link is not valid"):
        store.page_messages(P, before=cursor)


def test_a_cursor_made_for_another_user_is_refused(store: PostgresStore) -> None:
    from datetime import UTC, datetime

    foreign = store.cursors.encode(Principal("user_else"), "messages", datetime.now(UTC), uuid.uuid4())
    with pytest.raises(InvalidCursor):
        store.page_messages(P, before=foreign)


@pytest.mark.parametrize("limit", [0, -1, 201, 10_000, True, "20", 2.5])
def test_limit_out_of_range_is_a_clear_error(store: PostgresStore, limit: object) -> None:
    with pytest.raises(InvalidInput, match="between 1 and 200"):
        store.page_messages(P, limit=limit)  # type: ignore[arg-type]


@pytest.mark.parametrize("conversation_id", [str(uuid.uuid4()), "not-a-uuid", "'; drop table x; --"])
def test_unknown_conversation_is_not_found(store: PostgresStore, conversation_id: str) -> None:
    with pytest.raises(NotFound, match="does not exist"):
        store.page_messages(P, conversation_id=conversation_id)
    with pytest.raises(NotFound):
        store.add_message(P, conversation_id, "user", "hi", "demo")


def test_bad_roles_statuses_and_titles(store: PostgresStore, conv: uuid.UUID) -> None:
    with pytest.raises(InvalidInput, match="role"):
        store.add_message(P, conv, "system", "hi", "demo")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="status"):
        store.add_message(P, conv, "user", "hi", "demo", "done")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="title cannot be empty"):
        store.rename_conversation(P, conv, "   ")
    renamed = store.rename_conversation(P, conv, "  a   spaced\n title " + "z" * 500)
    assert renamed.title.startswith("a spaced title") and len(renamed.title) == 200
