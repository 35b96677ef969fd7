"""Sentry error tracking against a local HTTP server posing as Sentry's ingest: the real sentry-sdk posts its
envelopes there. The app is imported as `streamlit run` imports it (so SENTRY_DSN is read by its start-up
path) in a child process, since sentry-sdk installs process-wide hooks; that process then fails the three
ways the app reports (a page script error through the hook app.py gives st.App, an HTTP route, an error log
line), each fed message text, a provider key, a bearer token and a cookie. Every event must arrive, and
none may contain any of them."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.error_tracking import SCRUBBED, scrub_breadcrumb, scrub_event, scrub_text

ROOT = Path(__file__).resolve().parents[1]
TYPED = "my very private question about zebras"
API_KEY = "sk-live-provider-key-0123456789"
BEARER = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyX3gifQ.c2lnbmF0dXJl"
COOKIE = "chat_session=cookie-value-abcdef"
SECRETS = (TYPED, "zebras", API_KEY, BEARER, "cookie-value-abcdef")

CHILD = """
import logging, sys
sys.path.insert(0, sys.argv[1])
TYPED, API_KEY, BEARER, COOKIE = sys.argv[2:6]

import app  # runs configure_logging(): SENTRY_DSN from the environment starts error tracking
import sentry_sdk
from services.logs import new_request_id
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route
from starlette.testclient import TestClient
from api.observability import Observe

assert sentry_sdk.get_client().is_active()

# 1. A page script error, through the handler app.py gives st.App (Streamlit calls it the same way).
new_request_id("req-page-1")
logging.getLogger("services.chat").info("user typed %s with key %s", TYPED, API_KEY)  # a breadcrumb
try:
    raise RuntimeError(f"could not answer {TYPED!r} with {API_KEY} / Bearer {BEARER}")
except RuntimeError as exc:
    assert app.app._on_script_error(exc) is None  # Streamlit still shows its own (detail-free) error box

# 2. An HTTP route that fails, with a token, a cookie and the text in the request.
def failing(request):
    raise ValueError(f"bad input {TYPED}")

routes = [Route("/api/things/{item}", failing, methods=["POST"])]
web = Starlette(routes=routes, middleware=[Middleware(Observe, routes=routes)])
with TestClient(web, raise_server_exceptions=False) as client:
    r = client.post(f"/api/things/{BEARER}?q={TYPED}", json={"text": TYPED},
                    headers={"Authorization": f"Bearer {BEARER}", "Cookie": COOKIE, "X-Request-ID": "req-http-1"})
    assert r.status_code == 500

# 3. An error log line whose arguments hold the text and the key.
new_request_id("req-log-1")
logging.getLogger("services.chat").error("provider failed for %s using %s", TYPED, API_KEY)

sentry_sdk.flush(10)
print("sent")
"""


class Ingest(ThreadingHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), IngestHandler)
        self.bodies: list[bytes] = []
        self.paths: list[str] = []


class IngestHandler(BaseHTTPRequestHandler):
    server: Ingest

    def do_POST(self) -> None:  # noqa: N802 - http.server naming
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        encoding = self.headers.get("Content-Encoding", "")
        if encoding == "gzip":
            body = gzip.decompress(body)
        elif encoding == "deflate":
            body = zlib.decompress(body)
        elif encoding:
            raise AssertionError(f"unexpected encoding {encoding}")
        self.server.bodies.append(body)
        self.server.paths.append(self.path)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass


@pytest.fixture
def ingest() -> Iterator[Ingest]:
    server = Ingest()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def events(bodies: list[bytes]) -> list[dict[str, Any]]:
    """The event items of Sentry envelopes (a header line, then item-header / payload line pairs)."""
    found: list[dict[str, Any]] = []
    for body in bodies:
        lines = body.split(b"\n")
        i = 1
        while i + 1 < len(lines):
            header = json.loads(lines[i])
            if header.get("type") == "event":
                found.append(json.loads(lines[i + 1]))
            i += 2
    return found


def test_errors_reach_sentry_scrubbed_of_text_tokens_and_cookies(ingest: Ingest, tmp_path: Path) -> None:
    dsn = f"http://publickey@127.0.0.1:{ingest.server_address[1]}/1"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "CHAT_", "SENTRY_", "OPENAI_"))}
    env.update(SENTRY_DSN=dsn, OPENAI_API_KEY=API_KEY, CHAT_AUTH="none", CHAT_DATA_DIR=str(tmp_path / "data"))
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(ROOT), TYPED, API_KEY, BEARER, COOKIE],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "sent", done.stderr[-3000:]
    assert ingest.paths and all(p.startswith("/api/1/envelope/") for p in ingest.paths)

    got = events(ingest.bodies)
    by_id = {e["tags"]["request_id"]: e for e in got}
    assert set(by_id) == {"req-page-1", "req-http-1", "req-log-1"}, [e.get("tags") for e in got]
    page, http, logged = by_id["req-page-1"], by_id["req-http-1"], by_id["req-log-1"]
    # What is useful survives: types, stack frames, the route template, the log template.
    assert page["exception"]["values"][-1]["type"] == "RuntimeError"
    assert page["exception"]["values"][-1]["stacktrace"]["frames"]
    assert http["exception"]["values"][-1]["type"] == "ValueError" and http["tags"]["route"] == "/api/things/{item}"
    assert logged["logentry"] == {"message": "provider failed for %s using %s"}
    assert page["exception"]["values"][-1]["value"] == SCRUBBED
    # The breadcrumb from the info line kept its template only.
    crumbs = [c.get("message") for c in page.get("breadcrumbs", {}).get("values", [])]
    assert "user typed %s with key %s" in crumbs

    raw = b"\n".join(ingest.bodies).decode()
    for secret in SECRETS:
        assert secret not in raw, f"{secret!r} reached Sentry"


def test_scrubbing_removes_request_data_variables_and_users() -> None:
    event: dict[str, Any] = {
        "message": f"Bearer {BEARER} and {API_KEY}",
        "request": {
            "method": "POST", "url": f"http://x/api/chat?token={BEARER}", "data": {"text": TYPED},
            "cookies": COOKIE, "query_string": f"token={BEARER}",
            "headers": {"Authorization": f"Bearer {BEARER}", "Cookie": COOKIE, "User-Agent": "curl/8"},
        },
        "exception": {"values": [{"type": "E", "value": TYPED,
                                  "stacktrace": {"frames": [{"function": "f", "vars": {"text": TYPED}}]}}]},
        "user": {"id": "user_1"}, "extra": {"text": TYPED},
        "breadcrumbs": {"values": [{"message": "ok", "data": {"text": TYPED}}]},
    }  # fmt: skip
    out = scrub_event(event)
    assert out["request"] == {"method": "POST", "url": "http://x/api/chat", "headers": {"User-Agent": "curl/8"}}
    assert "user" not in out and "extra" not in out
    assert out["breadcrumbs"]["values"] == [{"message": "ok"}]
    for secret in SECRETS:
        assert secret not in json.dumps(out)


def test_text_scrubber_removes_tokens_and_keys() -> None:
    for token in (f"Bearer {BEARER}", BEARER, API_KEY, "postgresql://app:pw@db/chat", "x" * 40):
        assert scrub_text(f"before {token} after") == f"before {SCRUBBED} after"
    assert scrub_text("the reply could not be saved") == "the reply could not be saved"


def test_log_breadcrumbs_keep_their_template() -> None:
    import logging

    record = logging.LogRecord("services.chat", logging.INFO, "f", 1, "typed %s", (TYPED,), None)
    crumb = scrub_breadcrumb({"message": f"typed {TYPED}", "category": "services.chat"}, {"log_record": record})
    assert crumb == {"message": "typed %s", "category": "services.chat"}
