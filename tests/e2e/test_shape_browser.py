"""End to end in a real browser: copying (a whole reply as its raw markdown, and a code block inside a
reply), and the Escape key stopping a reply being written, here an edited message's reply.

The model is the real openai SDK in the app talking to a local wire server in this process, so the reply's
exact text, and a silence in the middle of it, are chosen by the test. The clipboard is Chromium's own: the
page gets the clipboard permissions, and the test reads back what the page wrote."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Locator, Page, expect

from devtools.wire_servers import Script, WireServer
from tests.e2e.server import ROOT, app_server, wait_until
from tests.e2e.test_chat_browser import browser, idle

__all__ = ["browser"]  # the Chromium fixture, shared with the chat browser test
pytestmark = pytest.mark.e2e

SHOTS = ROOT / "tests" / "e2e" / "screenshots"
# Markdown whose rendering differs from its text everywhere: a heading, emphasis, a link, a fenced code block,
# a list, trailing blank space. The copy must be the text, not the rendering.
REPLY = (
    "# Plan\n\nSome **bold**, a [link](https://example.com) and `code`.\n\n"
    "```python\nx = 1\nprint(x)\n```\n\n- one\n- two\n"
)


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture(scope="module")
def server(wire: WireServer) -> Iterator[str]:
    env = {
        "CHAT_AUTH": "none",
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        "OPENAI_BASE_URL": wire.base_url,
        "OPENAI_COMPAT_MODELS": "wire-model",
        "OPENAI_API_KEY": "sk-e2e",
    }
    with app_server(env) as s:
        yield s.url


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    ctx = browser.new_context(
        viewport={"width": 1280, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
    )
    yield ctx
    ctx.close()


def send(page: Page, wire: WireServer, text: str, reply: Script, replies: int) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_visible(timeout=60_000)
    idle(page)
    wire.queue(reply)
    box.fill(text)
    box.press("Enter")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2 * replies, timeout=60_000)


def clipboard(page: Page) -> str:
    return str(page.evaluate("navigator.clipboard.readText()"))


def copied(page: Page, expected: str) -> None:
    """Wait until the clipboard holds `expected` (the page writes it asynchronously)."""
    seen: list[str] = []

    def holds() -> bool:
        seen.append(clipboard(page))
        return seen[-1] == expected

    try:
        wait_until(holds, 10, "the clipboard to be written")
    except AssertionError:
        raise AssertionError(f"the clipboard holds {seen[-1]!r}, expected {expected!r}") from None


def copy_icon(code_block: Locator) -> Locator:
    """The copy icon Streamlit puts on a code block (shown on hover)."""
    code_block.hover()
    return code_block.get_by_role("button", name="Copy to clipboard")


def test_a_reply_and_a_code_block_in_it_copy_their_exact_text(
    context: BrowserContext, server: str, wire: WireServer
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = context.new_page()
    page.goto(server, wait_until="domcontentloaded")
    send(page, wire, "Make a plan", Script(chunks=[REPLY[:40], REPLY[40:]]), replies=1)
    reply = page.get_by_test_id("stChatMessage").nth(1)
    expect(reply.get_by_role("heading", name="Plan")).to_be_visible(timeout=60_000)
    idle(page)

    # Streamlit's own copy icon on a fenced code block in the rendered reply: the block's code.
    page.evaluate("navigator.clipboard.writeText('')")
    copy_icon(reply.get_by_test_id("stMarkdown").get_by_test_id("stCode")).click()
    copied(page, "x = 1\nprint(x)")

    # The whole reply: Copy opens its raw markdown; the code block's icon there copies it exactly.
    page.evaluate("navigator.clipboard.writeText('')")
    reply.get_by_role("button", name="Copy").click()
    source = page.get_by_test_id("stPopoverBody").get_by_test_id("stCode")
    expect(source).to_be_visible(timeout=10_000)
    expect(source).to_contain_text("# Plan")
    page.screenshot(path=str(SHOTS / "copy-01-popover.png"))
    copy_icon(source).click()
    copied(page, REPLY)
    page.keyboard.press("Escape")  # closes the popover

    # The same after a reload, where the reply is drawn from the database.
    page.reload(wait_until="domcontentloaded")
    reply = page.get_by_test_id("stChatMessage").nth(1)
    expect(reply.get_by_role("heading", name="Plan")).to_be_visible(timeout=60_000)
    idle(page)
    page.evaluate("navigator.clipboard.writeText('')")
    reply.get_by_role("button", name="Copy").click()
    copy_icon(page.get_by_test_id("stPopoverBody").get_by_test_id("stCode")).click()
    copied(page, REPLY)
    page.close()


def test_escape_stops_an_edited_messages_reply(context: BrowserContext, server: str, wire: WireServer) -> None:
    page = context.new_page()
    page.goto(server, wait_until="domcontentloaded")
    send(page, wire, "A question", Script(chunks=["First answer"]), replies=1)
    expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("First answer", timeout=60_000)
    idle(page)
    page.reload(wait_until="domcontentloaded")  # drawn from the database, the question has its Edit button
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=60_000)
    idle(page)

    first = page.get_by_test_id("stChatMessage").nth(0)
    first.get_by_role("button", name="Edit").click()
    editor = first.get_by_role("textbox")
    expect(editor).to_have_value("A question", timeout=30_000)
    editor.fill("A better question")
    idle(page)  # the text area reports its value when it loses focus; let that run end first
    # Two words, then a long silence: Escape lands while the edit's reply is being written.
    wire.queue(Script(chunks=["Thinking ", "aloud", " and done"], pause_before={2: 60.0}))
    try:
        first.get_by_role("button", name="Save").click()
        reply = page.get_by_test_id("stChatMessage").nth(1)
        expect(reply).to_contain_text("Thinking aloud", timeout=60_000)
        expect(reply.get_by_role("button", name="Stop")).to_be_visible()
        # While the edit is answered, the edited message is already drawn as text: no editor left behind.
        expect(first).to_contain_text("A better question")
        expect(first.get_by_role("textbox")).to_have_count(0)
        expect(first.get_by_role("button", name="Save")).to_have_count(0)
        page.screenshot(path=str(SHOTS / "escape-01-writing.png"))
        # From the chat input, where the user's hands are: Streamlit lets Escape through from text fields.
        page.get_by_test_id("stChatInputTextArea").press("Escape")
        expect(reply.get_by_role("button", name="Stop")).to_have_count(0, timeout=30_000)  # the page reran
    finally:
        wire.release.set()  # the provider may speak again: nothing more of it may be kept
        wire.release.clear()
    idle(page)
    page.reload(wait_until="domcontentloaded")
    messages = page.get_by_test_id("stChatMessage")
    expect(messages).to_have_count(2, timeout=60_000)
    expect(messages.nth(0)).to_contain_text("A better question")
    expect(messages.nth(1)).to_contain_text("Stopped before the end.")
    assert messages.nth(1).get_by_test_id("stMarkdownContainer").first.inner_text().strip() == "Thinking aloud"
    expect(messages.nth(0).get_by_text("2 / 2", exact=True)).to_be_visible()
    page.close()
