"""Drill figures (issue 17) that are timings, so they live here and not in the tests.

    python bench/drills.py [--kills 20]

1. Reply lost to a crash: a reply streams from the local OpenAI wire server (a chunk every 20 ms) through
   ChatService into the embedded database; at a random instant the process "dies" (the turn is abandoned
   without its `finally`, as SIGKILL would). What the database holds is compared with what the app had
   already received: the gap, in seconds of stream, is what a crash loses (target: about the 1 s checkpoint
   interval at most). tests/e2e/test_drill_kill.py does the real SIGKILL and checks the outcome.
2. Database down: with a private embedded PostgreSQL stopped under a running store, how long a request
   takes to fail (the pool's wait; target: well under the 60 s provider timeout), and after it is started
   again, how long until the same store answers (no restart).

Everything runs on this machine and stops by itself.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from devtools.outage import private_database  # noqa: E402
from devtools.wire_servers import Script, WireServer  # noqa: E402
from services.auth import Principal  # noqa: E402
from services.chat import CHECKPOINT_S, ChatService  # noqa: E402
from services.config import settings_from  # noqa: E402
from services.providers import Provider  # noqa: E402
from services.providers.catalogue import Catalogue, ModelOption  # noqa: E402
from services.providers.openai_chat import OpenAIProvider  # noqa: E402
from services.store import StoreUnavailable  # noqa: E402
from services.store.postgres import PostgresStore  # noqa: E402

MODEL = "openai/drill"
CHUNK_S = 0.02
CHUNKS = [f"w{i:04d} " for i in range(400)]  # 8 s of reply, 6 characters a chunk


def crash_losses(store: PostgresStore, kills: int) -> list[float]:
    """Seconds of already-received reply missing from the database at a random crash instant."""
    losses: list[float] = []
    with WireServer("openai", Script(chunks=CHUNKS, chunk_delay_s=CHUNK_S)) as wire:
        provider: Provider = OpenAIProvider(api_key="sk-drill", base_url=wire.base_url, timeout_s=30.0)
        catalogue = Catalogue({"openai": provider}, [ModelOption(MODEL, "openai", "drill", "Drill")], default=MODEL)
        chat = ChatService(store, catalogue, None, settings=settings_from({}))
        rng = random.Random(17)
        for _ in range(kills):
            who = Principal(user_id=f"user_drill_{uuid.uuid4().hex[:8]}")
            reply = chat.send(who, None, "count", MODEL)
            crash_at = time.monotonic() + rng.uniform(1.0, 6.0)
            received = ""
            it = iter(reply)
            for text in it:
                received += text
                if time.monotonic() >= crash_at:
                    break
            # The process is "dead" from here: read the row before anything else writes it.
            rows = store.recent_messages(who, reply.conversation_id)
            stored = rows[-1].content if rows[-1].role == "assistant" else ""
            assert received.startswith(stored)
            losses.append((len(received) - len(stored)) / len(CHUNKS[0]) * CHUNK_S)
            reply.close()
    return losses


def outage_timings() -> tuple[float, float, float]:
    """(first failure, failure once the pool is empty, recovery after start), in seconds."""
    with private_database() as outage:
        store = PostgresStore(outage.db.app_url, pool_max=2)
        who = Principal(user_id="user_drill_down")
        try:
            store.list_conversations(who)
            outage.stop()
            timings: list[float] = []
            for _ in range(2):
                began = time.monotonic()
                try:
                    store.list_conversations(who)
                except StoreUnavailable:
                    pass
                timings.append(time.monotonic() - began)
            outage.start()
            began = time.monotonic()
            while True:
                try:
                    store.list_conversations(who)
                    break
                except StoreUnavailable:
                    time.sleep(0.1)
            recovery = time.monotonic() - began
        finally:
            store.close()
    return timings[0], timings[1], recovery


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    args = parser.parse_args()
    with private_database() as db:
        store = PostgresStore(db.db.app_url, pool_max=4)
        try:
            losses = crash_losses(store, args.kills)
        finally:
            store.close()
    print(f"crash mid-reply ({args.kills} random instants, checkpoint every {CHECKPOINT_S:.1f} s):")
    print(
        f"  reply received but not in the database: p50 {statistics.median(losses):.2f} s,"
        f" max {max(losses):.2f} s (target <= ~{CHECKPOINT_S:.0f} s)"
    )
    first, empty, recovery = outage_timings()
    print("database stopped under a running store:")
    print(f"  first request fails after {first:.2f} s (a broken pooled connection)")
    print(f"  later requests fail after {empty:.2f} s (the pool's wait for a connection)")
    print(f"  after the database starts again, the same store answers within {recovery:.2f} s")
    return 0 if max(losses) <= CHECKPOINT_S + 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
