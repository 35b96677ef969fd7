"""Attachments end to end in a real browser: `streamlit run app.py` (embedded database, the offline demo model,
which takes images) and Debian's Chromium. Attach an image and a PDF through the chat input's own file
picker, send, see the thumbnail and the file chips in the bubble, reload, see them again, and download the
PDF back byte for byte."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from devtools.files import image_bytes, pdf_bytes
from tests.e2e.server import ROOT, app_server
from tests.e2e.test_chat_browser import browser, idle

pytestmark = pytest.mark.e2e

__all__ = ["browser"]  # the Chromium fixture, shared with the chat browser test
SHOTS = ROOT / "tests" / "e2e" / "screenshots"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {"CHAT_AUTH": "none", "CHAT_DEMO_CHARS_PER_S": "100000", "CHAT_RATE_LIMIT_PER_MINUTE": "0"}
    with app_server(env) as s:
        yield s.url


def test_an_image_and_a_pdf_show_in_the_bubble_and_again_after_a_reload(
    server: str, browser: Browser, tmp_path: Path
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    picture, document = tmp_path / "sunset.png", tmp_path / "minutes.pdf"
    picture.write_bytes(image_bytes(900, 600))
    document.write_bytes(pdf_bytes(["Minutes of the meeting", "Decisions: ship it"]))

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server, wait_until="domcontentloaded")
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_visible(timeout=60_000)
    idle(page)
    page.get_by_test_id("stChatInput").locator('input[type="file"]').set_input_files([str(picture), str(document)])
    chat_input = page.get_by_test_id("stChatInput")
    expect(chat_input.get_by_text("sunset.png")).to_be_visible(timeout=30_000)
    expect(chat_input.get_by_text("minutes.pdf")).to_be_visible()
    box.fill("Here are the photo and the minutes")
    page.screenshot(path=str(SHOTS / "attach-01-picked.png"))
    box.press("Enter")

    def check_bubble(shot: str) -> None:
        bubble = page.get_by_test_id("stChatMessage").nth(0)
        expect(bubble).to_contain_text("Here are the photo and the minutes", timeout=30_000)
        thumbnail = bubble.get_by_test_id("stImage").locator("img")
        expect(thumbnail).to_have_count(1, timeout=30_000)
        # Served by this app's own media endpoint, from the stored thumbnail bytes.
        assert (thumbnail.get_attribute("src") or "").startswith(f"{server}/media/"), thumbnail.get_attribute("src")
        expect(bubble.get_by_test_id("stImageCaption")).to_have_text("sunset.png")
        expect(bubble.get_by_test_id("stDownloadButton").get_by_role("button", name="sunset.png")).to_be_visible()
        expect(bubble.get_by_test_id("stDownloadButton").get_by_role("button", name="minutes.pdf")).to_be_visible()
        expect(page.get_by_test_id("stChatMessage").nth(1)).to_contain_text("Images received: sunset.png")
        idle(page)
        bubble.scroll_into_view_if_needed()
        page.screenshot(path=str(SHOTS / shot))

    check_bubble("attach-02-sent.png")
    assert "c=" in page.url
    page.reload(wait_until="domcontentloaded")
    check_bubble("attach-03-reloaded.png")

    with page.expect_download() as download:
        chips = page.get_by_test_id("stChatMessage").nth(0).get_by_test_id("stDownloadButton")
        chips.get_by_role("button", name="minutes.pdf").click()
    saved = tmp_path / "downloaded.pdf"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "minutes.pdf"
    assert saved.read_bytes() == document.read_bytes()
    page.close()


def test_a_refused_file_keeps_the_text_and_the_other_files_for_the_retry(
    server: str, browser: Browser, tmp_path: Path
) -> None:
    fake, notes = tmp_path / "holiday.png", tmp_path / "notes.txt"
    fake.write_bytes(pdf_bytes(["not a picture"]))
    notes.write_bytes(b"Bring sunscreen.")
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server, wait_until="domcontentloaded")
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_visible(timeout=60_000)
    idle(page)
    chat_input = page.get_by_test_id("stChatInput")
    chat_input.locator('input[type="file"]').set_input_files([str(fake), str(notes)])
    expect(chat_input.get_by_text("notes.txt")).to_be_visible(timeout=30_000)
    box.fill("Packing list")
    box.press("Enter")
    refusal = page.get_by_test_id("stAlert").get_by_text("“holiday.png” is not an image: its content is a PDF.")
    expect(refusal).to_be_visible(timeout=30_000)
    idle(page)
    expect(box).to_have_value("Packing list")
    held = page.locator(".st-key-pending-files")
    expect(held.get_by_role("button", name="notes.txt")).to_be_visible()
    expect(held.get_by_role("button", name="holiday.png")).to_have_count(0)
    expect(page.get_by_test_id("stChatMessage")).to_have_count(0)
    page.screenshot(path=str(SHOTS / "attach-04-refused.png"))

    box.press("Enter")  # send again: the held file goes with the text
    bubble = page.get_by_test_id("stChatMessage").nth(0)
    expect(bubble).to_contain_text("Packing list", timeout=30_000)
    expect(bubble.get_by_test_id("stDownloadButton").get_by_role("button", name="notes.txt")).to_be_visible()
    expect(held).to_have_count(0)
    page.close()
