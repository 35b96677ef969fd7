"""Sign-in in a real browser: `streamlit run app.py` in a subprocess, Debian's Chromium through Playwright.

Sessions live on the server (a row per browser, an HttpOnly cookie set by /api/auth/*); the short token
each tab holds is renewed from the session. The server's clock is moved through CHAT_TEST_CLOCK_FILE, so
"20 minutes with a 60 s token" and lockout delays take no real time. No helper clicks twice: a click that
is lost fails the test.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from services.accounts import AccountStore
from tests.e2e.server import AppServer, app_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent / "screenshots"
NEW_PASSWORD = "a different long passphrase"
PASSWORD = "correct horse battery"
SETUP_CODE = "e2e-setup-code-4321"
TIMEOUT_MS = 60_000
TOKEN_TTL_S = 60


class ServerClock:
    """The server's clock offset, in the file named by CHAT_TEST_CLOCK_FILE: it only ever moves forward."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0.0
        path.write_text("0")

    def advance(self, seconds: float) -> None:
        self.offset += seconds
        self.path.write_text(str(self.offset))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (see README prerequisites)")
    expect.set_options(timeout=TIMEOUT_MS)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def _accounts(data_dir: Path) -> None:
    accounts = AccountStore(data_dir / "users.yaml")
    accounts.create("ann", PASSWORD, name="Ann Lee", roles=("admin", "reviewer"))
    accounts.create("bob", PASSWORD, name="Bob Stone")
    accounts.create("lockme", PASSWORD)
    accounts.create("carl", PASSWORD, name="Carl")
    accounts.create("dave", PASSWORD, name="Dave")


@pytest.fixture(scope="module")
def clock(tmp_path_factory: pytest.TempPathFactory) -> ServerClock:
    return ServerClock(tmp_path_factory.mktemp("clock") / "offset")


@pytest.fixture(scope="module")
def server(clock: ServerClock) -> Iterator[AppServer]:
    """One server for the flows with accounts: 60 s tokens, the movable clock."""
    env = {
        "CHAT_AUTH": "local",
        "CHAT_TOKEN_TTL_S": str(TOKEN_TTL_S),
        "CHAT_TEST_CLOCK_FILE": str(clock.path),
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
    }
    with app_server(env, setup=_accounts) as s:
        yield s


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context()
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def log_out_button(page: Page):  # type: ignore[no-untyped-def]
    return page.get_by_test_id("stSidebar").get_by_role("button", name="Log out")


def sign_in(page: Page, username: str, password: str = PASSWORD) -> None:
    """Fill the sign-in form once and submit it once."""
    form = page.locator('form[action="/api/auth/sign-in"]')
    form.get_by_label("Username").fill(username)
    form.get_by_label("Password").fill(password)
    form.get_by_role("button", name="Sign in").click()


def open_signed_in(context: BrowserContext, url: str, username: str) -> Page:
    page = context.new_page()
    page.goto(url + "/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    sign_in(page, username)
    expect(log_out_button(page)).to_be_visible()
    return page


def rerun(page: Page, to: str) -> None:
    """One action that starts a script run: go to another page through the sidebar."""
    page.get_by_test_id("stSidebarNav").get_by_role("link", name=to).click()


def test_first_administrator_needs_the_setup_code(browser: Browser) -> None:
    with app_server({"CHAT_AUTH": "local", "CHAT_SETUP_CODE": SETUP_CODE}) as s:
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(s.url + "/")
        expect(page.get_by_text("No accounts exist yet")).to_be_visible()
        form = page.locator('form[action="/api/auth/sign-up"]')

        def create(code: str) -> None:
            form.get_by_label("Setup code").fill(code)
            form.get_by_label("Username").fill("root")
            form.get_by_label("Password", exact=True).fill(PASSWORD)
            form.get_by_label("Repeat password").fill(PASSWORD)
            form.get_by_role("button", name="Create administrator").click()

        create("not-the-code")
        expect(page.get_by_text("That setup code is not right")).to_be_visible()
        create(SETUP_CODE)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Roles: reviewer, admin")).to_be_visible()
        users = yaml.safe_load((s.data_dir / "users.yaml").read_text())["credentials"]["usernames"]
        assert users["root"]["id"].startswith("acct_")
        cookie = [c for c in page.context.cookies() if c["name"] == "chat_session"]
        assert cookie and cookie[0]["httpOnly"] and cookie[0]["sameSite"] == "Lax"
        page.close()


def test_reload_and_new_tab_stay_signed_in_and_log_out_ends_every_tab(
    server: AppServer, context: BrowserContext
) -> None:
    first = open_signed_in(context, server.url, "bob")
    first.reload()
    expect(log_out_button(first)).to_be_visible()
    second = context.new_page()
    second.goto(server.url + "/history")
    expect(log_out_button(second)).to_be_visible()
    expect(second.get_by_role("heading", name="Sign in")).to_have_count(0)

    log_out_button(first).click()
    expect(first.get_by_text("You are signed out.")).to_be_visible()
    # The other tab still shows the app; its next action finds the session revoked.
    rerun(second, "Chat")
    expect(second.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(second.get_by_text("Your session has ended")).to_be_visible()
    assert not [c for c in context.cookies() if c["name"] == "chat_session"]


def test_twenty_minutes_with_a_sixty_second_token_then_idle_ends_the_session(
    server: AppServer, context: BrowserContext, clock: ServerClock
) -> None:
    page = open_signed_in(context, server.url, "bob")
    for minute in range(20):
        clock.advance(TOKEN_TTL_S)  # every token this tab had is now expired by the server's clock
        if minute % 2 == 0:
            rerun(page, "History")
            expect(page.get_by_role("heading", name="History")).to_be_visible()
        else:
            rerun(page, "Chat")
            expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible()
        expect(log_out_button(page)).to_be_visible()
        expect(page.get_by_role("heading", name="Sign in")).to_have_count(0)
    # Unused for longer than CHAT_SESSION_IDLE_MINUTES (480): the session ends, with a plain notice.
    clock.advance(481 * 60)
    rerun(page, "History")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    expect(page.get_by_text("Your session has ended")).to_be_visible()


def test_fifty_sign_ins_in_a_row_all_succeed(server: AppServer, context: BrowserContext) -> None:
    page = context.new_page()
    page.goto(server.url + "/")
    succeeded = 0
    started = time.monotonic()
    for _ in range(50):
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
        sign_in(page, "ann")
        expect(log_out_button(page)).to_be_visible(timeout=15_000)
        succeeded += 1
        log_out_button(page).click()
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    print(f"\n50 sign-ins: {succeeded} succeeded in {time.monotonic() - started:.1f}s")
    assert succeeded == 50


def test_lockout_grows_then_locks_with_one_message_for_unknown_and_wrong(
    server: AppServer, context: BrowserContext, clock: ServerClock
) -> None:
    page = context.new_page()
    page.goto(server.url + "/")
    wrong = "not my password at all"
    incorrect = page.get_by_text("Username or password is incorrect.")

    # An unknown name and a wrong password read the same.
    sign_in(page, "nobody-here", wrong)
    expect(incorrect).to_be_visible()
    unknown_text = page.get_by_test_id("stAlert").inner_text()
    for _ in range(3):
        sign_in(page, "lockme", wrong)
        expect(incorrect).to_be_visible()
    assert page.get_by_test_id("stAlert").inner_text() == unknown_text
    # Failures 4 to 9 each block the name for 2, 4, ... 64 seconds; a try inside the wait is refused.
    for delay in (2, 4, 8, 16, 32, 64):
        sign_in(page, "lockme", wrong)
        expect(page.get_by_text(f"Wait {delay} seconds before trying again.")).to_be_visible()
        if delay >= 8:  # a shorter wait could pass in real time while the page loads
            sign_in(page, "lockme", PASSWORD)  # right password, but too soon
            expect(page.get_by_text("Too many failed sign-ins. Try again in")).to_be_visible()
        clock.advance(delay + 1)
    # The tenth failure locks the name for 15 minutes, even for the right password.
    sign_in(page, "lockme", wrong)
    expect(page.get_by_text("Wait 15 minutes before trying again.")).to_be_visible()
    sign_in(page, "lockme", PASSWORD)
    expect(page.get_by_text("Too many failed sign-ins. Try again in 15 minutes.")).to_be_visible()
    clock.advance(15 * 60 + 1)
    sign_in(page, "lockme", PASSWORD)
    expect(log_out_button(page)).to_be_visible()


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / name), full_page=True)


def test_password_change_signs_out_the_other_browser(server: AppServer, browser: Browser) -> None:
    laptop, phone = browser.new_context(), browser.new_context()
    try:
        here = open_signed_in(laptop, server.url, "carl")
        there = open_signed_in(phone, server.url, "carl")
        rerun(here, "Account")
        expect(here.get_by_role("heading", name="Account", exact=True)).to_be_visible()
        expect(here.get_by_text("Where you are signed in")).to_be_visible()
        here.get_by_label("Current password").fill(PASSWORD)
        here.get_by_label("New password", exact=True).fill(NEW_PASSWORD)
        here.get_by_label("Repeat new password").fill(NEW_PASSWORD)
        here.get_by_role("button", name="Change password").click()
        expect(here.get_by_text("Password changed. Signed out 1 other session(s).")).to_be_visible()
        expect(here.get_by_test_id("stDataFrame")).to_be_visible()
        here.get_by_role("heading", name="Account", exact=True).scroll_into_view_if_needed()
        shot(here, "auth-account.png")
        rerun(there, "History")
        expect(there.get_by_role("heading", name="Sign in")).to_be_visible()
        expect(there.get_by_text("Your session has ended")).to_be_visible()
        sign_in(there, "carl", NEW_PASSWORD)
        expect(log_out_button(there)).to_be_visible()
    finally:
        laptop.close()
        phone.close()


def test_admin_switches_an_account_off_and_its_open_tab_loses_access(server: AppServer, browser: Browser) -> None:
    admin_ctx, user_ctx = browser.new_context(viewport={"width": 1280, "height": 1000}), browser.new_context()
    try:
        user = open_signed_in(user_ctx, server.url, "dave")
        admin = open_signed_in(admin_ctx, server.url, "ann")
        rerun(admin, "Admin")
        expect(admin.get_by_role("heading", name="Audit log")).to_be_visible()
        box = admin.get_by_role("combobox", name="Account")
        box.click()
        box.press_sequentially("dave")
        box.press("Enter")
        expect(admin.get_by_role("button", name="Switch off")).to_be_visible()
        admin.get_by_role("button", name="Switch off").click()
        expect(admin.get_by_text("dave is switched off and signed out everywhere.")).to_be_visible()
        expect(admin.get_by_test_id("stDataFrame").first).to_be_visible()
        admin.get_by_role("heading", name="Admin", exact=True).scroll_into_view_if_needed()
        shot(admin, "auth-admin.png")
        rerun(user, "History")
        expect(user.get_by_role("heading", name="Sign in")).to_be_visible()
        sign_in(user, "dave")
        expect(user.get_by_text("This account is switched off. Ask an administrator.")).to_be_visible()
        expect(user.locator('form[action="/api/auth/sign-in"]').get_by_label("Username")).to_have_value("dave")
        shot(user, "auth-sign-in.png")
    finally:
        admin_ctx.close()
        user_ctx.close()


def test_sign_in_route_refuses_another_origin(server: AppServer) -> None:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        server.url + "/api/auth/sign-in",
        data=b"username=ann&password=correct+horse+battery",
        headers={"Origin": "https://evil.example", "Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 403
    assert "set-cookie" not in {k.lower() for k in refused.value.headers}


@pytest.mark.parametrize("path", ["chat", "history", "admin"])
def test_fresh_server_does_not_serve_a_page_by_its_url(browser: Browser, path: str) -> None:
    """A fresh process runs pages/<name>.py directly for a deep link until app.py has run once; every page
    guards itself, so the sign-in shows and never the page."""
    with app_server({"CHAT_AUTH": "local"}, setup=_accounts) as s:
        page = browser.new_page()
        page.goto(f"{s.url}/{path}")
        expect(page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=20_000)
        expect(page.get_by_role("heading", name=path.title(), exact=True)).to_have_count(0)
        page.close()
