"""The model picker in a real browser: `streamlit run app.py` with two OpenAI-compatible wire servers (one
discovered, one with listed models) and one that is down. The list is grouped, the dead server is named,
a reply comes from the picked server, and a reload (a new session) opens on the last pick."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from devtools.wire_servers import WireServer
from tests.e2e.helpers import settle
from tests.e2e.server import app_server

pytestmark = pytest.mark.e2e

SHOTS = Path(__file__).resolve().parent / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


@pytest.fixture(scope="module")
def wires() -> Iterator[tuple[WireServer, WireServer]]:
    with WireServer("openai") as local, WireServer("openai") as lab:
        local.models = ["llama3.2:3b", "qwen2.5:7b"]
        yield local, lab


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def open_picker(page: Page) -> None:
    settle(page)
    page.get_by_test_id("stSidebar").get_by_role("combobox", name="Model").click()


def test_grouped_picker_with_a_down_server_and_a_remembered_pick(wires: tuple[WireServer, WireServer]) -> None:
    local, lab = wires
    servers = [
        {"name": "local", "url": local.base_url},
        {"name": "offline-gpu", "url": closed_port_url()},
        {"name": "lab", "url": lab.base_url, "key": "lab-key", "models": ["mixtral-8x7b"]},
    ]
    env = {"CHAT_AUTH": "none", "CHAT_RATE_LIMIT_PER_MINUTE": "0", "CHAT_OPENAI_SERVERS": json.dumps(servers)}
    with app_server(env) as server, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.goto(server.url)
        sidebar = page.get_by_test_id("stSidebar")
        expect(sidebar.get_by_text("Server offline-gpu is unavailable: it could not be reached.")).to_be_visible(
            timeout=60_000
        )
        expect(sidebar.get_by_role("button", name="Refresh models")).to_be_visible()
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "model-picker-closed.png"))

        open_picker(page)
        options = page.get_by_role("option")
        expect(options).to_have_text(
            ["local · llama3.2:3b", "local · qwen2.5:7b", "lab · mixtral-8x7b", "Offline demo model (no API key)"]
        )
        page.screenshot(path=str(SHOTS / "model-picker.png"))
        page.get_by_role("option", name="local · qwen2.5:7b").click()
        settle(page)

        page.get_by_test_id("stChatInputTextArea").fill("Hello over there")
        page.keyboard.press("Enter")
        expect(page.get_by_text("Hello, world!")).to_be_visible(timeout=30_000)
        assert local.requests[-1].body["model"] == "qwen2.5:7b"
        expect(page.get_by_text("local · qwen2.5:7b ·")).to_be_visible()  # the meta line

        page.goto(server.url)  # a new session: the picker opens on the last pick
        expect(sidebar.get_by_role("combobox", name="Model")).to_have_value("local · qwen2.5:7b", timeout=60_000)
        browser.close()
