"""The app skeleton in a real `streamlit run app.py`: the API route and the pages share ONE services object
and ONE database start, and the page code never runs outside a script run (the server also imports app.py
as a module to find its `st.App`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.e2e.server import ROOT, AppServer, app_server

pytestmark = pytest.mark.e2e

CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def server() -> Iterator[AppServer]:
    with app_server({"CHAT_AUTH": "none", "CHAT_RATE_LIMIT_PER_MINUTE": "0"}) as s:
        yield s


VIOLATION_RECORDER = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e =>
    window.__cspViolations.push(e.violatedDirective + ' ' + e.blockedURI));
"""


def get_json(url: str) -> tuple[int, dict[str, object]]:
    with urllib.request.urlopen(url, timeout=60) as response:
        return response.status, json.loads(response.read())


def test_route_and_pages_share_one_services_object_and_one_database_start(server: AppServer) -> None:
    # The route first: it builds the services in a worker thread of the server.
    assert get_json(f"{server.url}/api/health") == (200, {"status": "ok", "auth": "none"})
    assert Path(CHROMIUM).exists(), "install Debian's chromium (apt-get install chromium); see README"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox"], headless=True)
        try:
            page = browser.new_page()
            page.add_init_script(VIOLATION_RECORDER)
            page.goto(server.url)
            # A script run happened: the chat page is drawn with its input.
            expect(page.get_by_test_id("stChatInput")).to_be_visible(timeout=60_000)
            page.get_by_test_id("stChatInputTextArea").fill("A **reply** with a table, please")
            page.keyboard.press("Enter")
            expect(page.get_by_test_id("stChatMessage")).to_have_count(2, timeout=60_000)
            violations = page.evaluate("window.__cspViolations")
            page.goto(f"{server.url}/history")
            expect(page.get_by_role("heading", name="History")).to_be_visible(timeout=60_000)
            expect(page.get_by_test_id("stDataFrame")).to_be_visible(timeout=60_000)
            page.get_by_text("Usage", exact=True).click()
            expect(page.get_by_test_id("stVegaLiteChart").first).to_be_visible(timeout=60_000)
            violations += page.evaluate("window.__cspViolations")
        finally:
            browser.close()
    assert get_json(f"{server.url}/api/health")[0] == 200

    # Streamlit's own frontend, a streamed reply, the table and the charts all work under the policy.
    assert violations == []

    log = server.log()
    assert log.count("services built") == 1, log
    assert log.count("embedded PostgreSQL ready") == 1, log


IMPORT_CHECK = """
import sys
sys.path.insert(0, sys.argv[1])
import streamlit as st
import app
from services import runtime
assert isinstance(app.app, st.App), type(app.app)
# Importing app.py (as `streamlit run` does to find `app`) must not run page code: no services, no database.
assert not runtime.is_started()
print("ok")
"""


def test_importing_app_py_runs_no_page_code(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CHAT_"))}
    env.update(CHAT_AUTH="none", CHAT_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_CHECK, str(ROOT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
    assert not (tmp_path / "data").exists()  # nothing started the embedded database


@pytest.mark.parametrize("path", ["/", "/history", "/api/health", "/_stcore/health"])
def test_every_response_carries_the_security_headers(server: AppServer, path: str) -> None:
    with urllib.request.urlopen(f"{server.url}{path}", timeout=60) as response:
        csp = response.headers["Content-Security-Policy"]
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert response.headers["Referrer-Policy"] == "same-origin"
    directives = dict(part.strip().split(" ", 1) for part in csp.split(";"))
    assert directives["img-src"] == "'self' data: blob:"
    assert directives["connect-src"] == "'self'" and directives["object-src"] == "'none'"
    assert "'unsafe-eval'" not in directives["script-src"] and "'unsafe-inline'" not in directives["script-src"]


def test_an_unknown_api_path_is_not_an_api_answer(server: AppServer) -> None:
    # Streamlit answers unknown paths with its index.html (status 200): the route table must not hide that.
    with urllib.request.urlopen(f"{server.url}/api/nope", timeout=30) as response:
        body = response.read().decode()
    assert "<html" in body.lower() and '"status"' not in body
