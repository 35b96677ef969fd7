"""The API's parts without a server: the stream pool's bound and hand-over, the CORS allow-list, the
CHAT_AUTH=none caller check, the error mapping, and the chat id -> conversation mapping."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Generator, Iterator
from typing import Any, cast

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api.chat import parse_chat_request, sse
from api.cors import ApiCors
from api.credentials import _from_this_machine, bearer
from api.errors import ApiError, response_for
from api.streaming import StreamPool
from services.auth import AuthError, Principal
from services.chat import Reply
from services.client_chats import check_client_chat_id, conversation_id_for
from services.ratelimit import RateLimited
from services.store import InvalidCursor, InvalidInput, NotFound, StoreUnavailable


class GatedReply:
    """Stands in for services.chat.Reply at the pool's boundary: yields "a", then ticks "" until `gate` is set
    (as a real reply does while its provider is silent), then "b"; records how it ended."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.finished = threading.Event()
        self.ended: str | None = None
        self._gen = self._run()

    def _run(self) -> Generator[str, None, None]:
        try:
            yield "a"
            while not self.gate.wait(0.01):
                yield ""
            yield "b"
            self.ended = "complete"
        finally:
            if self.ended is None:
                self.ended = "closed early"
            self.finished.set()

    def __iter__(self) -> Iterator[str]:
        return self._gen

    def close(self) -> None:
        self._gen.close()


def test_the_pool_refuses_beyond_its_bound_and_frees_the_slot_when_a_reply_ends() -> None:
    async def scenario() -> None:
        pool = StreamPool(1)
        first = GatedReply()
        live = await pool.open(lambda: cast(Reply, first))
        with pytest.raises(ApiError) as busy:
            await pool.open(lambda: cast(Reply, GatedReply()))
        assert busy.value.status == 503 and busy.value.headers["Retry-After"]
        chunks = live.chunks()
        assert await anext(chunks) == "a"
        first.gate.set()
        assert [c async for c in chunks] == ["b"]
        assert first.ended == "complete"
        second = GatedReply()
        second.gate.set()
        again = await pool.open(lambda: cast(Reply, second))  # the slot is free again
        assert "".join([c async for c in again.chunks()]) == "ab"
        pool.shutdown()

    asyncio.run(scenario())


def test_a_cancelled_stream_closes_its_reply_on_the_worker_thread() -> None:
    async def scenario() -> GatedReply:
        pool = StreamPool(2)
        reply = GatedReply()
        live = await pool.open(lambda: cast(Reply, reply))
        chunks = live.chunks()
        assert await anext(chunks) == "a"
        await chunks.aclose()  # what a disconnect does to the response's body iterator
        # The worker notices at the reply's next tick and closes it there.
        assert await asyncio.to_thread(reply.finished.wait, 10)
        pool.shutdown()
        return reply

    assert asyncio.run(scenario()).ended == "closed early"


class BurstReply:
    """Yields its pieces as fast as it can, then says it has finished: all of them are queued before the
    consumer (the event loop, as when it is busy) gets to read any."""

    def __init__(self, pieces: list[str]) -> None:
        self.pieces = pieces
        self.finished = threading.Event()

    def __iter__(self) -> Iterator[str]:
        try:
            yield from self.pieces
        finally:
            self.finished.set()

    def close(self) -> None:
        pass


def test_text_that_piled_up_while_the_loop_was_busy_comes_as_one_piece_then_the_end() -> None:
    async def scenario() -> list[str]:
        pool = StreamPool(1)
        reply = BurstReply(["one ", "two ", "three"])
        live = await pool.open(lambda: cast(Reply, reply))
        assert await asyncio.to_thread(reply.finished.wait, 10)
        got = [c async for c in live.chunks(idle_s=5)]
        pool.shutdown()
        return got

    assert asyncio.run(scenario()) == ["one two three"]


def test_what_start_raises_reaches_the_route_and_frees_the_slot() -> None:
    async def scenario() -> None:
        pool = StreamPool(1)

        def refuse() -> Reply:
            raise RateLimited(7, 5)

        with pytest.raises(RateLimited):
            await pool.open(refuse)
        with pytest.raises(RateLimited):
            await pool.open(refuse)  # had the first kept its slot, this would be "busy"
        pool.shutdown()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("exc", "status", "code"),
    [
        (InvalidCursor("bad cursor"), 400, "invalid_cursor"),
        (InvalidInput("bad"), 400, "invalid_input"),
        (AuthError("expired", "expired"), 401, "unauthorized"),
        (NotFound("none"), 404, "not_found"),
        (RateLimited(9, 5), 429, "rate_limited"),
        (StoreUnavailable("down"), 503, "unavailable"),
        (RuntimeError("secret internals at 0xdeadbeef"), 500, "internal"),
    ],
)
def test_one_mapping_from_exceptions_to_statuses(exc: Exception, status: int, code: str) -> None:
    response = response_for(exc)
    assert response.status_code == status
    body = bytes(response.body).decode()
    assert f'"code":"{code}"' in body and "0xdeadbeef" not in body
    if status == 429:
        assert response.headers["retry-after"] == "9"


def _app(origins: tuple[str, ...]) -> TestClient:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/api/x", ok, methods=["GET", "POST"]), Route("/page", ok)])
    return TestClient(ApiCors(inner, origins=origins))


def test_cors_is_off_by_default() -> None:
    client = _app(())
    response = client.get("/api/x", headers={"Origin": "https://other.example"})
    assert "access-control-allow-origin" not in response.headers


def test_cors_allows_listed_origins_on_api_paths_only() -> None:
    client = _app(("https://app.example",))
    preflight = client.options(
        "/api/x",
        headers={
            "Origin": "https://app.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-credentials" not in preflight.headers
    listed = client.get("/api/x", headers={"Origin": "https://app.example"})
    assert listed.headers["access-control-allow-origin"] == "https://app.example"
    assert "retry-after" in listed.headers["access-control-expose-headers"]
    other = client.get("/api/x", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    page = client.get("/page", headers={"Origin": "https://app.example"})
    assert "access-control-allow-origin" not in page.headers


def _request(peer: str, host: str, authorization: str | None = None) -> Request:
    headers = [(b"host", host.encode())]
    if authorization is not None:
        headers.append((b"authorization", authorization.encode()))
    scope: dict[str, Any] = {"type": "http", "client": (peer, 5555), "headers": headers, "method": "GET", "path": "/"}
    return Request(scope)


@pytest.mark.parametrize(
    ("peer", "host", "allowed"),
    [
        ("127.0.0.1", "localhost:8501", True),
        ("127.0.0.1", "127.0.0.1:8501", True),
        ("::1", "[::1]:8501", True),
        ("127.0.0.1", "rebound.evil.example:8501", False),  # DNS rebinding: a page of another site
        ("192.168.1.20", "localhost:8501", False),
        ("testclient", "localhost", False),
    ],
)
def test_without_sign_in_only_this_machine_by_its_own_name_is_served(peer: str, host: str, allowed: bool) -> None:
    assert _from_this_machine(_request(peer, host)) is allowed


@pytest.mark.parametrize(
    ("header", "token"),
    [("Bearer abc.def.ghi", "abc.def.ghi"), ("bearer sk-chat-XYZ_1", "sk-chat-XYZ_1"), ("Bearer  a.b.c ", "a.b.c")],
)
def test_the_bearer_is_read_case_insensitively(header: str, token: str) -> None:
    assert bearer(_request("127.0.0.1", "x", header)) == token


def test_two_authorization_headers_are_refused() -> None:
    scope: dict[str, Any] = {
        "type": "http",
        "headers": [(b"authorization", b"Bearer a.b.c"), (b"authorization", b"Bearer d.e.f")],
        "method": "GET",
        "path": "/",
    }
    with pytest.raises(AuthError) as refused:
        bearer(Request(scope))
    assert refused.value.reason == "malformed_header"


def test_a_chat_id_maps_to_one_conversation_per_user() -> None:
    ann, bob = Principal(user_id="ann"), Principal(user_id="bob")
    assert conversation_id_for(ann, "chat-1") == conversation_id_for(ann, "chat-1")
    assert conversation_id_for(ann, "chat-1") != conversation_id_for(bob, "chat-1")
    assert conversation_id_for(ann, "chat-1") != conversation_id_for(ann, "chat-2")
    for bad in ("", "  ", "x" * 201, "tab\there", 7):
        with pytest.raises(InvalidInput):
            check_client_chat_id(bad)


def test_the_ai_sdk_body_takes_its_last_user_message_and_ignores_the_rest() -> None:
    parsed = parse_chat_request(
        {
            "id": "c1",
            "messages": [
                {"role": "user", "parts": [{"type": "text", "text": "old"}]},
                {
                    "role": "user",
                    "parts": [{"type": "text", "text": "new "}, {"type": "file"}, {"type": "text", "text": "turn"}],
                },
            ],
            "model": "demo/echo-1",
        }
    )
    assert (parsed.text, parsed.client_chat_id, parsed.model, parsed.regenerate) == (
        "new turn",
        "c1",
        "demo/echo-1",
        False,
    )
    with pytest.raises(ApiError):
        parse_chat_request({"id": "c1", "messages": [{"role": "assistant", "parts": []}]})
    with pytest.raises(ApiError):
        parse_chat_request({"messages": [{"role": "user", "parts": [{"type": "text", "text": "no id"}]}]})
    assert parse_chat_request({"id": "c1", "messages": [{}], "trigger": "regenerate-message"}).regenerate


def test_a_silent_reply_gives_keep_alive_ticks_until_text_comes() -> None:
    async def scenario() -> list[str]:
        pool = StreamPool(1)
        reply = GatedReply()
        live = await pool.open(lambda: cast(Reply, reply))
        got: list[str] = []
        async for chunk in live.chunks(idle_s=0.02):
            got.append(chunk)
            if chunk == "":
                reply.gate.set()  # the provider speaks again after one keep-alive
        pool.shutdown()
        return got

    got = asyncio.run(scenario())
    assert got[0] == "a" and got[-1] == "b" and "" in got and set(got[1:-1]) == {""}


def test_an_sse_event_is_one_line_of_json_whatever_the_text() -> None:
    for text in ("plain", "two\nlines\r\n", "é ✓ 中文", "lone \ud800 surrogate", "\u2028sep"):
        encoded = sse({"type": "text-delta", "id": "t", "delta": text})
        assert encoded.startswith(b"data: ") and encoded.endswith(b"\n\n") and encoded.count(b"\n") == 2
        assert json.loads(encoded[len(b"data: ") : -2])["delta"] == text
