"""Local HTTP servers that speak the providers' streaming wire formats, for tests and benchmarks.

`WireServer("openai")` answers POST /v1/chat/completions with Chat Completions SSE (usage in a last chunk
with empty `choices`, then `data: [DONE]`); `WireServer("anthropic")` answers POST /v1/messages with
Messages SSE (message_start ... message_stop). Each request takes the next queued `Script` (or the
default one), so a test can script faults: an error event before the first token, a connection dropped
mid-stream, HTTP 429/500, a stream that stalls, a body that ends cleanly but early, a server that takes
the request and never answers ("silent": not even response headers).
An "openai" server also answers GET /v1/models with `models` (as Ollama, vLLM and llama.cpp do), or with
`models_status`, recording each such request in `model_requests`.
Bodies use chunked transfer encoding, as the real APIs
do, so a dropped connection is a protocol error for the client and not a clean end of body.
"""

from __future__ import annotations

import json
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Kind = Literal["openai", "anthropic"]
Fault = Literal["error_first", "drop", "stall", "truncate", "silent"]


@dataclass
class Script:
    chunks: list[str] = field(default_factory=lambda: ["Hello", ", ", "world", "!"])
    usage: tuple[int, int] = (12, 4)
    status: int = 200  # anything but 200 answers with that status and a JSON error body, no stream
    fault: Fault | None = None
    fault_after: int = 0  # text chunks sent before a "drop" or "stall"
    chunk_delay_s: float = 0.0
    first_delay_s: float = 0.0
    pause_before: dict[int, float] = field(default_factory=dict)  # extra pause before chunk i
    # wait before chunk i until the test sets the event: ordering without racing the client's read timeout
    gate_before: dict[int, threading.Event] = field(default_factory=dict)
    retry_after: str | None = None
    # Chunk i is due `first_delay_s + i * chunk_delay_s` after the request, however late the previous write
    # was: a real provider keeps its own pace when this machine is busy (off: each gap is measured anew).
    on_schedule: bool = False


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


class WireServer:
    def __init__(self, kind: Kind, default: Script | None = None) -> None:
        self.kind = kind
        self.default = default or Script()
        self.scripts: deque[Script] = deque()
        self.requests: list[Recorded] = []
        self.release = threading.Event()  # ends stalls and pauses (set on stop)
        self.disconnects = 0  # streams whose client went away before the end
        # GET /v1/models: what it lists, or the error status it answers with, and the requests it got
        self.models: list[str] = ["wire-model"]
        self.models_status = 200
        self.models_delay_s = 0.0
        self.model_requests: list[Recorded] = []
        self.sent_chunks = 0  # text chunks written by the latest stream (what a client may have received)
        self.last_chunk_at: float | None = None  # time.monotonic() the latest stream's last text chunk was written
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"wire": self})
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"wire-{kind}", daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        root = f"http://{host!s}:{port}"
        return f"{root}/v1" if self.kind == "openai" else root

    def queue(self, *scripts: Script) -> None:
        with self._lock:
            self.scripts.extend(scripts)

    def next_script(self, recorded: Recorded) -> Script:
        with self._lock:
            self.requests.append(recorded)
            return self.scripts.popleft() if self.scripts else self.default

    def start(self) -> WireServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> WireServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- wire formats ---------------------------------------------------------------------------------


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


def _openai_chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    return _sse(
        {
            "id": "chatcmpl-wire",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
    )


class OpenAIFormat:
    path = "/v1/chat/completions"

    @staticmethod
    def start(model: str) -> list[bytes]:
        return [_openai_chunk(model, {"role": "assistant", "content": ""})]

    @staticmethod
    def text(model: str, text: str) -> bytes:
        return _openai_chunk(model, {"content": text})

    @staticmethod
    def end(model: str, usage: tuple[int, int]) -> list[bytes]:
        usage_chunk = {
            "id": "chatcmpl-wire",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "choices": [],
            "usage": {"prompt_tokens": usage[0], "completion_tokens": usage[1], "total_tokens": sum(usage)},
        }
        return [_openai_chunk(model, {}, "stop"), _sse(usage_chunk), _sse("[DONE]")]

    @staticmethod
    def stream_error() -> bytes:
        return _sse(
            {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}}
        )

    @staticmethod
    def status_body(status: int) -> dict[str, Any]:
        kind = "rate_limit_exceeded" if status == 429 else "server_error"
        return {"error": {"message": f"wire server says {status}", "type": kind, "code": kind}}


class AnthropicFormat:
    path = "/v1/messages"

    @staticmethod
    def start(model: str, input_tokens: int) -> list[bytes]:
        message: dict[str, Any] = {
            "id": "msg_wire",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        return [
            _sse({"type": "message_start", "message": message}, "message_start"),
            _sse(
                {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                "content_block_start",
            ),
            _sse({"type": "ping"}, "ping"),
        ]

    @staticmethod
    def text(text: str) -> bytes:
        return _sse(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
            "content_block_delta",
        )

    @staticmethod
    def end(output_tokens: int) -> list[bytes]:
        return [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output_tokens},
                },
                "message_delta",
            ),
            _sse({"type": "message_stop"}, "message_stop"),
        ]

    @staticmethod
    def stream_error() -> bytes:
        return _sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")

    @staticmethod
    def status_body(status: int) -> dict[str, Any]:
        kind = "rate_limit_error" if status == 429 else "api_error"
        return {"type": "error", "error": {"type": kind, "message": f"wire server says {status}"}}


class _QuietServer(ThreadingHTTPServer):
    # socketserver's default listen backlog is 5: a burst of concurrent streams (bench/api.py opens 50) had
    # connections dropped and retried by the kernel a second later, which looked like a slow provider.
    request_queue_size = 128

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up (timeout, stop button, dropped stream) is the point of several tests.
        pass


class _ClientGone(Exception):
    pass


class _Handler(BaseHTTPRequestHandler):
    wire: WireServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet test output
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, {})
        if self.wire.kind != "openai" or self.path.split("?")[0] != "/v1/models":
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        with self.wire._lock:
            self.wire.model_requests.append(recorded)
            status, models, delay = self.wire.models_status, list(self.wire.models), self.wire.models_delay_s
        try:
            self._pause(delay)
        except _ClientGone:
            self.close_connection = True
            return
        if status != 200:
            self._json(status, OpenAIFormat.status_body(status))
            return
        data = [{"id": m, "object": "model", "created": 1_700_000_000, "owned_by": "wire"} for m in models]
        self._json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_raw": raw.decode(errors="replace")}
        recorded = Recorded(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        script = self.wire.next_script(recorded)
        fmt = OpenAIFormat if self.wire.kind == "openai" else AnthropicFormat
        if self.path.split("?")[0] != fmt.path:
            self._json(404, {"error": {"message": f"no route {self.path}"}})
            return
        if script.fault == "silent":
            try:
                self._pause(60.0)  # until the client gives up (its timeout) or stop()
            except _ClientGone:
                self.wire.disconnects += 1
            self.close_connection = True
            return
        if script.status != 200:
            self._json(script.status, fmt.status_body(script.status), script.retry_after)
            return
        try:
            self._stream(script, str(body.get("model", "wire-model")))
        except _ClientGone:
            self.wire.disconnects += 1
            self.close_connection = True

    # --- plumbing ------------------------------------------------------------------------------

    def _json(self, status: int, body: dict[str, Any], retry_after: str | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        if retry_after is not None:
            self.send_header("retry-after", retry_after)
        self.end_headers()
        self.wfile.write(data)

    def _write(self, data: bytes) -> None:
        try:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()
        except OSError as exc:
            raise _ClientGone from exc

    def _pause(self, seconds: float) -> None:
        # A real server notices a client hanging up during a silence (the socket reads EOF); so does this
        # one, so a test can see that a stopped reply closed its request without waiting out the pause.
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0 and not self.wire.release.is_set():
            readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
            if readable:
                try:
                    gone = self.connection.recv(1, socket.MSG_PEEK) == b""
                except OSError:
                    gone = True
                if gone:
                    raise _ClientGone
                self.wire.release.wait(min(left, 0.05))  # bytes from the client: nothing to do with them

    def _stream(self, script: Script, model: str) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("transfer-encoding", "chunked")
        self.send_header("cache-control", "no-cache")
        self.end_headers()
        openai = self.wire.kind == "openai"
        head = OpenAIFormat.start(model) if openai else AnthropicFormat.start(model, script.usage[0])
        self._pause(script.first_delay_s)
        first_at = time.monotonic()
        for part in head:
            self._write(part)
        if script.fault == "error_first":
            self._write(OpenAIFormat.stream_error() if openai else AnthropicFormat.stream_error())
            self._write(b"")  # the terminating zero-length chunk
            return
        self.wire.sent_chunks = 0
        for i, text in enumerate(script.chunks):
            if script.fault is not None and i == script.fault_after:
                self._fault(script.fault)
                return
            if i and script.chunk_delay_s:
                due = first_at + i * script.chunk_delay_s if script.on_schedule else None
                self._pause(script.chunk_delay_s if due is None else due - time.monotonic())
            self._pause(script.pause_before.get(i, 0.0))
            if i in script.gate_before:
                script.gate_before[i].wait(30)
            self._write(OpenAIFormat.text(model, text) if openai else AnthropicFormat.text(text))
            self.wire.sent_chunks = i + 1
            self.wire.last_chunk_at = time.monotonic()
        if script.fault is not None:
            self._fault(script.fault)
            return
        for part in OpenAIFormat.end(model, script.usage) if openai else AnthropicFormat.end(script.usage[1]):
            self._write(part)
        self._write(b"")

    def _fault(self, fault: Fault) -> None:
        if fault == "truncate":
            self._write(b"")  # a clean end of the body, without the provider's end-of-message events
            return
        if fault == "stall":
            # Hold the connection open without sending anything until the client gives up (or stop()).
            self.wire.release.wait(60)
        # "drop" (and the end of a stall): cut the TCP connection in the middle of the chunked body.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise _ClientGone
