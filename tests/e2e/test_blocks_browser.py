"""Block-by-block rendering in a real browser: a reply streamed live and the same reply reloaded from the
database are the same markdown elements, including the cases where cutting would change the rendering
(fences with blank lines, tables, $$ math, loose ordered lists, reference links and footnotes)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devtools.wire_servers import Script, WireServer
from tests.e2e.helpers import settle
from tests.e2e.server import app_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]

BLOCKS = (
    "# Plan\n\nFirst paragraph with **bold** text\nand a second line.\n\n"
    "3. third\n\n4. fourth, loose\n\n"
    "```python\nx = 1\n\ny = 2\n```\n\n"
    "| name | value |\n|---|---|\n| a | 1 |\n| b | 2 |\n\n"
    "$$\na^2\n\n+ b^2\n$$\n\n"
    "> quoted\n\nLast words."
)
DEFINITIONS = "See [the docs][d] and a claim[^1].\n\nMore text.\n\n[d]: https://example.com/docs\n\n[^1]: The source."


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture(scope="module")
def url(wire: WireServer) -> Iterator[str]:
    env = {
        "CHAT_AUTH": "none",
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        "OPENAI_BASE_URL": wire.base_url,
        "OPENAI_COMPAT_MODELS": "wire-model",
        "OPENAI_API_KEY": "sk-e2e",
    }
    with app_server(env) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); see README"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def idle(page: Page) -> None:
    expect(page.locator('[data-testid="stApp"][data-test-script-state="notRunning"]')).to_have_count(1, timeout=60_000)
    settle(page)


def reply_elements(page: Page) -> list[str]:
    """The rendered markdown elements of the last bubble, and the meta line. React gives headings fresh
    ids on every render and styles get generated class names: those are left out of the comparison."""
    bubble = page.get_by_test_id("stChatMessage").last
    html = bubble.get_by_test_id("stMarkdown").evaluate_all(
        "els => els.map(e => e.innerHTML)"
    )
    return [re.sub(r' (?:id|aria-labelledby|class)="[^"]*"', "", h) for h in html]


@pytest.mark.parametrize(("text", "blocks"), [(BLOCKS, 8), (DEFINITIONS, 1)], ids=["blocks", "definitions"])
def test_a_streamed_reply_and_its_reload_are_the_same_elements(
    url: str, browser: Browser, wire: WireServer, text: str, blocks: int
) -> None:
    chunks = [text[i : i + 5] for i in range(0, len(text), 5)]
    wire.queue(Script(chunks=chunks, chunk_delay_s=0.01))
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(url, wait_until="domcontentloaded")
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_visible(timeout=60_000)
    idle(page)
    box.fill("Show me some markdown")
    box.press("Enter")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=30_000)
    expect(page.get_by_test_id("stChatMessage").last).to_contain_text("·", timeout=60_000)  # the final meta line
    idle(page)
    # The Stop and Regenerate drawn before the reply streamed are replaced (by Regenerate and Copy), not added to.
    actions = page.get_by_test_id("stChatMessage").last.get_by_role("button")
    expect(actions).to_have_count(2)
    expect(actions.nth(0)).to_contain_text("Regenerate")
    expect(actions.nth(1)).to_contain_text("Copy")
    live = reply_elements(page)
    assert "c=" in page.url
    page.reload(wait_until="domcontentloaded")
    expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=60_000)
    idle(page)
    reloaded = reply_elements(page)
    page.close()
    assert live == reloaded
    assert len(live) == blocks + 1  # the blocks, then the meta line
    html = "".join(live)
    if text is BLOCKS:
        assert '<ol start="3">' in html and "<table" in html and "<math" in html and "<pre" in html, html
    else:
        assert 'href="https://example.com/docs"' in html and "The source." in html
