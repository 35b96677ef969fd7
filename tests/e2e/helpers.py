"""Shared browser-test helpers."""

from __future__ import annotations

import time

from playwright.sync_api import Page

STATE = '[data-testid="stApp"]'


def settle(page: Page, quiet_ms: int = 750, timeout_s: float = 30.0) -> None:
    """Wait until no script run has been in flight for `quiet_ms`: a widget filled while a run is still
    drawing the page can be replaced by that run's version of it.

    There is no click-twice helper any more: sign-in is a plain HTML form the browser posts itself
    (components/login.py), so no script run can drop it; streamlit-authenticator's racing login widget,
    which lost about one submit in five, is gone.
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
