"""Test helpers for identity tests: real RSA keys, hand-built JWTs and a real JWKS HTTP server in a thread."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from streamlit.runtime.pages_manager import PagesManager

ISSUER = "https://clerk.example.test"
APP_ORIGIN = "https://app.example.test"


@dataclass
class SigningKey:
    kid: str
    private: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, kid: str) -> SigningKey:
        return cls(kid=kid, private=rsa.generate_private_key(public_exponent=65537, key_size=2048))

    @property
    def public_pem(self) -> str:
        return (
            self.private.public_key()
            .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
            .decode()
        )

    def jwk(self) -> dict[str, Any]:
        data = json.loads(RSAAlgorithm.to_jwk(self.private.public_key()))
        data.update(kid=self.kid, use="sig", alg="RS256")
        return data

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None, kid: str | None = None) -> str:
        all_headers = {"kid": self.kid if kid is None else kid, **(headers or {})}
        return jwt.encode(claims, self.private, algorithm="RS256", headers=all_headers)


def claims(**overrides: Any) -> dict[str, Any]:
    """A valid Clerk-like session token payload; `None` values remove a claim."""
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "user_2abc",
        "azp": APP_ORIGIN,
        "iat": now - 10,
        "nbf": now - 10,
        "exp": now + 60,
        "sid": "sess_1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return ".".join(
        [b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode()), b64url(signature)]
    )


def hs256_with_secret(header: dict[str, Any], payload: dict[str, Any], secret: bytes) -> str:
    signing_input = ".".join([b64url(json.dumps(header).encode()), b64url(json.dumps(payload).encode())])
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


@dataclass
class JwksServer:
    """Serves `keys` as a JWKS on 127.0.0.1; counts GETs; `status` other than 200 simulates an outage."""

    keys: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    body: bytes | None = None
    fetches: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        with self._lock:
            self.fetches += 1
            status, body = self.status, self.body
            if body is None:
                body = json.dumps({"keys": self.keys}).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


@contextmanager
def serve_jwks(server_state: JwksServer) -> Iterator[JwksServer]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            server_state.handle(self)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server API
            return

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    server_state.url = f"http://127.0.0.1:{httpd.server_address[1]}/.well-known/jwks.json"
    try:
        yield server_state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


@pytest.fixture(autouse=True)
def app_py_runs_every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make AppTest run app.py (and so the gate) on every run, as a running server does.

    With a `pages/` folder next to app.py, Streamlit starts a process in multipage "v1" mode and only
    leaves it once app.py has called st.navigation. AppTest resets that process-wide flag before every
    run, so its second and later runs execute the current page file directly, skipping app.py; a
    server only does that until app.py has run once in the process (tests/test_auth_e2e.py covers it).
    """
    original = PagesManager.__init__

    def init(self: PagesManager, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        PagesManager.uses_pages_directory = False

    monkeypatch.setattr(PagesManager, "__init__", init)
