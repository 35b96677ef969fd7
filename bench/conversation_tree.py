"""Branching conversations and the sidebar filter, against the targets of issue 14.

    python bench/conversation_tree.py [--rounds 5]

Seeds a fresh embedded PostgreSQL: one conversation whose current path is 1,000 messages long with 50
branch points of 20 versions each (1,950 messages), and 10,000 conversations of the same user for the
title filter. Reported:
- opening the branched conversation: the store's share (path window + versions, two transactions), the
  whole chat-page script run under AppTest (server time, rendering included), and in Chromium the
  websocket bytes the browser receives for the page (the 50-message window still applies);
- the title filter over 10,000 conversations: one keyset page of 20, p50 and p95, for a title word that
  matches one conversation, one that matches a tenth, and one that matches none.
Targets: opening under 300 ms of server time and 200 KB of websocket bytes; filtering p95 under 20 ms.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from playwright.sync_api import Page, WebSocket, sync_playwright  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from components.auth_gate import LOCAL_USER  # noqa: E402
from services.app_tokens import APP_ISSUER, user_claims  # noqa: E402
from services.chat import ChatService  # noqa: E402
from services.config import settings_from  # noqa: E402
from services.providers.catalogue import build_catalogue  # noqa: E402
from services.store import embedded  # noqa: E402
from services.store.migrate import migrate  # noqa: E402
from services.store.postgres import PostgresStore  # noqa: E402
from tests.e2e.server import app_server, wait_until  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
DEPTH, BRANCH_POINTS, VERSIONS, CONVERSATIONS = 1_000, 50, 20, 10_000


def seed(admin_url: str, user: str) -> str:
    with psycopg.connect(admin_url) as conn:
        row = conn.execute(
            "insert into public.conversations (user_id, title) values (%s, 'Deep and wide') returning id", [user]
        ).fetchone()
        assert row is not None
        cid = row[0]
        parent = None
        wide = set(range(1, DEPTH, DEPTH // BRANCH_POINTS))
        for level in range(DEPTH):
            copies = VERSIONS if level in wide else 1
            body = "A paragraph of a reply, long enough to look like one. " * (8 if level % 2 else 1)
            ids = conn.execute(
                "insert into public.messages (conversation_id, user_id, role, content, model, parent_id, created_at)"
                " select %s, %s, %s, %s || n, 'demo/echo-1', %s, now() - interval '1 day'"
                " + (%s * 100 + n) * interval '1 second' from generate_series(1, %s) n returning id",
                [cid, user, "assistant" if level % 2 else "user", body, parent, level, copies],
            ).fetchall()
            parent = ids[-1][0]
        conn.execute("update public.conversations set current_leaf_id = %s where id = %s", [parent, cid])
        # 10,000 more conversations: "needle" in one title, "tenth" in every tenth, spread over a year
        conn.execute(
            "insert into public.conversations (user_id, title, updated_at)"
            " select %s, case when n = 5000 then 'The needle in the stack'"
            " when n %% 10 = 0 then 'A tenth of them ' || n else 'Chat number ' || n end,"
            " now() - interval '2 days' - n * interval '50 minutes' from generate_series(1, %s) n",
            [user, CONVERSATIONS],
        )
        conn.execute("analyze")
    return str(cid)


class FrameBytes:
    """Payload bytes of the websocket frames a page receives."""

    def __init__(self) -> None:
        self.total = 0

    def watch(self, socket: WebSocket) -> None:
        socket.on("framereceived", self.add)

    def add(self, payload: str | bytes) -> None:
        self.total += len(payload.encode() if isinstance(payload, str) else payload)


def window_shown(page: Page) -> bool:
    return bool(page.get_by_test_id("stChatMessage").count() == 50)


def timed_ms(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        out.append((time.perf_counter() - start) * 1000)
    return out


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="benchtree-", dir="/tmp"))
    os.chmod(data, 0o755)
    db = embedded.start(data / "db", database="bench_tree")
    migrate(db.admin_url)
    cid = seed(db.admin_url, LOCAL_USER.user_id)
    store = PostgresStore(db.app_url, pool_max=2)
    settings = settings_from({})
    chat = ChatService(store, build_catalogue(settings), None, settings=settings)

    def open_in_store() -> None:
        chat.window(LOCAL_USER, chat.open_conversation(LOCAL_USER, cid))

    open_in_store()  # warm the pool and the plans
    store_ms = timed_ms(open_in_store, 50)

    env = {"CHAT_AUTH": "none", "DATABASE_URL": db.app_url, "DATABASE_ADMIN_URL": db.admin_url,
           "CHAT_DATA_DIR": str(data), "CHAT_RATE_LIMIT_PER_MINUTE": "0"}  # fmt: skip
    os.environ.update(env)

    def page_run() -> None:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.query_params["c"] = cid
        at.run()
        assert not at.exception and len(at.chat_message) == 50, (at.exception, len(at.chat_message))

    def empty_page_run() -> None:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60)
        at.run()
        assert not at.exception

    page_run()
    page_ms = timed_ms(page_run, args.rounds * 2)
    empty_ms = timed_ms(empty_page_run, args.rounds * 2)  # the same app with no conversation open

    sizes: list[int] = []
    with app_server(env) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for _ in range(args.rounds):
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            counter = FrameBytes()
            page.on("websocket", counter.watch)
            page.goto(f"{server.url}/?c={cid}")
            wait_until(functools.partial(window_shown, page), 60, "the window")
            page.wait_for_timeout(1_500)  # the run's last frames
            sizes.append(counter.total)
            page.close()
        browser.close()

    filters = {"one match": "needle", "a tenth match": "tenth", "no match": "zebra"}
    filter_ms = {
        label: timed_ms(functools.partial(store.list_conversations, LOCAL_USER, limit=20, title_filter=q), 200)
        for label, q in filters.items()
    }
    # The query alone, as the user under RLS (EXPLAIN ANALYZE's execution time): what the database spends,
    # without the transaction set-up and the round trips that a loaded machine inflates.
    executed: dict[str, list[float]] = {}
    with psycopg.connect(db.app_url) as conn:
        conn.execute(
            "select set_config('role', 'authenticated', false), set_config('request.jwt.claims', %s, false)",
            [json.dumps(user_claims(LOCAL_USER, APP_ISSUER, time.time(), lifetime=86_400))],
        )
        for label, q in filters.items():
            executed[label] = []
            for _ in range(50):
                row = conn.execute(
                    "explain (analyze, format json) select id, title from public.conversations"
                    " where user_id = %s and title_folded like lower(%s) order by updated_at desc, id desc limit 21",
                    [LOCAL_USER.user_id, f"%{q}%"],
                ).fetchone()
                assert row is not None
                executed[label].append(float(row[0][0]["Execution Time"]))
    store.close()

    print(f"Opening a {DEPTH:,}-message path with {BRANCH_POINTS} branch points of {VERSIONS} versions:")
    print(f"  store (path window + versions): median {statistics.median(store_ms):.1f} ms, p95 {p(store_ms, .95):.1f}")
    print(f"  chat page run (AppTest, server time): median {statistics.median(page_ms):.0f} ms, "
          f"max {max(page_ms):.0f} ms   target < 300 ms")  # fmt: skip
    print(f"  the same app with no conversation open (AppTest): median {statistics.median(empty_ms):.0f} ms")
    print(f"  websocket bytes to the browser (first page load): median {statistics.median(sizes) / 1024:.0f} KB"
          "   target < 200 KB")  # fmt: skip
    print(f"Title filter over {CONVERSATIONS:,} conversations (one page of 20):   target p95 < 20 ms")
    for label, values in filter_ms.items():
        run = executed[label]
        print(f"  {label:>14}: through the store p50 {p(values, .5):.2f} ms, p95 {p(values, .95):.2f} ms;"
              f" query execution p50 {p(run, .5):.2f} ms, p95 {p(run, .95):.2f} ms")  # fmt: skip
    print(f"(load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
