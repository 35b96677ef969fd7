"""Shared browser-test helpers."""

from __future__ import annotations

import time

from playwright.sync_api import Locator, Page, expect

STATE = '[data-testid="stApp"]'


def settle(page: Page, quiet_ms: int = 750, timeout_s: float = 30.0) -> None:
    """Wait until no script run has been in flight for `quiet_ms`.

    "Not running" for an instant is not enough: the sign-in page's cookie component reports to Python
    shortly after it loads, which starts another run, and a form submitted just then is dropped by
    Streamlit (the old page stays, as if the click never happened). A person never types that fast;
    a test must wait for the app to be quiet, as a person would see it.
    """
    deadline = time.monotonic() + timeout_s
    quiet_since: float | None = None
    while time.monotonic() < deadline:
        running = page.locator(STATE).get_attribute("data-test-script-state") != "notRunning"
        now = time.monotonic()
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif (now - quiet_since) * 1000 >= quiet_ms:
            return
        page.wait_for_timeout(50)
    raise AssertionError(f"the app did not settle within {timeout_s}s")


def submit_form(page: Page, button: Locator, done: Locator, timeout_s: float = 20.0) -> None:
    """Click a form's submit button and wait for `done`; click once more if the first click was dropped.

    Known issue, kept visible here rather than hidden: on the sign-in page, streamlit-authenticator's
    cookie component reports to Python after it loads, and a form submitted while that report's run
    is starting is sometimes dropped by Streamlit (seen about once in five CI runs even after
    settle()). A person then clicks again; so does this helper, once, and only when nothing happened.
    """
    button.click()
    try:
        expect(done).to_be_visible(timeout=timeout_s * 1000)
        return
    except AssertionError:
        settle(page)
    if done.count() == 0:
        button.click()
    expect(done).to_be_visible(timeout=timeout_s * 1000)
