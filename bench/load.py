"""Load (issue 17): 50 concurrent streamed chats through the HTTP API against one app process, then the same
with 10 browser sessions chatting on the chat page of that same process at once.

    python bench/load.py [--n 50] [--browsers 10] [--chunks 500] [--chunk-ms 10] [--first-ms 300]
                         [--env CHAT_DB_POOL_MAX=25 ...] [--json]

The app is bench/api.py's (`bench_app`: one `streamlit run app.py`, embedded PostgreSQL, rate limit off,
CHAT_METRICS=on here); its clients are bench/api.py's too (POST /api/chat, one thread and connection each,
10 API users). The local OpenAI wire server runs in a process of its own and keeps to its script's clock
(chunk i is due at first-ms + i x chunk-ms, however busy the machine): the ideal is that script, 5.3 s by
default. Measured per client from its request: first text and total (the end of the stream).

Round 1: N API streams alone. Target: p95 total <= 1.3 x the ideal, nothing lost.
Round 2: N API streams and B browser sessions (Chromium through Playwright, each signed in as its own local
account and already on the chat page) sending at the same moment; browsers are timed from pressing Enter
to the first word and to the last word on screen. Browsers share the 2 cores: no ratio target.

Every stored reply is checked: each API reply equals what its client received, each browser reply the
whole script, all `complete`. Database pool figures come from GET /api/metrics (chat_db_pool_*): waits
and wait time over the round (counters, read before and after), and the most connections in use and
requests waiting seen by a scrape every 0.25 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from playwright.async_api import Page, async_playwright  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from bench.api import USERS, BenchApp, Result, bench_app, percentile, run_streams, verify  # noqa: E402
from services.accounts import AccountStore  # noqa: E402
from services.auth import Principal  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "load bench passphrase"
RATIO_TARGET = 1.3
POOL = "chat"  # services/runtime.py watches the chat store's pool under this name


# --- the wire server, in its own process -------------------------------------------------------------

WIRE_PROCESS = """
import sys
sys.path.insert(0, sys.argv[1])
from devtools.wire_servers import Script, WireServer
chunks, chunk_ms, first_ms = int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
script = Script(chunks=[f"word{i} " for i in range(chunks)], usage=(10, chunks), first_delay_s=first_ms / 1000,
                chunk_delay_s=chunk_ms / 1000, on_schedule=True)
with WireServer("openai", script) as wire:
    print(wire.base_url, flush=True)
    sys.stdin.read()  # until the bench closes our stdin
"""


@contextmanager
def wire_process(chunks: int, chunk_ms: float, first_ms: float) -> Iterator[str]:
    """The wire server in a process of its own, so its 50 streams do not share the bench clients' GIL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WIRE_PROCESS, str(ROOT), str(chunks), str(chunk_ms), str(first_ms)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        yield proc.stdout.readline().strip()
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


# --- database pool figures from /api/metrics ---------------------------------------------------------


def pool_figures(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/api/metrics", timeout=10) as response:
        text = response.read().decode()
    figures: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("chat_db_pool_") and sample.labels.get("pool") == POOL:
                figures[sample.name.removeprefix("chat_db_pool_")] = sample.value
    return figures


@dataclass
class PoolWatch:
    """Scrapes the pool gauges while a round runs; the counters' difference over the round."""

    url: str
    before: dict[str, float] = field(default_factory=dict)
    after: dict[str, float] = field(default_factory=dict)
    peak_in_use: float = 0.0
    peak_waiting: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> PoolWatch:
        self.before = pool_figures(self.url)
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stop.wait(0.25):
            now = pool_figures(self.url)
            self.peak_in_use = max(self.peak_in_use, now.get("connections_in_use", 0.0))
            self.peak_waiting = max(self.peak_waiting, now.get("requests_waiting", 0.0))

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self.after = pool_figures(self.url)

    def summary(self) -> dict[str, float]:
        delta = lambda k: self.after.get(k, 0.0) - self.before.get(k, 0.0)  # noqa: E731
        return {
            "max": self.after.get("max_connections", 0.0),
            "peak_in_use": self.peak_in_use,
            "peak_waiting": self.peak_waiting,
            "waits": delta("waits_total"),
            "wait_s": delta("wait_seconds_total"),
            "errors": delta("request_errors_total"),
        }


# --- browser sessions ---------------------------------------------------------------------------------


@dataclass
class BrowserResult:
    username: str
    first_text: float
    total: float
    error: str | None = None


def make_accounts(data_dir: Path, count: int) -> None:
    accounts = AccountStore(data_dir / "users.yaml")
    for i in range(count):
        accounts.create(f"loadb{i}", PASSWORD, name=f"Load browser {i}")


async def open_chat(browser: Any, url: str, username: str) -> Page:
    # bypass_csp: the app's CSP forbids eval, which wait_for_function uses for its polled expression.
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    context.set_default_timeout(120_000)
    page = await context.new_page()
    await page.goto(url + "/")
    form = page.locator('form[action="/api/auth/sign-in"]')
    await form.get_by_label("Username").fill(username)
    await form.get_by_label("Password").fill(PASSWORD)
    await form.get_by_role("button", name="Sign in").click()
    await page.get_by_test_id("stChatInputTextArea").wait_for()
    await page.wait_for_timeout(1_500)  # the page's first runs (sidebar, history) end before anyone types
    return page


async def chat_once(page: Page, username: str, last_word: str) -> BrowserResult:
    box = page.get_by_test_id("stChatInputTextArea")
    await box.fill(f"load question from {username}")
    t0 = time.perf_counter()
    try:
        await box.press("Enter")
        # Polled in the page every 50 ms: cheap enough for 10 tabs on 2 cores, fine enough for seconds.
        await page.wait_for_function("document.body.innerText.includes('word0')", polling=50)
        first = time.perf_counter() - t0
        await page.wait_for_function(f"document.body.innerText.includes({last_word!r})", polling=50)
        return BrowserResult(username, first, time.perf_counter() - t0)
    except Exception as exc:  # noqa: BLE001 - a failed session is reported, not fatal to the run
        return BrowserResult(username, 0.0, time.perf_counter() - t0, f"{type(exc).__name__}: {exc}"[:300])


def browsers_round(
    url: str, usernames: list[str], last_word: str, ready: threading.Event, go: threading.Event
) -> list[BrowserResult]:
    """Sign every session in and open its chat page, say `ready`, wait for `go`, then all send at once."""

    async def run() -> list[BrowserResult]:
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                pages = await asyncio.gather(*(open_chat(browser, url, u) for u in usernames))
                ready.set()
                await asyncio.to_thread(go.wait)
                sends = (chat_once(page, name, last_word) for page, name in zip(pages, usernames, strict=True))
                return list(await asyncio.gather(*sends))
            finally:
                ready.set()  # also on failure, so the main thread does not wait forever
                await browser.close()

    return asyncio.run(run())


def verify_browsers(app: BenchApp, data_dir: Path, results: list[BrowserResult], expected: str) -> list[str]:
    """Each browser user's one conversation holds one reply, `complete`, equal to the whole script."""
    accounts = {a.username: a for a in AccountStore(data_dir / "users.yaml").list_accounts()}
    problems: list[str] = []
    for r in results:
        principal = Principal(user_id=accounts[r.username].user_id)
        conversations = app.store.list_conversations(principal).items
        replies = [
            m
            for c in conversations
            for m in app.store.recent_messages(principal, c.id, limit=10)
            if m.role == "assistant"
        ]
        if len(replies) != 1 or replies[0].content != expected or replies[0].status != "complete":
            problems.append(f"{r.username}: stored {[(m.status, len(m.content)) for m in replies]}")
    return problems


# --- the run --------------------------------------------------------------------------------------------


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "max": None}
    return {"p50": percentile(values, 50), "p95": percentile(values, 95), "max": max(values)}


def api_summary(results: list[Result], problems: list[str]) -> dict[str, Any]:
    ok = [r for r in results if r.error is None]
    return {
        "n": len(results),
        "failed": [r.error for r in results if r.error],
        "mismatched": problems,
        "first_byte": stats([r.first_byte for r in ok]),
        "first_text": stats([r.first_text for r in ok]),
        "total": stats([r.total for r in ok]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50)
    parser.add_argument("--browsers", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=500)
    parser.add_argument("--chunk-ms", type=float, default=10.0)
    parser.add_argument("--first-ms", type=float, default=300.0)
    parser.add_argument(
        "--env", action="append", default=[], metavar="NAME=VALUE", help="app setting, e.g. CHAT_DB_POOL_MAX=25"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    extra = dict(v.split("=", 1) for v in args.env)
    if args.browsers and not Path(CHROMIUM).exists():
        raise SystemExit(f"{CHROMIUM} is missing: install Debian's chromium, or run with --browsers 0")

    ideal_first = args.first_ms / 1000
    ideal_total = ideal_first + (args.chunks - 1) * args.chunk_ms / 1000
    expected = "".join(f"word{i} " for i in range(args.chunks))
    usernames = [f"loadb{i}" for i in range(args.browsers)]
    data_dirs: list[Path] = []

    def setup(data_dir: Path) -> None:
        data_dirs.append(data_dir)
        make_accounts(data_dir, args.browsers)

    load_before = os.getloadavg()
    summary: dict[str, Any] = {"ideal": {"first_text": ideal_first, "total": ideal_total}, "target": RATIO_TARGET}
    with (
        wire_process(args.chunks, args.chunk_ms, args.first_ms) as wire_url,
        bench_app(
            wire_url, max_streams=args.n + args.browsers, env={"CHAT_METRICS": "on", **extra}, setup=setup
        ) as app,
    ):
        url = app.server.url
        with PoolWatch(url) as pool:
            results = run_streams(app, "api-chat", args.n)
        summary["api"] = {**api_summary(results, verify(app.store, app.accounts, results)), "pool": pool.summary()}

        if args.browsers:
            ready, go = threading.Event(), threading.Event()
            outcome: list[list[BrowserResult]] = []
            failure: list[BaseException] = []

            def browse() -> None:
                try:
                    outcome.append(browsers_round(url, usernames, f"word{args.chunks - 1}", ready, go))
                except BaseException as exc:  # noqa: BLE001 - re-raised on the main thread
                    failure.append(exc)

            thread = threading.Thread(target=browse, name="browsers")
            thread.start()
            ready.wait()
            if failure:
                raise SystemExit(f"browser sessions could not start: {failure[0]}")
            # verify() reads each client's own conversation (the id its stream carried): round 1's are no bother.
            with PoolWatch(url) as pool:
                go.set()
                mixed = run_streams(app, "api-chat", args.n)
                thread.join()
            if failure:
                raise SystemExit(f"browser sessions failed: {failure[0]}")
            browsers = outcome[0]
            ok = [b for b in browsers if b.error is None]
            summary["mixed"] = {
                "api": api_summary(mixed, verify(app.store, app.accounts, mixed)),
                "browsers": {
                    "n": len(browsers),
                    "failed": [f"{b.username}: {b.error}" for b in browsers if b.error],
                    "mismatched": verify_browsers(app, data_dirs[0], browsers, expected),
                    "first_text": stats([b.first_text for b in ok]),
                    "total": stats([b.total for b in ok]),
                },
                "pool": pool.summary(),
            }
    summary["load_average"] = {"before": load_before, "after": os.getloadavg()}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print_report(summary, args)
    lost = [summary["api"]]
    if "mixed" in summary:
        lost += [summary["mixed"]["api"], summary["mixed"]["browsers"]]
    if any(s["failed"] or s["mismatched"] for s in lost):
        raise SystemExit(1)


def print_report(s: dict[str, Any], args: argparse.Namespace) -> None:
    ms = lambda v: "-" if v is None else f"{v * 1000:,.0f} ms"  # noqa: E731
    ideal = s["ideal"]
    print(
        f"One app process; wire server (own process, on its own clock): first chunk after {args.first_ms:.0f} ms, "
        f"{args.chunks} chunks {args.chunk_ms:.0f} ms apart; ideal first text {ms(ideal['first_text'])}, "
        f"total {ms(ideal['total'])}. {USERS} API users.\n"
    )
    header = ("", "first byte p50", "first byte p95", "first text p50", "first text p95", "total p50", "total p95",
              "total max", "p95 / ideal")  # fmt: skip

    def row(name: str, part: dict[str, Any]) -> tuple[str, ...]:
        fb = part.get("first_byte", {"p50": None, "p95": None})
        p95 = part["total"]["p95"]
        ratio = "-" if p95 is None else f"{p95 / ideal['total']:.2f}x"
        return (name, ms(fb["p50"]), ms(fb["p95"]), ms(part["first_text"]["p50"]), ms(part["first_text"]["p95"]),
                ms(part["total"]["p50"]), ms(part["total"]["p95"]), ms(part["total"]["max"]), ratio)  # fmt: skip

    rows = [header, row(f"{s['api']['n']} API streams alone", s["api"])]
    if "mixed" in s:
        m = s["mixed"]
        rows.append(row(f"{m['api']['n']} API streams + {m['browsers']['n']} browsers", m["api"]))
        rows.append(row(f"{m['browsers']['n']} browsers (Enter to screen)", m["browsers"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, r in enumerate(rows):
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
        if i == 0:
            print("|" + "|".join("-" * (w + 2) for w in widths) + "|")

    pools = [("API alone", s["api"]["pool"])] + ([("API + browsers", s["mixed"]["pool"])] if "mixed" in s else [])
    print("\n| database pool | max connections | peak in use | peak waiting | waits | time waited | errors |")
    print("|---|---|---|---|---|---|---|")
    for name, p in pools:
        print(f"| {name} | {p['max']:.0f} | {p['peak_in_use']:.0f} | {p['peak_waiting']:.0f} | {p['waits']:.0f} | "
              f"{p['wait_s'] * 1000:,.0f} ms | {p['errors']:.0f} |")  # fmt: skip

    p95 = s["api"]["total"]["p95"]
    verdict = "-" if p95 is None else ("met" if p95 <= RATIO_TARGET * ideal["total"] else "MISSED")
    print(
        f"\nTarget (API alone): p95 total <= {RATIO_TARGET}x the ideal = {ms(RATIO_TARGET * ideal['total'])}: {verdict}"
    )
    parts = [("API alone", s["api"])]
    if "mixed" in s:
        parts += [("API beside browsers", s["mixed"]["api"]), ("browsers", s["mixed"]["browsers"])]
    for name, part in parts:
        lost = part["failed"] + part["mismatched"]
        print(f"{name}: {part['n'] - len(lost)}/{part['n']} stored replies equal to what was sent, all complete")
        for problem in lost[:10]:
            print("  " + str(problem))
    before, after = s["load_average"]["before"], s["load_average"]["after"]
    print(f"load average (1, 5, 15 min): before {before[0]:.2f} {before[1]:.2f} {before[2]:.2f}; "
          f"after {after[0]:.2f} {after[1]:.2f} {after[2]:.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
