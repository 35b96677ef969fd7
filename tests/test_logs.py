"""Logs: one line per event (JSON with CHAT_LOG_FORMAT=json), a request id carried through a turn (into
the provider's reader thread too), and neither message text nor a token in them unless CHAT_LOG_CONTENT
asks for the text. A real turn: PostgreSQL, and the OpenAI SDK against a local wire server."""

from __future__ import annotations

import io
import json
import logging
import threading
import uuid
from collections.abc import Iterator

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.observability import Observe
from devtools.wire_servers import Script, WireServer
from services import logs
from services.auth import Principal
from services.chat import ChatService, Reply
from services.config import settings_from
from services.providers import Usage
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.openai_chat import OpenAIProvider
from services.streaming import Pump

API_KEY = "sk-live-provider-key-0123456789"
BEARER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyX3gifQ.c2lnbmF0dXJl"
TYPED = "my very private question about zebras"
REPLY_WORDS = ["Zebra ", "facts ", "follow."]


class Captured:
    def __init__(self) -> None:
        self.stream = io.StringIO()

    @property
    def lines(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.stream.getvalue().splitlines()]

    @property
    def text(self) -> str:
        return self.stream.getvalue()


@pytest.fixture
def captured() -> Iterator[Captured]:
    """The app's loggers as CHAT_LOG_FORMAT=json writes them, into a buffer."""
    cap = Captured()
    handler = logging.StreamHandler(cap.stream)
    handler.setFormatter(logs.JsonFormatter())
    handler.addFilter(logs.RequestIdFilter())
    loggers = [logging.getLogger(name) for name in ("services", "api")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.INFO)
    yield cap
    for lg, level in zip(loggers, levels, strict=True):
        lg.removeHandler(handler)
        lg.setLevel(level)


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai", default=Script(chunks=REPLY_WORDS)) as w:
        yield w


def chat_service(store: object, wire: WireServer, **env: str) -> ChatService:
    provider = OpenAIProvider(api_key=API_KEY, base_url=wire.base_url, timeout_s=5.0)
    catalogue = Catalogue({"openai": provider}, [ModelOption("openai/m", "openai", "m", "M")], default="openai/m")
    return ChatService(store, catalogue, None, settings=settings_from(env))  # type: ignore[arg-type]


def run_turn(chat: ChatService) -> str:
    rid = logs.new_request_id()
    reply = chat.send(Principal(user_id=f"user_logs_{uuid.uuid4().hex[:6]}"), None, TYPED, "openai/m")
    try:
        assert "".join(reply) == "".join(REPLY_WORDS)
    finally:
        reply.close()
    return rid


def drain(reply: Reply) -> uuid.UUID:
    try:
        "".join(reply)
    finally:
        reply.close()
    return reply.conversation_id


def http_request_with_a_bearer_token() -> None:
    def secret_route(request: Request) -> JSONResponse:
        logging.getLogger("api.test").info("handling a request")
        return JSONResponse({"ok": True})

    routes = [Route("/api/private/{thing}", secret_route, methods=["POST"])]
    app = Starlette(routes=routes, middleware=[Middleware(Observe, routes=routes)])
    with TestClient(app) as client:
        response = client.post(
            f"/api/private/{TYPED.replace(' ', '-')}?token={BEARER}",
            headers={"Authorization": f"Bearer {BEARER}"},
            json={"text": TYPED},
        )
    assert response.status_code == 200


def test_a_turn_logs_one_line_with_its_request_id_and_no_text_or_token(
    store: object, wire: WireServer, captured: Captured
) -> None:
    rid = run_turn(chat_service(store, wire))
    http_request_with_a_bearer_token()
    finished = [line for line in captured.lines if line.get("event") == "reply finished"]
    assert len(finished) == 1
    line = finished[0]
    assert line["request_id"] == rid
    assert line["status"] == "complete" and line["provider"] == "openai" and line["reply_chars"] == 19
    assert "user_text" not in line and "reply_text" not in line
    http = [line for line in captured.lines if line.get("event") == "http request"]
    assert [(h["route"], h["status"]) for h in http] == [("/api/private/{thing}", 200)]
    # The route's own line carries the HTTP request's id (the endpoint ran in a worker thread).
    handled = next(line for line in captured.lines if line["message"] == "handling a request")
    assert handled["request_id"] not in ("-", rid)
    for secret in (TYPED, "zebras", "Zebra facts", API_KEY, BEARER):
        assert secret not in captured.text


def test_with_log_content_the_text_is_logged_and_the_tokens_still_are_not(
    store: object, wire: WireServer, captured: Captured
) -> None:
    run_turn(chat_service(store, wire, CHAT_LOG_CONTENT="true"))
    http_request_with_a_bearer_token()
    line = next(line for line in captured.lines if line.get("event") == "reply finished")
    assert line["user_text"] == TYPED
    assert line["reply_text"] == "".join(REPLY_WORDS)
    for secret in (API_KEY, BEARER):
        assert secret not in captured.text


def test_the_turn_line_carries_every_field_of_the_outcome(store: object, wire: WireServer, captured: Captured) -> None:
    chat = chat_service(store, wire)
    reply = chat.send(Principal(user_id=f"user_logs_{uuid.uuid4().hex[:6]}"), None, TYPED, "openai/m")
    drain(reply)
    outcome = reply.outcome
    assert outcome is not None and outcome.first_token_ms is not None
    [line] = [line for line in captured.lines if line.get("event") == "reply finished"]
    fields = {k: line[k] for k in line if k not in ("time", "level", "logger", "message", "request_id", "event")}
    assert fields == {
        "status": "complete",
        "provider": "openai",
        "model": "openai/m",
        "error_kind": None,
        "first_token_ms": outcome.first_token_ms,
        "latency_ms": outcome.latency_ms,
        "reply_chars": 19,
        "stored": True,
    }
    assert line["level"] == "INFO" and line["logger"] == "services.chat"


def test_a_regenerated_turn_logs_no_user_text_even_with_log_content(
    store: object, wire: WireServer, captured: Captured
) -> None:
    chat = chat_service(store, wire, CHAT_LOG_CONTENT="true")
    me = Principal(user_id=f"user_logs_{uuid.uuid4().hex[:6]}")
    cid = drain(chat.send(me, None, TYPED, "openai/m"))
    drain(chat.regenerate(me, cid, "openai/m"))
    lines = [line for line in captured.lines if line.get("event") == "reply finished"]
    assert [(line["user_text"], line["reply_text"]) for line in lines] == [
        (TYPED, "".join(REPLY_WORDS)),
        (None, "".join(REPLY_WORDS)),  # a regenerated reply has no new user message
    ]


def test_the_provider_thread_logs_under_the_turns_request_id(captured: Captured) -> None:
    class OneChunk:
        usage: Usage | None = None

        def __iter__(self) -> Iterator[str]:
            yield "x"

        def close(self) -> None:
            pass

    seen: list[str] = []

    def open_stream() -> OneChunk:
        seen.append(threading.current_thread().name)
        logging.getLogger("services.providers.test").info("opening the provider stream")
        return OneChunk()

    rid = logs.new_request_id()
    pump = Pump(open_stream)
    assert "".join(pump.batches(lambda: 0.0, 0.05)) == "x"
    pump.close()
    assert seen == ["chat-reply"]
    line = next(line for line in captured.lines if line["message"] == "opening the provider stream")
    assert line["request_id"] == rid


def test_json_lines_are_one_event_each_even_with_newlines_and_tracebacks(captured: Captured) -> None:
    log = logging.getLogger("services.test")
    logs.new_request_id("req-7")
    try:
        raise ValueError("first line\nsecond line")
    except ValueError:
        log.exception("failed\nbadly")
    logs.event(log, "thing happened", count=2, note="a\nb")
    raw = captured.text.splitlines()
    assert len(raw) == 2
    first, second = (json.loads(line) for line in raw)
    assert first["message"] == "failed\nbadly" and "ValueError: first line" in str(first["exception"])
    assert first["request_id"] == "req-7" and first["level"] == "ERROR" and first["logger"] == "services.test"
    assert second["event"] == "thing happened" and second["count"] == 2 and second["note"] == "a\nb"
    assert second["message"] == "thing happened count=2 note='a\\nb'"  # the text form stays on one line too


def test_configure_switches_the_format_without_adding_handlers() -> None:
    name = f"services_test_{uuid.uuid4().hex[:6]}"
    logs.configure("text", names=(name,))
    logs.configure("json", names=(name,))
    handlers = [h for h in logging.getLogger(name).handlers if getattr(h, "_chat_app", False)]
    assert len(handlers) == 1 and isinstance(handlers[0].formatter, logs.JsonFormatter)
