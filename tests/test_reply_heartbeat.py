"""Reply heartbeats and the sweep of orphans (migration 20261128001300, services/sweeper.py).

A long provider pause is simulated by ageing the row's heartbeat in the database (as the superuser) while
the provider is held silent: the live turn must refresh it before the sweep may take it for a dead one.
A dead reply is a `streaming` row with an old heartbeat and no turn behind it."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import psycopg
import pytest

from devtools.wire_servers import Script, WireServer
from services import chat as chat_module
from services.app_tokens import APP_ISSUER, signin_claims, sweeper_claims, user_claims
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.openai_chat import OpenAIProvider
from services.store import StoreUnavailable
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from services.sweeper import Sweeper

MODEL = "openai/gpt-test"


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as w:
        yield w


def chat_catalogue(wire: WireServer) -> Catalogue:
    provider = OpenAIProvider(api_key="sk-test", base_url=wire.base_url, timeout_s=30.0)
    return Catalogue({"openai": provider}, [ModelOption(MODEL, "openai", "gpt-test", "GPT test")], default=MODEL)


@pytest.fixture(scope="module")
def chat(store: PostgresStore, wire: WireServer) -> ChatService:
    return ChatService(
        store, chat_catalogue(wire), None, settings=settings_from({}), checkpoint_s=0.1, tick_s=0.02, heartbeat_s=0.1
    )


def user() -> Principal:
    return Principal(user_id=f"user_hb_{uuid.uuid4().hex[:8]}")


def age(database: EmbeddedDatabase, message_id: uuid.UUID, seconds: int = 3600) -> datetime:
    """Pretend the row's last heartbeat was long ago; returns the aged value."""
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        row = conn.execute(
            "update public.messages set heartbeat_at = now() - make_interval(secs => %s) where id = %s"
            " returning heartbeat_at",
            [seconds, message_id],
        ).fetchone()
    assert row is not None
    return row[0]


def heartbeat(database: EmbeddedDatabase, message_id: uuid.UUID) -> tuple[str, datetime]:
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        row = conn.execute("select status, heartbeat_at from public.messages where id = %s", [message_id]).fetchone()
    assert row is not None
    return row[0], row[1]


def test_a_live_reply_in_a_long_provider_pause_is_not_swept(
    chat: ChatService, store: PostgresStore, wire: WireServer, database: EmbeddedDatabase
) -> None:
    resume = threading.Event()
    wire.queue(Script(chunks=["Let me think", " about it."], gate_before={1: resume}))
    alice = user()
    reply = chat.send(alice, None, "a hard question", MODEL)
    it = iter(reply)
    try:
        shown = ""
        for _ in range(1000):
            shown += next(it)
            if shown:
                break
        assert shown == "Let me think"
        assert next(it) == ""  # the first text is saved after it is handed on, before the next tick
        stored = store.recent_messages(alice, reply.conversation_id)[-1]
        assert (stored.role, stored.status) == ("assistant", "streaming")
        # The provider is silent (gated) and the heartbeat says "an hour ago": the turn must renew it.
        aged = age(database, stored.id)
        for _ in range(1000):
            assert next(it) == "", "the provider was meant to stay silent"
            if heartbeat(database, stored.id)[1] > aged:
                break
        else:
            pytest.fail("a live reply never refreshed its heartbeat while its provider was silent")
        assert store.sweep_stale_replies(5) == 0
        assert heartbeat(database, stored.id)[0] == "streaming"
        resume.set()
        shown += "".join(it)
    finally:
        resume.set()
        reply.close()
    assert shown == "Let me think about it."
    assert reply.outcome is not None and reply.outcome.status == "complete"


def test_a_reply_whose_server_died_is_swept_as_interrupted_with_its_text(
    store: PostgresStore, database: EmbeddedDatabase
) -> None:
    alice, bob = user(), user()
    conv = store.create_conversation(alice, "orphans")
    dead = store.add_message(alice, conv.id, "assistant", "half of a repl", "openai/gpt-test", "streaming")
    fresh = store.add_message(alice, conv.id, "assistant", "still going", "openai/gpt-test", "streaming")
    done = store.add_message(alice, conv.id, "assistant", "finished", "openai/gpt-test", "complete")
    bobs = store.add_message(bob, store.create_conversation(bob, "b").id, "assistant", "b", "m", "streaming")
    for message in (dead, done, bobs):
        age(database, message.id)
    assert store.sweep_stale_replies(30) >= 2  # other tests' orphans may be swept too
    after = {m.id: m for m in store.recent_messages(alice, conv.id)}
    assert (after[dead.id].status, after[dead.id].content) == ("interrupted", "half of a repl")
    assert after[fresh.id].status == "streaming"
    assert after[done.id].status == "complete"
    assert store.recent_messages(bob, bobs.conversation_id)[-1].status == "interrupted"


def test_a_swept_reply_whose_turn_comes_back_is_streaming_again(
    store: PostgresStore, database: EmbeddedDatabase
) -> None:
    # A turn cut off from the database for longer than the limit is swept; its next write revives the row.
    alice = user()
    conv = store.create_conversation(alice, "revived")
    message = store.add_message(alice, conv.id, "assistant", "partial", "m", "streaming")
    age(database, message.id)
    assert store.sweep_stale_replies(30) >= 1
    store.touch_message(alice, message.id)
    assert heartbeat(database, message.id)[0] == "streaming"


def test_the_sweep_is_only_for_its_token_and_has_a_floor(store: PostgresStore, database: EmbeddedDatabase) -> None:
    sweeper = json.dumps(sweeper_claims(APP_ISSUER, time.time()))
    user = json.dumps(user_claims(Principal(user_id="user_sweeps"), APP_ISSUER, time.time()))
    signin = json.dumps(signin_claims(APP_ISSUER, time.time()))
    with psycopg.connect(database.app_url, autocommit=True) as conn:
        # anon, a user's token, a sign-in token, and the sweeper role without the sweeper's claims
        for role, claims in [
            ("anon", None),
            ("authenticated", user),
            ("authenticated", signin),
            ("chat_sweeper", None),
        ]:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f"set local role {role}")
                if claims is not None:
                    conn.execute("select set_config('request.jwt.claims', %s, true)", [claims])
                conn.execute("select public.sweep_stale_replies(30)")
        with pytest.raises(psycopg.errors.InvalidParameterValue), conn.transaction():
            conn.execute("set local role chat_sweeper")
            conn.execute("select set_config('request.jwt.claims', %s, true)", [sweeper])
            conn.execute("select public.sweep_stale_replies(0)")
        # The Supabase backend's way: role `authenticated` with the sweeper token.
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute("select set_config('request.jwt.claims', %s, true)", [sweeper])
            assert conn.execute("select public.sweep_stale_replies(3600)").fetchone() is not None
        # The sweeper role reads nothing itself: no grant on the tables.
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            conn.execute("set local role chat_sweeper")
            conn.execute("select content from public.messages limit 1")
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        owner_bypasses, definer, config = conn.execute(
            "select r.rolsuper or r.rolbypassrls, p.prosecdef, p.proconfig from pg_proc p"
            " join pg_roles r on r.oid = p.proowner where p.oid = 'public.sweep_stale_replies(int4)'::regprocedure"
        ).fetchone() or (None, None, None)
    assert owner_bypasses and definer and config == ["search_path=pg_catalog, pg_temp"]


def test_the_sweeper_sweeps_at_start_and_keeps_going_after_a_failure(store: PostgresStore) -> None:
    calls: list[int] = []
    swept = threading.Event()

    class Flaky:
        def sweep_stale_replies(self, stale_after_s: int) -> int:
            calls.append(stale_after_s)
            if len(calls) == 1:
                raise StoreUnavailable("The database cannot be reached right now.")
            swept.set()
            return 2

    sweeper = Sweeper(Flaky(), 10, interval_s=0.01).start()
    try:
        assert swept.wait(10)
    finally:
        sweeper.stop()
    assert calls[:2] == [10, 10] and sweeper.swept >= 2
    assert Sweeper(store, 30).interval_s == 15 and Sweeper(store, 600).interval_s == 60


def test_the_heartbeat_beats_at_least_three_times_within_the_stale_time(
    store: PostgresStore, chat: ChatService
) -> None:
    # A third of CHAT_STALE_REPLY_S, at most HEARTBEAT_S: a reply may miss two beats before it looks dead.
    def service(stale_s: str, heartbeat_s: float | None = None) -> ChatService:
        settings = settings_from({"CHAT_STALE_REPLY_S": stale_s})
        return ChatService(store, chat.catalogue, None, settings=settings, heartbeat_s=heartbeat_s)

    assert service("6").heartbeat_s == 2.0
    assert service("3600").heartbeat_s == 5.0
    assert service("6", heartbeat_s=0.1).heartbeat_s == 0.1  # tests beat faster


class _StoppedClock:
    """services.chat's monotonic clock, stopped: no time passes between two ticks."""

    @staticmethod
    def monotonic() -> float:
        return 1_000.0


def test_with_a_heartbeat_of_zero_every_silent_tick_beats_even_on_a_stopped_clock(
    store: PostgresStore, wire: WireServer, database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chat_module, "time", _StoppedClock())
    catalogue, settings = chat_catalogue(wire), settings_from({})
    chat = ChatService(store, catalogue, None, settings=settings, checkpoint_s=3_600, tick_s=0.02, heartbeat_s=0)
    resume = threading.Event()
    wire.queue(Script(chunks=["Hold on", "."], gate_before={1: resume}))
    alice = user()
    reply = chat.send(alice, None, "beat please", MODEL)
    it = iter(reply)
    try:
        assert next(text for text in it if text) == "Hold on"
        assert next(it) == ""  # the first text is saved when the reply is read on, then a silent tick
        stored = store.recent_messages(alice, reply.conversation_id)[-1]
        before = heartbeat(database, stored.id)[1]
        assert next(it) == ""  # another silent tick: zero seconds since the last write is the heartbeat's due
        assert heartbeat(database, stored.id)[1] > before
        resume.set()
        assert "".join(it) == "."
    finally:
        resume.set()
        reply.close()
