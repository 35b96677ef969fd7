"""End to end in a real browser: `streamlit run app.py` with a fresh data directory (the embedded
database, as in the README quick start), Debian's Chromium driven by Playwright.

Sign-in: `sign_in()` is the one place that knows how; with CHAT_AUTH=local it fills the sign-in form
("Username", "Password", "Sign in"). This test runs with CHAT_AUTH=none until local accounts land.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from services.accounts import AccountStore
from services.providers.demo import CONFIGURE_HINT
from tests.e2e.helpers import settle
from tests.e2e.server import ROOT, app_server, wait_until

pytestmark = pytest.mark.e2e

SHOTS = ROOT / "tests" / "e2e" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
AUTH_MODE = "local"  # a real local account, created in the fixture the way "Create account" does
USERNAME, PASSWORD = "e2e-user", "e2e-password-123"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    def account(data_dir: Path) -> None:
        # The account, made with the same AccountStore the sign-up route uses, in the server's own users file.
        AccountStore(data_dir / "users.yaml").create(USERNAME, PASSWORD, name="E2E User")

    env = {
        "CHAT_AUTH": AUTH_MODE,
        "CHAT_DEMO_CHARS_PER_S": "60",  # slow enough to watch the reply grow
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
    }
    with app_server(env, setup=account) as s:
        yield s.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); see README"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def idle(page: Page) -> None:
    """Wait until no script run is in flight. Streamlit shows the stop button only for the run that a
    chat submission started; a submission that lands while an earlier run is finishing gets none."""
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=30_000)
    settle(page)


def sign_in(page: Page) -> None:
    """Log in with a local account when CHAT_AUTH=local; nothing to do with CHAT_AUTH=none."""
    if AUTH_MODE != "local":
        return
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=60_000)
    # A plain HTML form the browser posts itself: one click, nothing to race with (no retry).
    form = page.locator('form[action="/api/auth/sign-in"]')
    form.get_by_label("Username").fill(USERNAME)
    form.get_by_label("Password", exact=True).fill(PASSWORD)
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("stSidebar").get_by_role("button", name="Log out")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("heading", name="Sign in")).to_have_count(0, timeout=30_000)
    idle(page)


def still_signed_in(page: Page) -> None:
    if AUTH_MODE == "local":
        expect(page.get_by_test_id("stSidebar").get_by_role("button", name="Log out")).to_be_visible(timeout=60_000)
        expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)


def test_reply_grows_in_the_browser_and_the_conversation_survives_a_reload(server: str, browser: Browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server, wait_until="domcontentloaded")
    sign_in(page)
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_visible(timeout=60_000)  # the first run starts the embedded database
    expect(page.get_by_text("Offline demo model: replies are canned")).to_be_visible()
    page.screenshot(path=str(SHOTS / "01-empty.png"))

    idle(page)
    box.fill("Hello from a real browser")
    box.press("Enter")

    # The reply's markdown blocks, without the meta line and the buttons drawn under it.
    assistant = page.get_by_test_id("stChatMessage").nth(1).locator(
        '[data-testid="stMarkdown"]:not(:has([data-testid="stCaptionContainer"]))'
    )
    seen: list[str] = []

    def finished() -> bool:
        if page.get_by_test_id("stChatMessage").count() >= 2:
            text = "\n".join(assistant.all_inner_texts()).strip()
            if text and (not seen or seen[-1] != text):
                seen.append(text)
                if len(seen) == 3:
                    page.screenshot(path=str(SHOTS / "02-streaming.png"))
        return bool(seen) and CONFIGURE_HINT in seen[-1]

    wait_until(finished, 90, "the reply to finish streaming", interval_s=0.05)
    partials = [t for t in seen if CONFIGURE_HINT not in t]
    assert len(set(partials)) >= 3, f"the reply did not visibly grow: {seen}"
    # It grew from the start of the reply towards the end (markdown rendering can shift a character or
    # two between updates, e.g. when a list item starts, so lengths are compared end to end only).
    assert all(t.startswith("This") for t in partials), partials[:3]
    assert len(partials[0]) < len(partials[-1]) < len(seen[-1])
    expect(page.get_by_text("You wrote:")).to_be_visible()
    page.screenshot(path=str(SHOTS / "03-complete.png"))

    assert "c=" in page.url
    page.reload(wait_until="domcontentloaded")
    still_signed_in(page)  # the session cookie outlives the page: no second sign-in
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2, timeout=30_000)
    expect(messages.nth(0)).to_contain_text("Hello from a real browser")
    expect(messages.nth(1)).to_contain_text(CONFIGURE_HINT)
    page.screenshot(path=str(SHOTS / "04-reloaded.png"))

    # A fresh visit without the link finds the conversation in the sidebar, newest first.
    page.goto(server, wait_until="domcontentloaded")
    still_signed_in(page)
    entry = page.get_by_test_id("stSidebar").get_by_role("button", name="Hello from a real browser")
    expect(entry).to_be_visible(timeout=30_000)
    entry.click()
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=30_000)
    page.screenshot(path=str(SHOTS / "05-from-sidebar.png"))
    page.close()


def test_the_stop_button_keeps_the_partial_reply(server: str, browser: Browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server, wait_until="domcontentloaded")
    sign_in(page)  # a fresh page without ?c= is a new chat
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_visible(timeout=60_000)
    # A long prompt makes a long reply (the demo model echoes it), so the stop lands mid-stream even
    # when a loaded machine delays the browser.
    idle(page)
    box.fill("Stop me half-way. " + "This sentence is here to make the reply long. " * 8)
    box.press("Enter")
    reply = page.get_by_test_id("stChatMessage").nth(1).get_by_test_id("stChatMessageContent")

    def a_few_words() -> bool:
        return page.get_by_test_id("stChatMessage").count() >= 2 and len(reply.inner_text().split()) >= 4

    wait_until(a_few_words, 60, "the first words of the reply", interval_s=0.05)
    page.get_by_test_id("stChatInputStopButton").click()
    expect(page.get_by_test_id("stChatInputSubmitButton")).to_be_visible(timeout=30_000)
    page.screenshot(path=str(SHOTS / "06-stopped.png"))

    page.reload(wait_until="domcontentloaded")
    still_signed_in(page)
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2, timeout=30_000)
    expect(messages.nth(1)).to_contain_text("Stopped before the end.")
    stored = messages.nth(1).get_by_test_id("stMarkdownContainer").first.inner_text()
    assert stored.startswith("This is the") and CONFIGURE_HINT not in stored
    expect(page.get_by_role("button", name="Regenerate")).to_be_visible()
    page.screenshot(path=str(SHOTS / "07-stopped-reloaded.png"))
    page.close()
