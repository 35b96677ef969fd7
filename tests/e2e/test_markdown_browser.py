"""Hostile markdown in a real browser: no request leaves for any host but the app's own.

`streamlit run app.py` (CHAT_AUTH=none, the offline demo model, a fresh embedded database) and Debian's
Chromium. Each payload is sent as the first message of a new chat, so it is rendered as the user's
bubble, echoed inside the demo model's streamed reply, and used as the conversation's title in a
sidebar button; the page is then reloaded so every bubble is rendered again from the database. There is
no Content-Security-Policy in the way: what this test proves is the neutraliser
(components/markdown.py) itself. Every request the page makes is recorded with page.on("request").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.e2e.test_chat_browser import ROOT, browser, free_port, idle, wait_until
from tests.test_markdown import BYPASSES

__all__ = ["browser"]  # the Chromium fixture, shared with the chat browser test
pytestmark = pytest.mark.e2e

EVIL = "http://evil.test"
# Streamlit's frontend fetches Material Symbols icons (`:material/...:` page and button icons) from
# Google's font CDN whatever the messages say; that is the app's own doing, not a payload's.
STREAMLIT_ICON_HOST = "fonts.gstatic.com"
PAYLOADS = [
    f"![x]({EVIL}/inline.png)",
    f"look ![x][ref]\n\n[ref]: {EVIL}/reference.png",
    f"<img src={EVIL}/html.png>",
    f'![x]({EVIL}/a.png "title") and ![y][]\n\n[y]: {EVIL}/collapsed.png',
    f"note[^1]\n\n[^1]: ![x]({EVIL}/footnote.png)",
    f"[![x]({EVIL}/in-link.png)](http://example.test)",
    f"| a | b |\n|---|---|\n| ![x]({EVIL}/cell.png) | c |",
    f"- item\n  > ![x]({EVIL}/nested.png)",
    f"<div>\n\n![x]({EVIL}/after-html.png)\n\n</div>",
    f"\\`![x]({EVIL}/escaped-backtick.png)`",
    *[text.replace("http://evil.test", EVIL) for text in BYPASSES],
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    data_dir = Path(tempfile.mkdtemp(prefix="chatmd-", dir="/tmp"))  # short: the db socket lives inside
    os.chmod(data_dir, 0o755)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "OPENAI_", "ANTHROPIC_", "CHAT_"))}
    env.update(
        CHAT_AUTH="none",
        CHAT_DATA_DIR=str(data_dir / "data"),
        CHAT_DEMO_CHARS_PER_S="4000",
        CHAT_RATE_LIMIT_PER_MINUTE="0",
    )
    log = (data_dir / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "streamlit", "run", "app.py",
            "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        ],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited: {(data_dir / 'streamlit.log').read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, 60, "streamlit to start")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        pidfile = data_dir / "data" / "pg" / "postmaster.pid"
        if pidfile.exists():  # the server outlived streamlit: stop it by its own pid
            lines = pidfile.read_text().splitlines()
            if lines and lines[0].strip().isdigit():
                try:
                    os.kill(int(lines[0]), 15)
                except ProcessLookupError:
                    pass
        shutil.rmtree(data_dir, ignore_errors=True)


def send(page: Page, text: str) -> None:
    idle(page)
    page.get_by_test_id("stSidebar").get_by_role("button", name="New chat").click()
    idle(page)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=30_000)
    idle(page)


def test_hostile_markdown_makes_no_request_to_another_host(server: str, browser: Browser) -> None:
    app_origin = urlsplit(server).netloc
    elsewhere: list[str] = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})

    def record(request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc not in (app_origin, STREAMLIT_ICON_HOST):
            elsewhere.append(request.url)

    page.on("request", record)
    page.goto(server, wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible(timeout=60_000)
    for text in PAYLOADS:
        send(page, text)
        assert not elsewhere, (text, elsewhere)
    # Every bubble and title again, from the database this time.
    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=30_000)
    idle(page)
    # The payloads did render, as text: the sidebar holds one conversation per payload.
    sidebar_titles = page.get_by_test_id("stSidebar").get_by_role("button").all_inner_texts()
    assert sum("evil.test" in title for title in sidebar_titles) >= len(PAYLOADS) - 2, sidebar_titles
    assert not elsewhere, elsewhere
