"""CHAT_AUTH=clerk through the real app.py: tokens from Streamlit's OIDC login (st.user.tokens, seeded
with AppTest.user) checked against a real JWKS server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from services.auth import Principal
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase
from tests.auth_support import (  # noqa: F401 - app_py_runs_every_time is an autouse fixture
    APP_ORIGIN,
    ISSUER,
    JwksServer,
    SigningKey,
    app_py_runs_every_time,
    claims,
    serve_jwks,
)

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "oauth_client_123"


def id_token(key: SigningKey, **overrides: object) -> str:
    """An OIDC ID token as Clerk issues it to Streamlit's st.login: `aud` is the OAuth client id."""
    return key.sign(claims(**{"aud": CLIENT_ID, "azp": CLIENT_ID, **overrides}))


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("clerk-kid")


@pytest.fixture
def jwks(
    key: SigningKey, database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[JwksServer]:
    with serve_jwks(JwksServer(keys=[key.jwk()])) as server:
        monkeypatch.setenv("CHAT_AUTH", "clerk")
        monkeypatch.setenv("CLERK_ISSUER", ISSUER)
        monkeypatch.setenv("CLERK_JWKS_URL", server.url)
        monkeypatch.setenv("CLERK_AUTHORIZED_PARTIES", APP_ORIGIN)
        monkeypatch.setenv("CLERK_AUDIENCE", CLIENT_ID)
        monkeypatch.delenv("CLERK_JWT_KEY", raising=False)
        monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
        monkeypatch.setenv("DATABASE_URL", database.app_url)
        monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
        reset_shared_services()
        yield server
        reset_shared_services()


def session_with(token: str | None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    if token is not None:
        at.user = {"is_logged_in": True, "email": "ann@example.test", "tokens": {"id": token}}
    return at.run()


def principal_of(at: AppTest) -> Principal | None:
    return at.session_state[state.PRINCIPAL] if state.PRINCIPAL in at.session_state else None


def test_oidc_token_gives_principal(jwks: JwksServer, key: SigningKey) -> None:
    at = session_with(id_token(key, sub="user_clerk1", name="Ann", metadata={"roles": ["reviewer"]}))
    assert not at.exception, at.exception
    principal = principal_of(at)
    assert principal is not None and principal.user_id == "user_clerk1" and principal.is_reviewer
    assert "Ann" in [t.value for t in at.sidebar.text]
    at.run()
    assert principal_of(at) is not None
    assert jwks.fetches == 1


def test_no_token_shows_sign_in_page(jwks: JwksServer) -> None:
    at = session_with(None)
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert principal_of(at) is None
    assert jwks.fetches == 0


def test_jwks_down_is_a_clear_state_not_a_crash_or_a_pass(jwks: JwksServer, key: SigningKey) -> None:
    jwks.status = 503
    at = session_with(id_token(key))
    assert not at.exception, at.exception
    assert any("cannot verify sign-in right now" in w.value for w in at.warning)
    assert principal_of(at) is None
    jwks.status = 200
    at.run()
    assert principal_of(at) is not None


def test_expired_or_foreign_tokens_are_refused(jwks: JwksServer, key: SigningKey) -> None:
    now = int(time.time())
    at = session_with(id_token(key, iat=now - 600, nbf=now - 600, exp=now - 300))
    assert not at.exception, at.exception
    assert principal_of(at) is None
    assert any("expired" in i.value for i in at.info), [i.value for i in at.info]

    at = session_with(SigningKey.generate("clerk-kid").sign(claims(aud=CLIENT_ID)))
    assert principal_of(at) is None
    at = session_with(id_token(key, aud="another_client"))
    assert principal_of(at) is None
    at = session_with(key.sign(claims()))  # a session token (no aud) is not an ID token
    assert principal_of(at) is None


def test_id_token_without_clerk_audience_says_what_to_set(
    jwks: JwksServer, key: SigningKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CLERK_AUDIENCE")
    reset_shared_services()
    at = session_with(id_token(key))
    assert not at.exception, at.exception
    assert any("CLERK_AUDIENCE" in e.value for e in at.error)
    assert principal_of(at) is None
