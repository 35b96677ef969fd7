"""N concurrent streamed chats through the HTTP API of one app process, against the ideal.

    python bench/api.py [--n 50] [--route api-chat|v1] [--chunks 100] [--chunk-ms 20] [--first-ms 100] [--json]

One `streamlit run app.py` (real PostgreSQL from the embedded wheel, rate limit off, local sign-in tokens)
and one local OpenAI wire-format server (devtools/wire_servers.py) that answers every request with the same
script: the first chunk after `--first-ms`, then `--chunks` chunks `--chunk-ms` apart. N clients, each on its
own thread and connection, start together and stream one chat each; each is a different user (10 users,
N/10 chats each). Measured per client, from the request being sent:
- first byte: the first byte of the response body;
- first text: the first piece of the reply's text;
- total: the end of the stream.
The ideal is the wire server's own timing (first text at `--first-ms`, the end after the last chunk), and
"direct" is the same N streams read straight from the wire server with the openai SDK, measured in the run.
Afterwards every stored reply is checked against what its client received (text and `complete` status).

Routes: `api-chat` (the default) is POST /api/chat with the seed's body, read as the AI SDK UI message
stream; `v1` is POST /v1/chat/completions with `stream: true`, read as OpenAI chunks.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from openai import OpenAI  # noqa: E402
from openai.types.chat import ChatCompletionMessageParam  # noqa: E402

from devtools.wire_servers import Script, WireServer  # noqa: E402
from services.accounts import Account  # noqa: E402
from services.auth import Principal  # noqa: E402
from services.config import settings_from  # noqa: E402
from services.identity import build_identity  # noqa: E402
from services.store import embedded  # noqa: E402
from services.store.migrate import migrate  # noqa: E402
from services.store.postgres import PostgresStore  # noqa: E402
from tests.e2e.server import AppServer, app_server  # noqa: E402

USERS = 10
MODEL = "compat/wire-model"


@dataclass
class Result:
    user: int
    first_byte: float
    first_text: float
    total: float
    text: str
    conversation_id: str | None
    error: str | None = None


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


# --- one streamed chat ------------------------------------------------------------------------------


def v1_request(prompt: str) -> tuple[str, dict[str, Any]]:
    return "/v1/chat/completions", {"model": MODEL, "messages": [{"role": "user", "content": prompt}], "stream": True}


def v1_text(event: dict[str, Any]) -> str:
    if "error" in event:
        raise RuntimeError(event["error"].get("message"))
    return "".join((c.get("delta") or {}).get("content") or "" for c in event.get("choices") or [])


def api_chat_request(prompt: str) -> tuple[str, dict[str, Any]]:
    return "/api/chat", {"content": prompt, "model": MODEL}


def api_chat_text(event: dict[str, Any]) -> str:
    if event.get("type") == "error":
        raise RuntimeError(event.get("errorText"))
    return str(event.get("delta") or "") if event.get("type") == "text-delta" else ""


ROUTES: dict[str, tuple[Callable[[str], tuple[str, dict[str, Any]]], Callable[[dict[str, Any]], str]]] = {
    "v1": (v1_request, v1_text),
    "api-chat": (api_chat_request, api_chat_text),
}


def stream_one(base_url: str, route: str, token: str, user: int, start: threading.Barrier) -> Result:
    build, read_text = ROUTES[route]
    path, body = build(f"bench question from user {user} ({uuid.uuid4().hex[:6]})")
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=120)
    conn.connect()
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "text/event-stream"}
    start.wait()
    t0 = time.perf_counter()
    first_byte = first_text = 0.0
    pieces: list[str] = []
    error: str | None = None
    try:
        conn.request("POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        conversation_id = response.getheader("x-conversation-id")
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
        buffer = b""
        while True:
            data = response.read1(65536)
            if not data:
                break
            if not first_byte:
                first_byte = time.perf_counter() - t0
            buffer += data
            while b"\n\n" in buffer:
                raw, buffer = buffer.split(b"\n\n", 1)
                for line in raw.decode().splitlines():
                    if not line.startswith("data:") or line[5:].strip() == "[DONE]":
                        continue
                    event = json.loads(line[5:])
                    conversation_id = conversation_id or _conversation_from(event)
                    text = read_text(event)
                    if text:
                        if not first_text:
                            first_text = time.perf_counter() - t0
                        pieces.append(text)
    except Exception as exc:  # noqa: BLE001 - a failed client is reported, not fatal to the run
        error, conversation_id = f"{type(exc).__name__}: {exc}", None
    finally:
        conn.close()
    return Result(user, first_byte, first_text, time.perf_counter() - t0, "".join(pieces), conversation_id, error)


def _conversation_from(event: dict[str, Any]) -> str | None:
    # The AI SDK stream carries ids in message metadata (the start or finish part).
    meta = event.get("messageMetadata") or {}
    value = meta.get("conversationId") or meta.get("conversation_id")
    return str(value) if value else None


def direct(wire: WireServer, n: int) -> list[tuple[float, float]]:
    """The same N streams read straight from the wire server by the openai SDK: (first text, total)."""
    client = OpenAI(base_url=wire.base_url, api_key="sk-bench", max_retries=0, timeout=120)
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "x"}]
    for _ in client.chat.completions.create(model="wire-model", messages=messages, stream=True):
        pass  # warm-up: the SDK's first call loads its lazily imported parts
    start = threading.Barrier(n)

    def one(_: int) -> tuple[float, float]:
        start.wait()
        t0 = time.perf_counter()
        first = 0.0
        for chunk in client.chat.completions.create(model="wire-model", messages=messages, stream=True):
            if chunk.choices and chunk.choices[0].delta.content and not first:
                first = time.perf_counter() - t0
        return first, time.perf_counter() - t0

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


# --- the app under test -----------------------------------------------------------------------------


@dataclass
class BenchApp:
    server: AppServer
    store: PostgresStore  # a small pool of the bench's own, to check what the app stored
    accounts: list[Account]  # USERS API users; client i streams as accounts[i % USERS]
    tokens: list[str]


@contextmanager
def bench_app(
    wire_url: str,
    *,
    max_streams: int,
    route: str = "api-chat",
    env: Mapping[str, str] | None = None,
    setup: Callable[[Path], None] | None = None,
) -> Iterator[BenchApp]:
    """One `streamlit run app.py` on a fresh embedded database, its compatible provider at `wire_url`, rate
    limit off, and a sign-in token for each of USERS users. One chat has gone through it (the first request
    builds the services: database pool, catalogue) before it is handed over. `setup(data_dir)` runs too."""
    base = Path(tempfile.mkdtemp(prefix="benchapi-", dir="/tmp"))
    os.chmod(base, 0o755)
    db = embedded.start(base / "db", database="bench_api")
    migrate(db.admin_url)
    accounts = [Account(f"bench{i}", f"Bench {i}", "", (), id=f"bench-user-{i}") for i in range(USERS)]
    tokens: list[str] = []

    def prepare(data_dir: Path) -> None:
        # The app's own issuer key, in the data directory it is about to start with: tokens it accepts.
        identity = build_identity(settings_from({"CHAT_DATA_DIR": str(data_dir), "CHAT_TOKEN_TTL_S": "3600"}))
        assert identity.issuer is not None
        tokens.extend(identity.issuer.issue(a) for a in accounts)
        if setup is not None:
            setup(data_dir)

    app_env = {
        "CHAT_AUTH": "local",
        "DATABASE_URL": db.app_url,
        "DATABASE_ADMIN_URL": db.admin_url,
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        "CHAT_TOKEN_TTL_S": "3600",
        "CHAT_API_MAX_STREAMS": str(max(64, max_streams)),
        "OPENAI_BASE_URL": wire_url,
        "OPENAI_COMPAT_MODELS": "wire-model",
        **(env or {}),
    }
    store = PostgresStore(db.app_url, pool_max=4)
    try:
        with app_server(app_env, setup=prepare) as server:
            warm = stream_one(server.url, route, tokens[0], 0, threading.Barrier(1))
            if warm.error:
                raise SystemExit(f"warm-up failed: {warm.error}\n{server.log()[-3000:]}")
            yield BenchApp(server, store, accounts, tokens)
    finally:
        store.close()


def run_streams(app: BenchApp, route: str, n: int) -> list[Result]:
    """N clients, started together, each streaming one chat as user i % USERS."""
    start = threading.Barrier(n)
    with ThreadPoolExecutor(n) as pool:
        return list(
            pool.map(lambda i: stream_one(app.server.url, route, app.tokens[i % USERS], i % USERS, start), range(n))
        )


# --- the run ----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--route", choices=sorted(ROUTES), default="api-chat")
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--chunk-ms", type=float, default=20.0)
    parser.add_argument("--first-ms", type=float, default=100.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    script = Script(
        chunks=[f"word{i} " for i in range(args.chunks)],
        usage=(10, args.chunks),
        first_delay_s=args.first_ms / 1000,
        chunk_delay_s=args.chunk_ms / 1000,
    )
    ideal_first = args.first_ms / 1000
    ideal_total = ideal_first + (args.chunks - 1) * args.chunk_ms / 1000

    with WireServer("openai", script) as wire, bench_app(wire.base_url, max_streams=args.n, route=args.route) as app:
        results = run_streams(app, args.route, args.n)
        floor = direct(wire, args.n)
        mismatches = verify(app.store, app.accounts, results)

    ok = [r for r in results if r.error is None]
    summary = {
        "n": args.n,
        "route": args.route,
        "failed": [r.error for r in results if r.error],
        "mismatched": mismatches,
        "ideal": {"first_text": ideal_first, "total": ideal_total},
        "direct": _stats([f for f, _ in floor], [t for _, t in floor]),
        "app": {
            **_stats([r.first_text for r in ok], [r.total for r in ok]),
            "first_byte_p50": percentile([r.first_byte for r in ok], 50) if ok else None,
            "first_byte_p95": percentile([r.first_byte for r in ok], 95) if ok else None,
        },
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_table(summary, args)
    if summary["failed"] or mismatches:
        raise SystemExit(1)


def _stats(first: list[float], total: list[float]) -> dict[str, float | None]:
    if not first:
        return {"first_text_p50": None, "first_text_p95": None, "total_p50": None, "total_p95": None}
    return {
        "first_text_p50": percentile(first, 50),
        "first_text_p95": percentile(first, 95),
        "total_p50": percentile(total, 50),
        "total_p95": percentile(total, 95),
    }


def verify(store: PostgresStore, accounts: list[Account], results: list[Result]) -> list[str]:
    """Every stored reply equals what its client received, and is `complete`."""
    problems: list[str] = []
    for r in results:
        if r.error is not None:
            continue
        if r.conversation_id is None:
            problems.append(f"user {r.user}: no conversation id in the response")
            continue
        principal = Principal(user_id=accounts[r.user].user_id)
        rows = store.recent_messages(principal, r.conversation_id, limit=10)
        replies = [m for m in rows if m.role == "assistant"]
        if len(replies) != 1 or replies[0].content != r.text or replies[0].status != "complete":
            got = [(m.status, len(m.content)) for m in replies]
            problems.append(f"{r.conversation_id}: received {len(r.text)} chars, stored {got}")
    return problems


def print_table(s: dict[str, Any], args: argparse.Namespace) -> None:
    ms = lambda v: "-" if v is None else f"{v * 1000:,.0f} ms"  # noqa: E731
    route = "POST /v1/chat/completions" if args.route == "v1" else "POST /api/chat"
    print(
        f"{s['n']} concurrent streamed chats through {route}, "
        f"one app process; wire server: first chunk after {args.first_ms:.0f} ms, {args.chunks} chunks "
        f"{args.chunk_ms:.0f} ms apart.\n"
    )
    app, direct_, ideal = s["app"], s["direct"], s["ideal"]
    rows = [
        ("", "first byte p50", "first byte p95", "first text p50", "first text p95", "total p50", "total p95"),
        ("ideal (wire script)", "-", "-", ms(ideal["first_text"]), ms(ideal["first_text"]), ms(ideal["total"]),
         ms(ideal["total"])),
        ("direct to wire (SDK)", "-", "-", ms(direct_["first_text_p50"]), ms(direct_["first_text_p95"]),
         ms(direct_["total_p50"]), ms(direct_["total_p95"])),
        ("through the app", ms(app["first_byte_p50"]), ms(app["first_byte_p95"]), ms(app["first_text_p50"]),
         ms(app["first_text_p95"]), ms(app["total_p50"]), ms(app["total_p95"])),
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    print(
        f"\nfailed: {len(s['failed'])}; stored replies equal to what their client received: "
        f"{s['n'] - len(s['failed']) - len(s['mismatched'])}/{s['n']}"
    )
    for problem in (s["failed"] + s["mismatched"])[:10]:
        print("  " + str(problem))


if __name__ == "__main__":
    main()
