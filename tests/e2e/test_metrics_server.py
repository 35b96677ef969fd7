"""GET /api/metrics on a real `streamlit run app.py`: after a chat turn in a real browser with the offline
model, the scrape (over HTTP, with the bearer token) shows the turn, the page and API requests by label,
and the database pool; no label names the user; the JSON log has the turn's line under a request id and
not the typed text. Without the token: 401; with metrics off: a JSON 404."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from email.message import Message

import pytest
from playwright.sync_api import expect, sync_playwright
from prometheus_client.parser import text_string_to_metric_families

from services.identity import LOCAL_USER
from tests.e2e.server import AppServer, app_server, wait_until

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"
TOKEN = "metrics-scrape-token-1"
TYPED = "Tell me about zebras in a table please"


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    env = {
        "CHAT_AUTH": "none", "CHAT_RATE_LIMIT_PER_MINUTE": "0", "CHAT_METRICS": "on", "CHAT_METRICS_TOKEN": TOKEN,
        "CHAT_LOG_FORMAT": "json", "CHAT_DEMO_CHARS_PER_S": "5000",
    }  # fmt: skip
    with app_server(env) as s:
        yield s


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, Message, str]:
    """Status, headers (looked up case-insensitively) and body."""
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read().decode()


def scrape(server: AppServer) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    status, _, body = get(f"{server.url}/api/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert status == 200, body
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body)
        for s in family.samples
    }


def chat_once(server: AppServer) -> None:
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.goto(server.url)
            expect(page.get_by_test_id("stChatInput")).to_be_visible(timeout=60_000)
            page.get_by_test_id("stChatInputTextArea").fill(TYPED)
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=60_000)
            # The reply has ended once the stop button is the send button again.
            expect(page.get_by_test_id("stChatInputSubmitButton")).to_be_visible(timeout=60_000)
        finally:
            browser.close()


def test_a_chat_turn_shows_in_the_scrape_without_user_labels(server: AppServer) -> None:
    assert get(f"{server.url}/api/health")[0] == 200
    before = scrape(server)
    assert ("chat_reply_duration_seconds_count", (("provider", "demo"), ("status", "complete"))) not in before

    chat_once(server)

    def done() -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
        after = scrape(server)
        key = ("chat_reply_duration_seconds_count", (("provider", "demo"), ("status", "complete")))
        return after if after.get(key) == 1 else None

    after = wait_until(done, 60, "the reply to be counted")
    assert after[("chat_reply_first_token_seconds_count", (("provider", "demo"),))] == 1
    assert after[("chat_active_streams", ())] == 0
    assert after[("chat_http_requests_total", (("method", "GET"), ("route", "/api/health"), ("status", "200")))] >= 1
    assert after[("chat_http_requests_total", (("method", "GET"), ("route", "/api/metrics"), ("status", "200")))] >= 1
    routes = {dict(labels)["route"] for name, labels in after if name == "chat_http_requests_total"}
    assert "page" in routes and "/static/*" in routes and "/_stcore/health" in routes
    assert after[("chat_db_pool_max_connections", (("pool", "chat"),))] == 10
    assert ("chat_db_pool_connections_in_use", (("pool", "chat"),)) in after

    label_values = {v for _, labels in after for _, v in labels}
    assert LOCAL_USER.user_id not in label_values
    _, _, body = get(f"{server.url}/api/metrics", {"Authorization": f"Bearer {TOKEN}"})
    assert LOCAL_USER.user_id not in body and "zebras" not in body

    lines = [json.loads(line) for line in server.log().splitlines() if line.startswith("{")]
    finished = [line for line in lines if line.get("event") == "reply finished"]
    assert len(finished) == 1 and finished[0]["status"] == "complete"
    assert len(str(finished[0]["request_id"])) == 16
    assert "zebras" not in server.log()


def test_the_scrape_needs_the_token(server: AppServer) -> None:
    status, headers, body = get(f"{server.url}/api/metrics")
    assert status == 401 and json.loads(body)["error"]["code"] == "unauthorized"
    assert str(headers["WWW-Authenticate"]).startswith("Bearer")
    assert get(f"{server.url}/api/metrics", {"Authorization": "Bearer wrong"})[0] == 401


def test_every_response_names_its_request_id(server: AppServer) -> None:
    _, headers, _ = get(f"{server.url}/api/health", {"X-Request-ID": "probe-42"})
    assert headers["X-Request-ID"] == "probe-42"


def test_metrics_off_answer_a_json_404() -> None:
    with app_server({"CHAT_AUTH": "none", "CHAT_METRICS": "off"}) as off:
        status, headers, body = get(f"{off.url}/api/metrics")
    assert status == 404 and headers["Content-Type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "not_found"
