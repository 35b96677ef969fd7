"""History page in a real browser: `streamlit run app.py` in a subprocess, Debian's Chromium via Playwright.

Covers what AppTest cannot: the URL really changes when paging, the delete dialog works with the
dialog's own fragment reruns, the deferred download button produces the file, and rendering a message
with image markdown makes the browser fetch nothing (a local HTTP server counts requests)."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from components.auth_gate import LOCAL_USER
from services.store.embedded import EmbeddedDatabase
from tests.e2e.server import app_server

NEWEST = datetime(2026, 6, 1, tzinfo=UTC)
CHROMIUM = Path("/usr/bin/chromium")
# No skip when Chromium is missing: like the other browser modules, this one fails, so a machine
# without the README prerequisites cannot report a green run that never opened a browser.
pytestmark = pytest.mark.e2e


class Recorder(BaseHTTPRequestHandler):
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        Recorder.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def image_server() -> Iterator[str]:
    Recorder.hits = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def app_url(database: EmbeddedDatabase) -> Iterator[str]:
    env = {"CHAT_AUTH": "none", "DATABASE_URL": database.app_url, "DATABASE_ADMIN_URL": database.admin_url}
    with app_server(env) as server:
        yield server.url


def settle(page: Any) -> None:
    """Wait until the script run the last interaction started has finished (the status widget goes)."""
    page.wait_for_function("() => !document.querySelector('[data-testid=\"stStatusWidget\"]')", timeout=30_000)


def choose(page: Any, label: str, option: str) -> None:
    """Pick an option of a selectbox; a rerun that redraws the box can close its list, so try again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    deadline = time.monotonic() + 30
    while True:
        settle(page)
        page.get_by_role("combobox", name=label).click()
        try:
            page.get_by_role("option", name=option).first.click(timeout=3_000)
            settle(page)
            return
        except PlaywrightTimeout:
            if time.monotonic() > deadline:
                raise
            page.keyboard.press("Escape")


def test_page_through_open_download_and_delete_in_a_browser(
    app_url: str, image_server: str, database: EmbeddedDatabase, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    keep, gone = uuid.uuid4(), uuid.uuid4()
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("delete from public.conversations")
        conn.execute(
            "insert into public.conversations (id, user_id, title) values (%s, %s, 'Keep'), (%s, %s, 'Gone')",
            [keep, LOCAL_USER.user_id, gone, LOCAL_USER.user_id],
        )
        conn.execute(
            "insert into public.messages (conversation_id, user_id, role, content, model, created_at)"
            " select %s, %s, 'user', 'older note ' || i, 'demo', %s::timestamptz - i * interval '1 minute'"
            " from generate_series(1, 14) i",
            [keep, LOCAL_USER.user_id, datetime(2026, 5, 1, tzinfo=UTC)],
        )
        conn.execute(
            "insert into public.messages (conversation_id, user_id, role, content, model, created_at)"
            " values (%s, %s, 'assistant', %s, 'demo', %s)",
            [gone, LOCAL_USER.user_id, f"Look **here** ![pixel]({image_server}/p.png)", NEWEST],
        )

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page(accept_downloads=True)
        page.set_default_timeout(30_000)
        # The very first request after the server starts is a deep link: Streamlit runs it in legacy
        # pages/ mode (without app.py); the page must not fail or skip the auth gate.
        page.goto(f"{app_url}/history?limit=10")
        # app.py ran (its st.navigation titles, not file names, are in the sidebar) and nothing failed
        expect(page.get_by_role("link", name="History", exact=True)).to_be_visible()
        settle(page)
        expect(page.get_by_text("This app has encountered an error")).to_have_count(0)
        page.goto(f"{app_url}/history?limit=10")
        older = page.get_by_role("button", name="Older →")
        expect(older).to_be_enabled()
        older.click()
        page.wait_for_url("**before=*")
        page.get_by_role("button", name="← Newer").click()
        page.wait_for_url(lambda url: "before=" not in url and "after=" not in url)
        settle(page)

        choose(page, "Message details", "1. ")
        # rendered as markdown (bold), the image syntax shown as text, no <img> pointing at our server
        expect(page.locator("p").filter(has_text="Look here ![pixel](")).to_be_visible()
        expect(page.locator("strong", has_text="here")).to_be_visible()
        expect(page.locator(f'img[src*="{image_server}"]')).to_have_count(0)

        with page.expect_download() as info:
            page.get_by_role("button", name="Conversation as Markdown").click()
        saved = tmp_path / "conversation.md"
        info.value.save_as(saved)
        text = saved.read_text()
        assert text.startswith("# Gone\n") and "Look **here**" in text

        page.get_by_role("button", name="Delete conversation…").click()
        dialog = page.get_by_role("dialog")
        expect(dialog).to_contain_text("will be deleted")
        dialog.get_by_role("button", name="Delete", exact=True).click()
        expect(page.get_by_text("Conversation deleted.")).to_be_visible()

        settle(page)
        page.get_by_text("Export & delete", exact=True).click()
        with page.expect_download() as info:
            page.get_by_role("button", name="All messages as CSV").click()
        assert info.value.suggested_filename == "chat-history.csv"
        info.value.save_as(tmp_path / "all.csv")
        lines = (tmp_path / "all.csv").read_text().splitlines()
        assert lines[0].startswith("created_at,id,conversation_id,conversation_title,role,model,status")
        assert len(lines) == 15 and all(",Keep,user,demo,complete," in line for line in lines[1:])
        browser.close()

    with psycopg.connect(database.admin_url) as conn:
        left = conn.execute("select id from public.conversations where user_id = %s", [LOCAL_USER.user_id]).fetchall()
    assert left == [(keep,)]
    assert Recorder.hits == [], "rendering a message made the browser fetch an image"
