"""Streaming benchmark: what ChatService adds on top of the provider, and what coalescing saves.

    python bench/stream_service.py [--data-dir .data/bench-stream] [--reps 60] [--json-only]

Drives ChatService (real PostgreSQL from the embedded wheel, rate limiter on) against the local
OpenAI wire-format server (devtools/wire_servers.py) through the real openai SDK, and prints:
- added time to first token: p50/p95 of send() -> first text from the service, minus the provider's
  own call -> first chunk with the identical request (target p50 < 5 ms); also the pipeline alone
  (provider's first chunk -> the service's first yield), i.e. without the rate-limit check, the
  user-message insert and the context read that must happen before the request;
- sustained chunks/s through the service: an in-process source with no network (the service's own
  ceiling, target > 20,000) and the SDK over HTTP beside the SDK alone;
- rendered updates and bytes for a 2,000-chunk reply paced like a fast model (2 ms a chunk): what
  st.write_stream re-sends (the whole text so far, per update) for the raw stream vs the coalesced one
  (target >= 10x fewer bytes). Bytes are the markdown text each update carries, UTF-8.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.providers import Turn, Usage
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.openai_chat import OpenAIProvider
from services.ratelimit import RateLimiter
from services.store import embedded
from services.store.migrate import migrate
from services.store.postgres import PostgresStore

MODEL = "openai/bench"
FIREHOSE = "firehose/bench"


class _FirehoseReply:
    """N tiny chunks from memory: isolates the service's own per-chunk cost."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.usage: Usage | None = None
        self.first_at: float | None = None

    def __iter__(self) -> Iterator[str]:
        for _ in range(self.n):
            yield "x"
        self.usage = Usage(1, self.n)

    def close(self) -> None:
        pass


class FirehoseProvider:
    name = "firehose"

    def __init__(self) -> None:
        self.n = 200_000

    def stream(
        self, model: str, turns: Sequence[Turn], *, max_tokens: int, system: str | None = None
    ) -> _FirehoseReply:
        return _FirehoseReply(self.n)


class StampedProvider:
    """Wraps a provider to note when its first chunk arrived (for the pipeline-only figure)."""

    def __init__(self, inner: OpenAIProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.first_chunk_at: float | None = None

    def stream(self, model: str, turns: Sequence[Turn], *, max_tokens: int, system: str | None = None) -> Any:
        reply = self.inner.stream(model, turns, max_tokens=max_tokens, system=system)
        outer = self

        class _Stamped:
            usage: Usage | None = None

            def __iter__(self) -> Iterator[str]:
                for chunk in reply:
                    if outer.first_chunk_at is None:
                        outer.first_chunk_at = time.perf_counter()
                    yield chunk
                self.usage = reply.usage

            def close(self) -> None:
                reply.close()

        return _Stamped()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=ROOT / ".data" / "bench-stream")
    parser.add_argument("--reps", type=int, default=60)
    parser.add_argument("--json-only", action="store_true")
    args = parser.parse_args()

    db = embedded.start(args.data_dir, database="bench_stream")
    migrate(db.admin_url)
    store = PostgresStore(db.app_url, max_message_chars=32_000, pool_max=4)
    limiter = RateLimiter(store, 1_000_000)
    wire = WireServer("openai", Script(chunks=["Hello", " there", "!"], usage=(5, 3))).start()
    try:
        results = run(store, limiter, wire, args.reps)
    finally:
        wire.stop()
        store.close()
    print(json.dumps(results, indent=2))
    if not args.json_only:
        print_table(results)


def run(store: PostgresStore, limiter: RateLimiter, wire: WireServer, reps: int) -> dict[str, Any]:
    provider = OpenAIProvider(api_key="sk-bench", base_url=wire.base_url, timeout_s=30)
    stamped = StampedProvider(provider)
    firehose = FirehoseProvider()
    catalogue = Catalogue(
        {"openai": stamped, "firehose": firehose},
        [ModelOption(MODEL, "openai", "bench", "bench"), ModelOption(FIREHOSE, "firehose", "bench", "firehose")],
        MODEL,
    )
    chat = ChatService(store, catalogue, limiter, settings=settings_from({}))  # the shipped defaults
    principal = Principal(user_id="user_bench_stream")
    turns = [Turn("user", "hi")]
    conversation = store.create_conversation(principal, "bench")

    # --- time to first token ----------------------------------------------------------------------
    # Each rep continues a fresh conversation that has one earlier exchange, and the direct call sends
    # the very same turns the service will send, so both requests are byte-for-byte alike.
    own: list[float] = []
    through: list[float] = []
    pipeline: list[float] = []
    for i in range(reps + 5):
        convo = store.create_conversation(principal, f"ttft {i}")
        store.add_message(principal, convo.id, "user", "earlier question", MODEL)
        store.add_message(principal, convo.id, "assistant", "Hello there!", MODEL)
        question = f"question {i}"
        same_turns = [Turn("user", "earlier question"), Turn("assistant", "Hello there!"), Turn("user", question)]
        t0 = time.perf_counter()
        direct = provider.stream("bench", same_turns, max_tokens=chat.settings.max_reply_tokens)
        it = iter(direct)
        next(it)
        t_own = time.perf_counter() - t0
        list(it)

        stamped.first_chunk_at = None
        t0 = time.perf_counter()
        reply = chat.send(principal, convo.id, question, MODEL)
        replies = iter(reply)
        next(replies)
        t_first = time.perf_counter()
        list(replies)
        reply.close()
        if i >= 5:  # warm-up: connection pools, SDK imports
            own.append(t_own * 1000)
            through.append((t_first - t0) * 1000)
            assert stamped.first_chunk_at is not None
            pipeline.append((t_first - stamped.first_chunk_at) * 1000)

    ttft = {
        "reps": reps,
        "provider_p50_ms": round(statistics.median(own), 3),
        "provider_p95_ms": round(pct(own, 0.95), 3),
        "service_p50_ms": round(statistics.median(through), 3),
        "service_p95_ms": round(pct(through, 0.95), 3),
        "added_p50_ms": round(statistics.median(through) - statistics.median(own), 3),
        "pipeline_added_p50_ms": round(statistics.median(pipeline), 3),
        "pipeline_added_p95_ms": round(pct(pipeline, 0.95), 3),
    }

    # --- sustained chunks/s -----------------------------------------------------------------------
    t0 = time.perf_counter()
    reply = chat.send(principal, conversation.id, "firehose", FIREHOSE)
    text = "".join(reply)
    service_memory = firehose.n / (time.perf_counter() - t0)
    assert len(text) == firehose.n

    n_http = 20_000
    wire.queue(Script(chunks=["ab"] * n_http), Script(chunks=["ab"] * n_http))
    t0 = time.perf_counter()
    count = sum(1 for _ in provider.stream("bench", turns, max_tokens=64))
    sdk_alone = count / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    reply = chat.send(principal, conversation.id, "http firehose", MODEL)
    text = "".join(reply)
    service_http = n_http / (time.perf_counter() - t0)
    assert len(text) == 2 * n_http
    throughput = {
        "service_in_memory_chunks_per_s": round(service_memory),
        "sdk_over_http_alone_chunks_per_s": round(sdk_alone),
        "service_over_http_chunks_per_s": round(service_http),
    }

    # --- rendered updates and bytes for 2,000 chunks --------------------------------------------
    chunks = [f"w{i:03d} " for i in range(2_000)]  # ~10 KB reply
    wire.queue(Script(chunks=chunks, chunk_delay_s=0.002))
    reply = chat.send(principal, conversation.id, "render me", MODEL)
    t0 = time.perf_counter()
    yielded = list(reply)
    stream_s = time.perf_counter() - t0
    assert "".join(yielded) == "".join(chunks)
    raw_bytes = sum(len("".join(chunks[: i + 1]).encode()) for i in range(len(chunks)))
    acc, coalesced_bytes = 0, 0
    for piece in yielded:
        acc += len(piece.encode())
        coalesced_bytes += acc
    render = {
        "chunks": len(chunks),
        "reply_bytes": len("".join(chunks).encode()),
        "stream_seconds": round(stream_s, 2),
        "raw_updates": len(chunks),
        "raw_bytes": raw_bytes,
        "coalesced_updates": len(yielded),
        "coalesced_bytes": coalesced_bytes,
        "bytes_ratio": round(raw_bytes / coalesced_bytes, 1),
    }
    return {"time_to_first_token": ttft, "throughput": throughput, "rendering": render}


def print_table(r: dict[str, Any]) -> None:
    t, th, rd = r["time_to_first_token"], r["throughput"], r["rendering"]
    print()
    print("| figure | value | target |")
    print("|---|---:|---|")
    print(f"| provider's own time to first token, p50 / p95 | {t['provider_p50_ms']} / {t['provider_p95_ms']} ms | |")
    print(f"| through ChatService.send, p50 / p95 | {t['service_p50_ms']} / {t['service_p95_ms']} ms | |")
    print(f"| added time to first token, p50 | {t['added_p50_ms']} ms | < 5 ms |")
    print(f"| pipeline alone (provider chunk -> service yield), p50 / p95 | {t['pipeline_added_p50_ms']} / "
          f"{t['pipeline_added_p95_ms']} ms | |")  # fmt: skip
    print(f"| chunks/s through the service (in-memory source) | {th['service_in_memory_chunks_per_s']:,} | > 20,000 |")
    print(f"| chunks/s, openai SDK over HTTP alone | {th['sdk_over_http_alone_chunks_per_s']:,} | |")
    print(f"| chunks/s, ChatService over the same HTTP stream | {th['service_over_http_chunks_per_s']:,} | |")
    print(f"| 2,000-chunk reply: raw updates / bytes | {rd['raw_updates']:,} / {rd['raw_bytes']:,} | |")
    print(
        f"| 2,000-chunk reply: coalesced updates / bytes | {rd['coalesced_updates']:,} / {rd['coalesced_bytes']:,} | |"
    )
    print(f"| bytes saved (raw / coalesced) | {rd['bytes_ratio']}x | >= 10x |")
    print()


if __name__ == "__main__":
    main()
