"""Attachments on the chat page under AppTest, running app.py with the real services on a real PostgreSQL:
refusals (a model without images, a file whose content is not what its name says, a file too large) keep
the typed text in the input box and the files that passed for the retry, and store nothing; sent files
show in the bubble, again after a reload, with the originals read only for a download."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from components.auth_gate import LOCAL_USER
from devtools.files import image_bytes, pdf_bytes
from devtools.wire_servers import WireServer
from services.runtime import reset_shared_services
from services.store import Message
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]
ME = LOCAL_USER
PNG = image_bytes(400, 300)
PDF = pdf_bytes(["Minutes of the meeting", "Second page"])


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture
def app(
    database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., AppTest]]:
    def make(**env: str) -> AppTest:
        base = {
            "CHAT_AUTH": "none",
            "CHAT_DATA_DIR": str(tmp_path),
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "CHAT_DEMO_CHARS_PER_S": "1000000",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        }
        for name in ("OPENAI_BASE_URL", "OPENAI_COMPAT_MODELS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
            monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        reset_shared_services()
        return AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)

    yield make
    reset_shared_services()


@pytest.fixture
def my_store(database: EmbeddedDatabase) -> Iterator[PostgresStore]:
    s = PostgresStore(database.app_url, pool_max=2)
    yield s
    s.close()


def stored_messages(store: PostgresStore) -> list[Message]:
    return list(store.page_messages(ME, limit=200).items)


def pending(at: AppTest) -> list[str]:
    """The labels of the held files' remove buttons."""
    return [b.label for b in at.button if b.key and b.key.startswith("pending-file-")]


def text_model_app(app: Callable[..., AppTest], wire: WireServer) -> AppTest:
    """A compatible server whose only model (the default pick) is not listed in CHAT_IMAGE_MODELS."""
    servers = json.dumps([{"name": "local", "url": wire.base_url, "models": ["llama3"]}])
    at = app(CHAT_OPENAI_SERVERS=servers).run()
    assert at.sidebar.selectbox(key=state.MODEL).value == "local/llama3"
    return at


def test_an_image_for_a_model_without_images_is_refused_and_text_and_files_are_kept(
    app: Callable[..., AppTest], my_store: PostgresStore, wire: WireServer
) -> None:
    at = text_model_app(app, wire)
    before, requests = len(stored_messages(my_store)), len(wire.requests)
    at.chat_input[0].upload("cat.png", PNG, "image/png").upload("notes.txt", b"some notes").set_value("What is it?")
    at.run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert error.value.startswith("local · llama3 does not take images, so nothing was sent.")
    assert at.chat_input[0].proto.value == "What is it?"  # the text is back in the box
    assert [label.split(" · ")[0] for label in pending(at)] == ["cat\\.png", "notes\\.txt"]
    assert len(stored_messages(my_store)) == before and len(wire.requests) == requests  # nothing sent or stored

    # Remove the image and send again: the held text file goes with the message.
    next(b for b in at.button if b.key and b.key.startswith("pending-file-0-")).click().run()
    assert [label.split(" · ")[0] for label in pending(at)] == ["notes\\.txt"]
    at.chat_input[0].set_value("Just the notes then").run()
    assert not at.exception, at.exception
    assert not at.error and pending(at) == []
    assert len(wire.requests) == requests + 1
    sent = wire.requests[-1].body["messages"][-1]["content"]
    assert sent == "Just the notes then\n\n[File: notes.txt]\nsome notes\n[End of file: notes.txt]"
    message = next(m for m in stored_messages(my_store) if m.content == "Just the notes then")
    assert [a.name for a in my_store.message_attachments(ME, [message.id])[message.id]] == ["notes.txt"]


def test_a_file_whose_content_is_not_its_type_is_refused_by_name_and_the_others_kept(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at = app().run()  # the offline demo model, which takes images
    before = len(stored_messages(my_store))
    at.chat_input[0].upload("holiday.png", PDF).upload("agenda.md", b"# Agenda").set_value("Two files")
    at.run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert error.value == "“holiday.png” is not an image: its content is a PDF."
    assert at.chat_input[0].proto.value == "Two files"
    assert [label.split(" · ")[0] for label in pending(at)] == ["agenda\\.md"]
    assert len(stored_messages(my_store)) == before


def test_a_file_over_the_size_limit_is_refused_and_the_text_kept(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at = app(CHAT_FILE_MAX_MB="1").run()
    before = len(stored_messages(my_store))
    at.chat_input[0].upload("big.csv", b"a,b\n" * 300_000).set_value("Too big?").run()
    assert not at.exception, at.exception
    (error,) = at.error
    assert error.value == "“big.csv” is 1.1 MB; a file may be at most 1.0 MB."
    assert at.chat_input[0].proto.value == "Too big?"
    assert pending(at) == []
    assert len(stored_messages(my_store)) == before


def test_sent_files_show_in_the_bubble_and_again_after_a_reload(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    at = app().run()
    at.chat_input[0].upload("cat.png", PNG, "image/png").upload("minutes.pdf", PDF).set_value("Here you go").run()
    assert not at.exception, at.exception
    assert not at.error
    cid = at.query_params["c"][0] if isinstance(at.query_params["c"], list) else at.query_params["c"]

    def shown(run: AppTest) -> tuple[list[str], list[str]]:
        user_bubble = run.chat_message[0]
        images = [img.proto.imgs[0].caption for img in user_bubble.get("image")]
        downloads = [d.proto.label for d in user_bubble.get("download_button")]
        return images, downloads

    assert shown(at) == (["cat\\.png"], ["cat\\.png · 1 KB", "minutes\\.pdf · 1 KB"])
    assert "Images received: `cat.png`" in at.chat_message[1].markdown[0].value  # the demo names what it got

    reloaded = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    reloaded.query_params["c"] = cid
    reloaded.run()
    assert not reloaded.exception
    assert shown(reloaded) == shown(at)
