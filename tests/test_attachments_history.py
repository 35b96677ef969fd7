"""Attachments beyond the chat page: History's detail view shows a message's files (read only for the picked
message), and the JSON export carries every original as base64, so nothing is lost (real PostgreSQL, the
real app.py under AppTest)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from components.auth_gate import LOCAL_USER
from devtools.files import image_bytes, pdf_bytes
from services import export
from services.attachments import Limits, Upload, check_all
from services.auth import Principal
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]
PNG = image_bytes(300, 200)
PDF = pdf_bytes(["Exported words"])
LIMITS = Limits(10_000_000, 20_000_000)


def attach(store: PostgresStore, who: Principal, text: str, uploads: list[Upload]) -> None:
    conversation = store.create_conversation(who, "files")
    message = store.add_message(who, conversation.id, "user", text, "demo/echo-1")
    store.add_attachments(who, message.id, check_all(uploads, LIMITS))


def test_the_json_export_carries_every_original_and_links_it_to_its_message(store: PostgresStore) -> None:
    who = Principal(user_id="user_exporter_files")
    attach(store, who, "first", [Upload("cat.png", PNG), Upload("words.pdf", PDF)])
    attach(store, who, "second", [Upload("notes.txt", b"plain notes")])
    attach(store, Principal(user_id="user_someone_else"), "not mine", [Upload("other.txt", b"other")])
    document = json.loads(b"".join(export.export_json(store, who)))
    messages = {m["id"]: m["content"] for m in document["messages"]}
    files = document["attachments"]
    assert [(f["name"], messages[f["message_id"]]) for f in files] == [
        ("cat.png", "first"),
        ("words.pdf", "first"),
        ("notes.txt", "second"),
    ]
    assert [base64.b64decode(f["data_base64"]) for f in files] == [PNG, PDF, b"plain notes"]
    assert [(f["media_type"], f["size"]) for f in files] == [
        ("image/png", len(PNG)),
        ("application/pdf", len(PDF)),
        ("text/plain", 11),
    ]
    # Byte-stable, like the rest of the export.
    assert b"".join(export.export_json(store, who)) == b"".join(export.export_json(store, who))


@pytest.fixture
def history_app(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch) -> Iterator[AppTest]:
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("delete from public.conversations")
    monkeypatch.setenv("CHAT_AUTH", "none")
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    reset_shared_services()
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.run()
    at.switch_page("pages/history.py")
    yield at
    reset_shared_services()


def test_the_detail_view_shows_the_picked_messages_files(history_app: AppTest, store: PostgresStore) -> None:
    attach(store, LOCAL_USER, "look at these", [Upload("cat.png", PNG), Upload("words.pdf", PDF)])
    history_app.run()
    assert not history_app.exception
    assert not history_app.get("image")  # nothing picked: no file is read
    (box,) = [s for s in history_app.selectbox if s.label == "Message details"]
    box.select_index(1).run()
    assert not history_app.exception
    assert [i.proto.imgs[0].caption for i in history_app.get("image")] == ["cat\\.png"]
    assert [b.proto.label for b in history_app.get("download_button")] == [
        "cat\\.png · 1 KB",
        "words\\.pdf · 1 KB",
        "Conversation as Markdown",
    ]
