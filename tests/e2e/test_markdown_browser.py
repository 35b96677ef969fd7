"""Hostile markdown in a real browser: no request leaves for any host but the app's own.

`streamlit run app.py` (CHAT_AUTH=none, the offline demo model, a fresh embedded database) and Debian's
Chromium. Each payload is sent as the first message of a new chat, so it is rendered as the user's
bubble, echoed inside the demo model's streamed reply, and used as the conversation's title in a
sidebar button; the page is then reloaded so every bubble is rendered again from the database. There is
a Content-Security-Policy, but it cannot make this test pass: a fetch it blocks is a
securitypolicyviolation event, which fails the test like a request that left. What this test proves is the
neutraliser (components/markdown.py) itself. Every request is recorded with page.on("request").
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, Page, Request, expect

from tests.e2e.server import app_server
from tests.e2e.test_chat_browser import browser, idle
from tests.test_markdown import BYPASSES, TOO_DEEP

__all__ = ["browser"]  # the Chromium fixture, shared with the chat browser test
pytestmark = pytest.mark.e2e

EVIL = "http://evil.test"
# The app sends a Content-Security-Policy (api/security.py) that would block an escaped image: the test must
# not pass because of it, so a blocked fetch (a securitypolicyviolation event) fails it like a made one.
VIOLATION_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e => window.__cspViolations.push(e.blockedURI));
"""
PAYLOADS = [
    f"![x]({EVIL}/inline.png)",
    f"look ![x][ref]\n\n[ref]: {EVIL}/reference.png",
    f"<img src={EVIL}/html.png>",
    f'<img src="{EVIL}/quoted.png"> and inline <img src="{EVIL}/inline-quoted.png">',
    f'![x]({EVIL}/a.png "title") and ![y][]\n\n[y]: {EVIL}/collapsed.png',
    f"note[^1]\n\n[^1]: ![x]({EVIL}/footnote.png)",
    f"[![x]({EVIL}/in-link.png)](http://example.test)",
    f"| a | b |\n|---|---|\n| ![x]({EVIL}/cell.png) | c |",
    f"- item\n  > ![x]({EVIL}/nested.png)",
    f"<div>\n\n![x]({EVIL}/after-html.png)\n\n</div>",
    f"\\`![x]({EVIL}/escaped-backtick.png)`",
    *[text.replace("http://evil.test", EVIL) for text in BYPASSES],
    # Deeper than the neutraliser's parser reads (the first line puts the host in the sidebar title).
    *[f"{EVIL} deep\n\n" + text.replace("http://evil.test", EVIL) for text in TOO_DEEP],
]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {"CHAT_AUTH": "none", "CHAT_DEMO_CHARS_PER_S": "4000", "CHAT_RATE_LIMIT_PER_MINUTE": "0"}
    with app_server(env) as s:
        yield s.url


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
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != app_origin:
            elsewhere.append(request.url)

    page.on("request", record)
    page.add_init_script(VIOLATION_RECORDER)
    page.goto(server, wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_visible(timeout=60_000)
    for text in PAYLOADS:
        send(page, text)
        assert not elsewhere, (text, elsewhere)
        assert page.evaluate("window.__cspViolations") == [], text
        # Streamlit links a bare URL; one inside a tag shown as text must not take the tag's `">` along.
        hrefs = page.get_by_test_id("stChatMessage").locator("a").evaluate_all("links => links.map(a => a.href)")
        assert not [href for href in hrefs if '"' in href or "%22" in href or "%3E" in href], (text, hrefs)
    # Every bubble and title again, from the database this time.
    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=30_000)
    idle(page)
    # The payloads did render, as text: the sidebar holds one conversation per payload (its first page, the
    # 20 most recent).
    sidebar_titles = page.get_by_test_id("stSidebar").get_by_role("button").all_inner_texts()
    assert sum("evil.test" in title for title in sidebar_titles) >= min(len(PAYLOADS), 20) - 2, sidebar_titles
    assert not elsewhere, elsewhere
    assert page.evaluate("window.__cspViolations") == []
