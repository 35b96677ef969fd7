"""Sign-in in a real browser: `streamlit run app.py` in a subprocess, Debian's Chromium through Playwright.

A newcomer signs up from the login page, reaches the app, logs out and logs in again. A second test shows
that a freshly started server does not show a page to someone who opens its URL directly.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.store.embedded import EmbeddedDatabase
from tests.e2e.helpers import settle, submit_form

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery"
TIMEOUT_MS = 60_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def server(database: EmbeddedDatabase, tmp_path: Path) -> Iterator[str]:
    """A fresh `streamlit run app.py` process (CHAT_AUTH=local) on 127.0.0.1; yields its base URL."""
    port = free_port()
    env = {
        **os.environ,
        "CHAT_AUTH": "local",
        "CHAT_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database.app_url,
        "DATABASE_ADMIN_URL": database.admin_url,
    }
    for name in ("CHAT_USERS_FILE", "CHAT_ALLOW_SIGNUP", "CHAT_COOKIE_KEY"):
        env.pop(name, None)
    log = open(tmp_path / "streamlit.log", "wb")  # noqa: SIM115 - closed in finally
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{base}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("streamlit did not start: " + (tmp_path / "streamlit.log").read_text())
            time.sleep(0.2)  # polling a subprocess for readiness, with a deadline
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (see README prerequisites)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def idle(page: object) -> None:
    """Wait until no script run is in flight, so the next fill lands in the form the last run drew."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1)
    settle(page)


def test_newcomer_signs_up_reaches_the_app_logs_out_and_in(server: str, browser: object) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("No accounts exist yet")).to_be_visible()
    idle(page)

    page.get_by_label("Username").fill("ann")
    page.get_by_label("Display name (optional)").fill("Ann Lee")
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Repeat password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()

    sidebar = page.get_by_test_id("stSidebar")
    expect(sidebar.get_by_text("Ann Lee")).to_be_visible()
    expect(sidebar.get_by_text("Roles: reviewer")).to_be_visible()
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
    idle(page)

    sidebar.get_by_role("button", name="Log out").click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    idle(page)
    # The login form comes first; the "Create account" form below it has the same labels.
    login_form = page.get_by_test_id("stForm").filter(has=page.get_by_role("button", name="Login"))
    login_form.get_by_label("Username", exact=True).fill("ann")
    login_form.get_by_label("Password", exact=True).fill("wrong password")
    login_form.get_by_role("button", name="Login").click()
    expect(page.get_by_text("Username or password is incorrect.")).to_be_visible()
    idle(page)

    login_form.get_by_label("Password", exact=True).fill(PASSWORD)
    submit_form(page, login_form.get_by_role("button", name="Login"), sidebar.get_by_role("button", name="Log out"))
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


@pytest.mark.parametrize("path", ["chat", "history"])
def test_fresh_server_does_not_serve_a_page_by_its_url(server: str, browser: object, path: str) -> None:
    from playwright.sync_api import Browser, expect

    assert isinstance(browser, Browser)
    page = browser.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(f"{server}/{path}")
    # The first run of a fresh server takes a few seconds; the sign-in must show, not the page.
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("heading", name=path.title())).to_have_count(0)
