"""Drill (issue 17): the database stops in the middle of a session, then starts again.

The database is a private embedded PostgreSQL (the session's shared one keeps serving other tests); it is
stopped with `pg_ctl stop -m fast` under a running ChatService and under the chat page (AppTest with the
real services), then started again. Expected: a plain error (never a trace) instead of a hang, the typed
message back in the input box, a reply in flight reported as not saved (the part saved before the outage
is later finalised by the sweep, never left `streaming`), and the same process working again once the
database is back, without a restart (the pool reconnects)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from streamlit.testing.v1 import AppTest

from components.auth_gate import LOCAL_USER
from devtools.outage import Outage, private_database
from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.openai_chat import OpenAIProvider
from services.runtime import reset_shared_services
from services.store import StoreUnavailable
from services.store.postgres import PostgresStore
from tests.e2e.server import wait_until

ROOT = Path(__file__).resolve().parents[1]
MODEL = "openai/gpt-test"
UNREACHABLE = "The database cannot be reached right now. Please try again."


@pytest.fixture(scope="module")
def outage() -> Iterator[Outage]:
    with private_database() as o:
        yield o


@pytest.fixture
def back_up(outage: Outage) -> Iterator[Outage]:
    """The database is up when the test starts, and up again when it ends (whatever happened)."""
    assert outage.up()
    yield outage
    if not outage.up():
        outage.start()


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as w:
        yield w


def recovered(store: PostgresStore, who: Principal) -> bool:
    try:
        store.list_conversations(who)
        return True
    except StoreUnavailable:
        return False


def test_a_reply_in_flight_is_reported_as_not_saved_and_the_service_recovers(back_up: Outage, wire: WireServer) -> None:
    store = PostgresStore(back_up.db.app_url, pool_max=2)
    provider = OpenAIProvider(api_key="sk-test", base_url=wire.base_url, timeout_s=30.0)
    catalogue = Catalogue({"openai": provider}, [ModelOption(MODEL, "openai", "gpt-test", "GPT")], default=MODEL)
    chat = ChatService(store, catalogue, None, settings=settings_from({}), checkpoint_s=0.05, tick_s=0.02)
    alice = Principal(user_id=f"user_down_{uuid.uuid4().hex[:6]}")
    try:
        resume = threading.Event()
        wire.queue(Script(chunks=["Saved before ", "the outage, ", "not after."], gate_before={1: resume}))
        reply = chat.send(alice, None, "Will you remember this?", MODEL)
        it = iter(reply)
        shown = next(t for t in it if t)
        assert next(it) == ""  # the first text is saved after it was shown
        back_up.stop()
        resume.set()
        shown += "".join(it)  # the next checkpoint fails: the reply ends, saying so
        reply.close()
        outcome = reply.outcome
        assert outcome is not None and outcome.status == "error" and outcome.message is None
        assert outcome.error == f"The reply could not be saved: {UNREACHABLE}"
        assert outcome.text == shown and shown.startswith("Saved before ")

        # A new message while the database is down: refused with the same plain message, nothing hangs.
        with pytest.raises(StoreUnavailable, match=UNREACHABLE):
            chat.send(alice, reply.conversation_id, "Anyone there?", MODEL)

        back_up.start()
        wait_until(lambda: recovered(store, alice), 60, "the pool to reconnect")
        rows = store.recent_messages(alice, reply.conversation_id)
        # What was saved before the outage is there; the sweep finalises it once its heartbeat is stale.
        assert [(m.role, m.status, m.content) for m in rows] == [
            ("user", "complete", "Will you remember this?"),
            ("assistant", "streaming", "Saved before "),
        ]
        with psycopg.connect(back_up.db.admin_url, autocommit=True) as conn:
            conn.execute(
                "update public.messages set heartbeat_at = now() - interval '1 hour' where id = %s", [rows[1].id]
            )
        assert store.sweep_stale_replies(30) == 1
        assert store.recent_messages(alice, reply.conversation_id)[-1].status == "interrupted"

        again = chat.send(alice, reply.conversation_id, "And now?", MODEL)  # same process, same pool
        assert "".join(t for t in again if t) == "Hello, world!"
        again.close()
        assert again.outcome is not None and again.outcome.status == "complete"
    finally:
        store.close()


@pytest.fixture
def page(back_up: Outage, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[[], AppTest]]:
    env = {
        "CHAT_AUTH": "none",
        "CHAT_DATA_DIR": str(tmp_path),
        "DATABASE_URL": back_up.db.app_url,
        "DATABASE_ADMIN_URL": back_up.db.admin_url,
        "CHAT_DEMO_CHARS_PER_S": "1000000",
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
    }
    for name in ("OPENAI_BASE_URL", "OPENAI_COMPAT_MODELS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    reset_shared_services()
    # Each store call waits up to the pool's wait (10 s) while the database is down; a run makes a few.
    yield lambda: AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    reset_shared_services()


def test_the_chat_page_keeps_the_draft_while_the_database_is_down_and_recovers(
    page: Callable[[], AppTest], back_up: Outage
) -> None:
    at = page().run()
    assert not at.exception
    back_up.stop()
    at.chat_input[0].set_value("typed while the database was down").run()
    assert not at.exception
    assert any(UNREACHABLE in e.value for e in at.error), [e.value for e in at.error]
    assert at.chat_input[0].proto.value == "typed while the database was down"  # back in the input box

    back_up.start()
    store = PostgresStore(back_up.db.app_url, pool_max=1)
    try:
        wait_until(lambda: recovered(store, LOCAL_USER), 60, "the database to answer")
        # The same app process (services built once, before the outage) sends once the pool reconnects.
        for _ in range(10):
            at.chat_input[0].set_value("typed while the database was down").run()
            assert not at.exception
            if "c" in at.query_params:
                break
        cid = at.query_params["c"]
        rows = store.recent_messages(LOCAL_USER, cid[0] if isinstance(cid, list) else cid)
    finally:
        store.close()
    assert [(m.role, m.status) for m in rows] == [("user", "complete"), ("assistant", "complete")]
    assert rows[0].content == "typed while the database was down"
