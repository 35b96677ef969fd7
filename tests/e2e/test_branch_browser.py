"""End to end in a real browser: edit a sent message, which branches the conversation; switch back to the
first version with `‹`; reload, and the chosen version is still the one shown (it is stored)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from services.providers.demo import CONFIGURE_HINT
from tests.e2e.server import ROOT, app_server
from tests.e2e.test_chat_browser import browser, idle

__all__ = ["browser"]  # the Chromium fixture, shared with the chat browser test
pytestmark = pytest.mark.e2e

SHOTS = ROOT / "tests" / "e2e" / "screenshots"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {"CHAT_AUTH": "none", "CHAT_DEMO_CHARS_PER_S": "100000", "CHAT_RATE_LIMIT_PER_MINUTE": "0"}
    with app_server(env) as s:
        yield s.url


def send(page: Page, text: str, replies: int) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    idle(page)
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("stChatMessage").nth(2 * replies - 1)).to_contain_text(CONFIGURE_HINT, timeout=60_000)
    idle(page)


def texts(page: Page) -> list[str]:
    """The text of each message's first markdown block (the bubbles' captions and buttons left out)."""
    bubbles = page.get_by_test_id("stChatMessage")
    return [
        bubbles.nth(i).get_by_test_id("stMarkdownContainer").first.inner_text().strip() for i in range(bubbles.count())
    ]


def test_edit_branches_and_the_chosen_version_survives_a_reload(server: str, browser: Browser) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server, wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible(timeout=60_000)
    send(page, "Plan a picnic", replies=1)
    send(page, "What should I bring?", replies=2)

    first = page.get_by_test_id("stChatMessage").nth(0)
    first.get_by_role("button", name="Edit").click()
    editor = first.get_by_role("textbox")
    expect(editor).to_have_value("Plan a picnic", timeout=30_000)
    editor.fill("Plan a picnic in the rain")
    idle(page)  # the text area reports its value when it loses focus; let that run end first
    first.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text(CONFIGURE_HINT, timeout=60_000)
    idle(page)
    assert texts(page)[0] == "Plan a picnic in the rain"
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2)  # the follow-up stays on the other branch
    first = page.get_by_test_id("stChatMessage").nth(0)
    expect(first.get_by_text("2 / 2", exact=True)).to_be_visible()
    expect(page.get_by_test_id("stChatMessage").nth(1).get_by_role("button", name="Regenerate")).to_be_visible()
    first.screenshot(path=str(SHOTS / "branch-01-switcher.png"))
    page.screenshot(path=str(SHOTS / "branch-02-edited.png"))

    first.get_by_role("button", name="‹").click()
    expect(page.get_by_test_id("stChatMessage")).to_have_count(4, timeout=30_000)
    idle(page)
    assert texts(page)[0] == "Plan a picnic" and texts(page)[2] == "What should I bring?"
    expect(page.get_by_test_id("stChatMessage").nth(0).get_by_text("1 / 2", exact=True)).to_be_visible()

    assert "c=" in page.url
    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(4, timeout=60_000)
    idle(page)
    assert texts(page)[0] == "Plan a picnic" and texts(page)[2] == "What should I bring?"
    expect(page.get_by_test_id("stChatMessage").nth(0).get_by_text("1 / 2", exact=True)).to_be_visible()
    page.screenshot(path=str(SHOTS / "branch-03-reloaded.png"))
    page.close()
