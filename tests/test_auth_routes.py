"""The sign-in routes (api/auth.py) over HTTP with Starlette's test client and the real services: the Origin
check, the cookie's attributes, the redirect codes, and which X-Forwarded-For entries are believed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.testclient import TestClient

from api import ROUTES
from api.auth import client_address, safe_next
from services.accounts import AccountStore
from services.runtime import reset_shared_services, shared_services
from services.store.embedded import EmbeddedDatabase

PASSWORD = "correct horse battery"
BASE = "http://testserver"


@pytest.fixture
def client(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[TestClient]:
    monkeypatch.setenv("CHAT_AUTH", "local")
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    monkeypatch.setenv("CHAT_TRUSTED_PROXIES", "10.0.0.0/8")
    monkeypatch.setenv("CHAT_ALLOW_SIGNUP", "true")
    for name in ("CHAT_USERS_FILE", "CHAT_COOKIE_KEY", "CHAT_SETUP_CODE", "CHAT_TEST_CLOCK_FILE"):
        monkeypatch.delenv(name, raising=False)
    reset_shared_services()
    AccountStore(tmp_path / "users.yaml").create("ann", PASSWORD)
    with TestClient(Starlette(routes=ROUTES), base_url=BASE, follow_redirects=False) as c:
        yield c
    reset_shared_services()


def post(client: TestClient, path: str, data: dict[str, str], **headers: str):  # type: ignore[no-untyped-def]
    return client.post(path, data=data, headers={"Origin": BASE, **headers})


def test_sign_in_sets_an_http_only_lax_cookie_and_redirects_home(client: TestClient) -> None:
    response = post(client, "/api/auth/sign-in", {"username": "ann", "password": PASSWORD})
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("chat_session=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie and "Max-Age=1209600" in cookie and "Path=/" in cookie
    secret = cookie.split(";", 1)[0].split("=", 1)[1]
    sessions = shared_services().sessions
    assert sessions is not None and sessions.resume(secret) is not None

    out = client.post("/api/auth/sign-out", headers={"Origin": BASE, "Cookie": f"chat_session={secret}"})
    assert out.status_code == 303 and out.headers["location"] == "/?signin=signed_out"
    assert 'chat_session=""' in out.headers["set-cookie"] and "Max-Age=0" in out.headers["set-cookie"]
    assert sessions.resume(secret) is None


def test_the_cookie_is_secure_behind_a_trusted_https_proxy_only(client: TestClient) -> None:
    # The test client's peer is "testclient", not an address: X-Forwarded-Proto from it is not believed.
    forged = {"X-Forwarded-Proto": "https"}
    response = post(client, "/api/auth/sign-in", {"username": "ann", "password": PASSWORD}, **forged)
    assert "Secure" not in response.headers["set-cookie"]
    https = TestClient(Starlette(routes=ROUTES), base_url="https://testserver", follow_redirects=False)
    response = https.post(
        "/api/auth/sign-in",
        data={"username": "ann", "password": PASSWORD},
        headers={"Origin": "https://testserver"},
    )
    assert response.status_code == 303 and "Secure" in response.headers["set-cookie"]


@pytest.mark.parametrize("origin", [None, "null", "https://evil.example", "http://testserver.evil.example"])
def test_another_origin_is_refused_without_touching_the_account(client: TestClient, origin: str | None) -> None:
    headers = {} if origin is None else {"Origin": origin}
    response = client.post("/api/auth/sign-in", data={"username": "ann", "password": PASSWORD}, headers=headers)
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_failures_come_back_as_codes_never_as_text_from_the_request(client: TestClient) -> None:
    wrong = post(client, "/api/auth/sign-in", {"username": "Ann<script>", "password": "nope nope nope"})
    assert wrong.status_code == 303
    assert wrong.headers["location"].startswith("/?signin=invalid&u=ann%3Cscript%3E")
    weak = post(
        client, "/api/auth/sign-up",
        {"username": "bob", "display_name": "", "password": "password1234", "repeat": "password1234"},
    )  # fmt: skip
    location = weak.headers["location"]
    assert location.startswith("/?signup=account") and "sig=" in location and "too+easy" in location


def scope_request(peer: str, forwarded: str | None) -> Request:
    headers = [] if forwarded is None else [(b"x-forwarded-for", forwarded.encode())]
    return Request({"type": "http", "client": (peer, 1234), "headers": headers, "method": "GET", "path": "/"})


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("203.0.113.5", "198.51.100.1", (), "203.0.113.5"),  # no trusted proxies: the header is ignored
        ("203.0.113.5", "198.51.100.1", ("10.0.0.0/8",), "203.0.113.5"),  # the peer is not a proxy
        ("10.1.2.3", "198.51.100.1", ("10.0.0.0/8",), "198.51.100.1"),
        ("10.1.2.3", "6.6.6.6, 198.51.100.1", ("10.0.0.0/8",), "198.51.100.1"),  # a client-written entry
        ("10.1.2.3", "198.51.100.1, 10.9.9.9", ("10.0.0.0/8",), "198.51.100.1"),  # two proxies
        ("10.1.2.3", None, ("10.0.0.0/8",), "10.1.2.3"),
    ],
)
def test_forwarded_for_is_believed_only_from_named_proxies(
    peer: str, forwarded: str | None, trusted: tuple[str, ...], expected: str
) -> None:
    assert client_address(scope_request(peer, forwarded), trusted) == expected


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("/history?limit=50&role=user", "/history?limit=50&role=user"),
        ("/", "/"),
        ("/account", "/account"),
        ("//evil.test/x", "/"),
        ("/\\evil.test", "/"),
        ("https://evil.test/", "/"),
        ("history", "/"),
        ("/a\r\nSet-Cookie: x=1", "/"),
        ("", "/"),
        (None, "/"),
        ("/" + "x" * 3000, "/"),
    ],
)
def test_the_page_to_go_back_to_is_only_ever_a_path_on_this_app(given: str | None, kept: str) -> None:
    assert safe_next(given) == kept
