"""The chat page's model picker under AppTest, with the real services on a real PostgreSQL and the real
openai SDK asking local wire servers for their models: grouped labels, a server that is down, "Refresh
models", the last pick remembered per user across sessions, and messages of a model no longer offered."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from components import state
from components.auth_gate import LOCAL_USER
from devtools.wire_servers import WireServer
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]
ME = LOCAL_USER
PROVIDER_VARS = (
    "OPENAI_BASE_URL",
    "OPENAI_COMPAT_MODELS",
    "OPENAI_API_KEY",
    "OPENAI_MODELS",
    "ANTHROPIC_API_KEY",
    "CHAT_OPENAI_SERVERS",
)


@pytest.fixture(scope="module")
def wire_a() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture(scope="module")
def wire_b() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture(autouse=True)
def fresh_wires(wire_a: WireServer, wire_b: WireServer) -> None:
    for wire, models in ((wire_a, ["zeta-7b", "alpha-3b"]), (wire_b, ["unused"])):
        wire.models, wire.models_status = models, 200
        wire.model_requests.clear()


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


@pytest.fixture
def my_store(database: EmbeddedDatabase) -> Iterator[PostgresStore]:
    with psycopg.connect(database.admin_url, autocommit=True) as conn:  # no remembered model yet
        conn.execute("delete from public.profiles")
    s = PostgresStore(database.app_url, pool_max=2)
    yield s
    s.close()


@pytest.fixture
def app(
    database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, wire_a: WireServer, wire_b: WireServer
) -> Iterator[Callable[..., AppTest]]:
    """app(**env): the chat page with a "local" server (discovered), a "lab" server (listed models) and a
    "gone" server (nothing listens), plus `env`; services rebuilt so the settings take effect."""

    def make(**env: str) -> AppTest:
        servers = [
            {"name": "local", "url": wire_a.base_url},
            {"name": "gone", "url": closed_port_url()},
            {"name": "lab", "url": wire_b.base_url, "key": "lab-key", "models": ["fixed-model"]},
        ]
        base = {
            "CHAT_AUTH": "none",
            "CHAT_DATA_DIR": str(tmp_path),
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "CHAT_DEMO_CHARS_PER_S": "1000000",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
            "CHAT_OPENAI_SERVERS": json.dumps(servers),
        }
        for name in PROVIDER_VARS:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        reset_shared_services()
        return AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)

    yield make
    reset_shared_services()


def session() -> AppTest:
    """Another browser session of the same user on the same (already built) services."""
    return AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)


def picker_labels(at: AppTest) -> list[str]:
    return list(at.sidebar.selectbox(key=state.MODEL).options)


def test_models_are_grouped_by_provider_and_a_down_server_is_named(app: Callable[..., AppTest]) -> None:
    at = app(OPENAI_API_KEY="sk-test", OPENAI_MODELS="gpt-4o-mini,gpt-4o").run()
    assert not at.exception
    assert picker_labels(at) == [
        "OpenAI · gpt-4o-mini",
        "OpenAI · gpt-4o",
        "local · alpha-3b",
        "local · zeta-7b",
        "lab · fixed-model",
        "Offline demo model (no API key)",
    ]
    assert at.sidebar.selectbox(key=state.MODEL).value == "openai/gpt-4o-mini"
    assert [c.value for c in at.sidebar.caption if "unavailable" in c.value] == [
        ":material/cloud_off: Server **gone** is unavailable: it could not be reached."
    ]
    assert at.sidebar.button(key=state.REFRESH_MODELS).label == "Refresh models"
    assert not any("Offline demo model:" in c.value for c in at.caption)  # real models are configured


def test_a_discovered_model_answers_and_is_stored_by_its_id(
    app: Callable[..., AppTest], my_store: PostgresStore, wire_a: WireServer
) -> None:
    at = app().run()
    assert at.sidebar.selectbox(key=state.MODEL).value == "local/alpha-3b"  # the first offered model
    at.chat_input[0].set_value("Which model are you?").run()
    assert not at.exception
    assert wire_a.requests[-1].body["model"] == "alpha-3b"
    assert "local · alpha-3b" in at.chat_message[-1].caption[0].value  # the meta line names it
    stored = my_store.page_messages(ME, limit=2).items
    assert [(m.role, m.model) for m in stored] == [("assistant", "local/alpha-3b"), ("user", "local/alpha-3b")]


def test_refresh_models_asks_the_servers_again(app: Callable[..., AppTest], wire_a: WireServer) -> None:
    at = app().run()
    assert picker_labels(at)[:2] == ["local · alpha-3b", "local · zeta-7b"]
    wire_a.models = ["alpha-3b", "new-13b"]
    at.run()
    assert picker_labels(at)[:2] == ["local · alpha-3b", "local · zeta-7b"]  # cached for CHAT_MODELS_CACHE_S
    at.sidebar.button(key=state.REFRESH_MODELS).click().run()
    assert not at.exception
    assert picker_labels(at)[:2] == ["local · alpha-3b", "local · new-13b"]


def test_the_last_pick_is_remembered_across_sessions(
    app: Callable[..., AppTest], my_store: PostgresStore, wire_a: WireServer
) -> None:
    at = app().run()
    at.sidebar.selectbox(key=state.MODEL).select("local/zeta-7b").run()
    assert not at.exception
    assert my_store.model_choice(ME) == "local/zeta-7b"

    later = session().run()  # a new tab, or another device: opens on the last pick
    assert later.sidebar.selectbox(key=state.MODEL).value == "local/zeta-7b"

    # Its server goes away: the page offers the rest, and the pick is kept for when it is back.
    wire_a.models_status = 503
    later.sidebar.button(key=state.REFRESH_MODELS).click().run()
    assert not later.exception
    assert later.sidebar.selectbox(key=state.MODEL).value == "lab/fixed-model"
    assert any("Server **local** is unavailable" in c.value for c in later.sidebar.caption)
    assert my_store.model_choice(ME) == "local/zeta-7b"

    wire_a.models_status = 200
    later.sidebar.button(key=state.REFRESH_MODELS).click().run()
    assert session().run().sidebar.selectbox(key=state.MODEL).value == "local/zeta-7b"


def test_a_message_of_a_model_no_longer_offered_still_renders(
    app: Callable[..., AppTest], my_store: PostgresStore
) -> None:
    conversation = my_store.create_conversation(ME, "Old chat")
    my_store.add_message(ME, conversation.id, "user", "Hello, old friend", "retired/old-model")
    my_store.add_message(ME, conversation.id, "assistant", "Hello from the past", "retired/old-model")
    at = app()
    at.query_params["c"] = str(conversation.id)
    at.run()
    assert not at.exception
    assert [m.markdown[0].value for m in at.chat_message] == ["Hello, old friend", "Hello from the past"]
    assert at.chat_message[-1].caption[0].value.startswith("retired/old-model")  # the meta line shows the id
