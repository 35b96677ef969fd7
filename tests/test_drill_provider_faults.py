"""Drill (issue 17): provider faults end as a stored `error` reply with the text so far and a plain message.

Filled gaps only; tests/test_chat_service.py already covers 500, a stream cut mid-way, a stall after some
text and an error event, for both SDKs. Here: 429 with `Retry-After` (the message says how long to wait)
and a provider that takes the request and never answers (not even headers), through the real SDKs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.providers import Provider, retry_after_s
from services.providers.anthropic_chat import AnthropicProvider
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.openai_chat import OpenAIProvider
from services.store.postgres import PostgresStore
from tests.e2e.server import wait_until

MODELS = {"openai": "openai/gpt-test", "anthropic": "anthropic/claude-test"}


@pytest.fixture(scope="module")
def wires() -> Iterator[dict[str, WireServer]]:
    with WireServer("openai") as o, WireServer("anthropic") as a:
        yield {"openai": o, "anthropic": a}


@pytest.fixture(scope="module")
def chat(store: PostgresStore, wires: dict[str, WireServer]) -> ChatService:
    providers: dict[str, Provider] = {
        "openai": OpenAIProvider(api_key="sk-test", base_url=wires["openai"].base_url, timeout_s=1.0),
        "anthropic": AnthropicProvider(api_key="sk-ant-test", base_url=wires["anthropic"].base_url, timeout_s=1.0),
    }
    options = [
        ModelOption(MODELS["openai"], "openai", "gpt-test", "GPT test"),
        ModelOption(MODELS["anthropic"], "anthropic", "claude-test", "Claude test"),
    ]
    settings = settings_from({"CHAT_PROVIDER_TIMEOUT_S": "1"})
    return ChatService(store, Catalogue(providers, options, default=MODELS["openai"]), None, settings=settings)


def run(chat: ChatService, store: PostgresStore, kind: str) -> tuple[str, str | None, list[tuple[str, str, str]]]:
    who = Principal(user_id=f"user_fault_{uuid.uuid4().hex[:8]}")
    reply = chat.send(who, None, "Are you there?", MODELS[kind])
    try:
        shown = "".join(t for t in reply if t)
    finally:
        reply.close()
    assert reply.outcome is not None and reply.outcome.status == "error"
    rows = [(m.role, m.status, m.content) for m in store.recent_messages(who, reply.conversation_id)]
    return shown, reply.outcome.error, rows


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_429_with_retry_after_says_how_long_to_wait(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer], kind: str
) -> None:
    wires[kind].queue(Script(status=429, retry_after="20"))
    shown, error, rows = run(chat, store, kind)
    assert shown == ""
    assert error is not None and "rate-limiting" in error and "Wait about 20 seconds and retry." in error
    assert rows == [("user", "complete", "Are you there?"), ("assistant", "error", "")]


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_provider_that_never_answers_times_out_as_a_stored_error(
    chat: ChatService, store: PostgresStore, wires: dict[str, WireServer], kind: str
) -> None:
    wire = wires[kind]
    gone = wire.disconnects
    wire.queue(Script(fault="silent"))
    shown, error, rows = run(chat, store, kind)
    assert shown == ""
    assert error is not None and "did not answer in time" in error
    assert rows == [("user", "complete", "Are you there?"), ("assistant", "error", "")]
    wait_until(lambda: wire.disconnects == gone + 1, 10, "the app to hang up")  # the request is not left open


def test_retry_after_values() -> None:
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=125), usegmt=True)
    assert retry_after_s({"retry-after": "20"}) == 20
    assert retry_after_s({"retry-after": "0"}) == 1
    assert retry_after_s({"retry-after": later}) in (124, 125, 126)
    for unusable in ({}, None, {"retry-after": "soon"}, {"retry-after": "999999"}, {"retry-after": "-3"}):
        assert retry_after_s(unusable) is None
