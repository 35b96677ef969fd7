"""Clerk mode with CLERK_SECRET_KEY: session tokens renewed from Clerk's Backend API, against a local server
that speaks its two endpoints (the JWKS and `POST /v1/sessions/{sid}/tokens`) and checks the exact request."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from services.auth import AuthError, Principal, TokenVerifier
from services.clerk_sessions import ClerkSessionRenewer
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase
from tests.auth_support import (  # noqa: F401 - app_py_runs_every_time is an autouse fixture
    APP_ORIGIN,
    ISSUER,
    SigningKey,
    app_py_runs_every_time,
    claims,
)

ROOT = Path(__file__).resolve().parents[1]
SECRET = "sk_test_local_secret"


@dataclass
class FakeClerk:
    """Clerk's JWKS and session-token endpoints. `ended` sessions are refused with 404, as Clerk does for
    a revoked or signed-out session; `status` other than 200 simulates an outage."""

    key: SigningKey
    ended: set[str] = field(default_factory=set)
    status: int = 200
    requests: list[tuple[str, str | None]] = field(default_factory=list)
    url: str = ""

    def token_for(self, sid: str, **overrides: Any) -> str:
        now = int(time.time())
        # Tokens minted by the Backend API carry no azp (no browser asked for them).
        return self.key.sign(claims(**{"sid": sid, "azp": None, "iat": now, "nbf": now, "exp": now + 60, **overrides}))

    def handler(self) -> type[BaseHTTPRequestHandler]:
        clerk = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:  # noqa: N802 - http.server API
                self._send(200, {"keys": [clerk.key.jwk()]})

            def do_POST(self) -> None:  # noqa: N802 - http.server API
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                clerk.requests.append((self.path, self.headers.get("Authorization")))
                parts = self.path.strip("/").split("/")
                if parts[:2] != ["v1", "sessions"] or len(parts) != 4 or parts[3] != "tokens":
                    self._send(404, {"errors": [{"code": "resource_not_found"}]})
                elif self.headers.get("Authorization") != f"Bearer {SECRET}":
                    self._send(401, {"errors": [{"code": "authentication_invalid"}]})
                elif clerk.status != 200:
                    self._send(clerk.status, {"errors": [{"code": "internal"}]})
                elif parts[2] in clerk.ended:
                    self._send(404, {"errors": [{"code": "resource_not_found"}]})
                else:
                    self._send(200, {"object": "token", "jwt": clerk.token_for(parts[2])})

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
                return

        return Handler


@pytest.fixture
def clerk() -> Iterator[FakeClerk]:
    fake = FakeClerk(SigningKey.generate("clerk-kid"))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), fake.handler())
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    fake.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield fake
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def renewer(clerk: FakeClerk, secret: str = SECRET) -> ClerkSessionRenewer:
    verifier = TokenVerifier(issuer=ISSUER, jwks_url=f"{clerk.url}/.well-known/jwks.json")
    return ClerkSessionRenewer(secret_key=secret, api_url=f"{clerk.url}/v1", verifier=verifier, timeout_s=5)


def test_a_live_session_gets_a_fresh_verified_token(clerk: FakeClerk) -> None:
    renewed = renewer(clerk).renew("sess_1")
    assert renewed is not None
    principal, token = renewed
    assert principal.user_id == "user_2abc" and principal.claims["sid"] == "sess_1"
    assert clerk.requests == [("/v1/sessions/sess_1/tokens", f"Bearer {SECRET}")]


def test_an_ended_session_a_wrong_key_or_a_strange_id_gives_none(clerk: FakeClerk) -> None:
    clerk.ended.add("sess_1")
    assert renewer(clerk).renew("sess_1") is None
    assert renewer(clerk, secret="sk_wrong").renew("sess_2") is None
    assert renewer(clerk).renew("../users/user_2abc") is None
    assert len(clerk.requests) == 2  # the strange id never left the app


def test_clerk_down_is_a_clear_state_not_a_sign_out(clerk: FakeClerk) -> None:
    clerk.status = 503
    with pytest.raises(AuthError) as caught:
        renewer(clerk).renew("sess_1")
    assert caught.value.reason == "renew_unavailable"


# --- through app.py ---------------------------------------------------------------------------------


@pytest.fixture
def clerk_app(
    clerk: FakeClerk, database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[FakeClerk]:
    monkeypatch.setenv("CHAT_AUTH", "clerk")
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_JWKS_URL", f"{clerk.url}/.well-known/jwks.json")
    monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", APP_ORIGIN)
    monkeypatch.setenv("CLERK_SECRET_KEY", SECRET)
    monkeypatch.setenv("CLERK_API_URL", f"{clerk.url}/v1")
    for name in ("CLERK_JWT_KEY", "CLERK_AUDIENCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    reset_shared_services()
    yield clerk
    reset_shared_services()


def tab_with_expired_token(clerk: FakeClerk) -> AppTest:
    """A tab whose Clerk session token (from the page's cookie) has expired, as it has a minute later."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    at.session_state[state.TOKEN] = clerk.token_for("sess_1", iat=int(time.time()) - 600, exp=int(time.time()) - 60)
    at.session_state[state.CLERK_SESSION_ID] = "sess_1"
    return at


def principal_of(at: AppTest) -> Principal | None:
    return at.session_state[state.PRINCIPAL] if state.PRINCIPAL in at.session_state else None


def test_an_expired_clerk_token_is_renewed_silently_while_the_session_lives(clerk_app: FakeClerk) -> None:
    at = tab_with_expired_token(clerk_app).run()
    assert not at.exception, at.exception
    principal = principal_of(at)
    assert principal is not None and principal.user_id == "user_2abc"
    assert not any(t.value == "Sign in" for t in at.title)
    assert len(clerk_app.requests) == 1
    at.run()  # the renewed token is fresh: no second call
    assert len(clerk_app.requests) == 1


def test_a_signed_out_clerk_session_ends_the_tab_on_its_next_action(clerk_app: FakeClerk) -> None:
    clerk_app.ended.add("sess_1")
    at = tab_with_expired_token(clerk_app).run()
    assert not at.exception, at.exception
    assert principal_of(at) is None
    assert any(t.value == "Sign in" for t in at.title)
    assert state.CLERK_SESSION_ID not in at.session_state


def test_clerk_unreachable_keeps_the_work_and_says_so(clerk_app: FakeClerk) -> None:
    clerk_app.status = 503
    at = tab_with_expired_token(clerk_app)
    at.session_state[state.DRAFT] = "unsent words"
    at.run()
    assert not at.exception, at.exception
    assert principal_of(at) is None
    assert any("renew your sign-in with Clerk" in w.value for w in at.warning)
    assert at.session_state[state.DRAFT] == "unsent words"
    assert at.session_state[state.CLERK_SESSION_ID] == "sess_1"  # tried again on the next action
