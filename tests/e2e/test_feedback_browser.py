"""End to end in a real browser: give a reply a thumbs down with a comment, reload and see both again, then
find that reply on History with the feedback filter and read the feedback in its detail view."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from tests.e2e.server import ROOT, app_server
from tests.e2e.test_branch_browser import send
from tests.e2e.test_chat_browser import browser, idle
from tests.e2e.test_history_browser import choose

__all__ = ["browser"]  # the Chromium fixture, shared with the chat browser test
pytestmark = pytest.mark.e2e

SHOTS = ROOT / "tests" / "e2e" / "screenshots"
COMMENT = "Too long for a picnic list."


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {"CHAT_AUTH": "none", "CHAT_DEMO_CHARS_PER_S": "100000", "CHAT_RATE_LIMIT_PER_MINUTE": "0"}
    with app_server(env) as s:
        yield s.url


def reply(page: Page, n: int) -> Locator:
    return page.get_by_test_id("stChatMessage").nth(n)


def thumb(bubble: Locator, name: str) -> Locator:
    # st.feedback's thumbs are a radio group: each thumb is a `radio` with aria-checked.
    return bubble.get_by_role("radio", name=name)


def pressed(button: Locator) -> None:
    expect(button).to_have_attribute("aria-checked", "true", timeout=30_000)


def test_thumbs_down_with_a_comment_then_found_by_the_history_filter(server: str, browser: Browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server, wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible(timeout=60_000)
    send(page, "Plan a picnic", replies=1)
    send(page, "What should I bring?", replies=2)

    first = reply(page, 1)
    thumb(first, "Thumbs down").click()
    idle(page)
    pressed(thumb(reply(page, 1), "Thumbs down"))
    reply(page, 1).get_by_role("button", name="Add a comment").click()
    box = page.get_by_role("textbox", name="Comment on this reply")
    expect(box).to_be_visible(timeout=30_000)
    box.fill(COMMENT)
    idle(page)
    page.get_by_role("button", name="Save comment").click()
    idle(page)
    reply(page, 1).screenshot(path=str(SHOTS / "feedback-01-given.png"))

    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(4, timeout=60_000)
    idle(page)
    pressed(thumb(reply(page, 1), "Thumbs down"))
    reply(page, 1).get_by_role("button", name="Edit comment").click()
    expect(page.get_by_role("textbox", name="Comment on this reply")).to_have_value(COMMENT, timeout=30_000)
    page.keyboard.press("Escape")
    expect(thumb(reply(page, 3), "Thumbs down")).to_have_attribute("aria-checked", "false")  # the other reply
    expect(reply(page, 3).get_by_role("button", name="Add a comment")).to_have_count(0)

    page.get_by_role("link", name="History", exact=True).click()
    expect(page.get_by_role("combobox", name="Feedback")).to_be_visible(timeout=60_000)
    idle(page)
    choose(page, "Feedback", "👎 Thumbs down")
    page.wait_for_url("**feedback=down*")
    idle(page)
    choose(page, "Message details", "1. ")
    feedback = page.get_by_text("Your feedback: 👎 thumbs down")
    expect(feedback).to_be_visible(timeout=30_000)
    expect(page.get_by_text(f"Comment: {COMMENT}")).to_be_visible()
    feedback.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "feedback-02-history-detail.png"))
    # The filter left one message: the picker offers it and nothing else.
    page.get_by_role("combobox", name="Message details").click()
    expect(page.get_by_role("option")).to_have_count(2)  # "Choose a message…" and the reply
    page.keyboard.press("Escape")
    page.get_by_role("combobox", name="Feedback").scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "feedback-03-history-filter.png"))
    page.close()
