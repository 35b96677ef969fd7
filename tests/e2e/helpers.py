"""Shared browser-test helpers."""

from __future__ import annotations

import time

from playwright.sync_api import Page

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
