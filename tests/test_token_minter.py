"""The app's own signing key and the tokens it mints for Supabase (issue 16): which key, which claims, how
long they are reused, and that /.well-known/jwks.json publishes the key whenever the Supabase backend is on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from api.wellknown import jwks
from services.accounts import Account
from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.config import ConfigError, settings_from
from services.identity import build_identity, startup_problem
from services.token_minter import AppSigner, SigningKeyError, TokenMinter


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def pem(key: Any) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    return pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))


def decoded(token: str, signer: AppSigner, now: float) -> dict[str, Any]:
    key = jwt.PyJWK(signer.jwk()).key
    return jwt.decode(
        token, key, algorithms=["RS256"], audience="authenticated", options={"verify_exp": False, "verify_iat": False}
    )


def test_a_user_token_carries_the_app_claims_and_the_kid(rsa_pem: str) -> None:
    signer = AppSigner.from_pem(rsa_pem)
    clock = Clock(1_900_000_000.5)
    minter = TokenMinter(signer, clock=clock)
    alice = Principal("user_alice", claims={"iss": "https://clerk.example.test", "roles": ["admin"], "email": "a@x"})
    token = minter.for_user(alice)
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": signer.kid, "typ": "JWT"}
    claims = decoded(token, signer, clock.now)
    assert claims == {
        "iss": APP_ISSUER,
        "sub": "user_alice",
        "role": "authenticated",
        "aud": "authenticated",
        "iat": 1_900_000_000,
        "exp": 1_900_000_301,
        "chat_scope": "user",
        "roles": ["admin"],
    }
    signin = decoded(minter.for_signin(), signer, clock.now)
    assert signin["chat_scope"] == "signin" and "sub" not in signin and "roles" not in signin
    assert decoded(minter.for_sweeper(), signer, clock.now)["chat_scope"] == "sweeper"


def test_tokens_are_reused_per_principal_and_roles_until_shortly_before_expiry(rsa_pem: str) -> None:
    clock = Clock(1_900_000_000.0)
    minter = TokenMinter(AppSigner.from_pem(rsa_pem), clock=clock)
    alice, bob = Principal("user_alice"), Principal("user_bob")
    first = minter.for_user(alice)
    assert minter.for_user(Principal("user_alice")) == first  # the same claims: the same token
    assert minter.for_user(bob) != first
    assert minter.for_user(Principal("user_alice", claims={"roles": ["reviewer"]})) != first  # other roles
    assert minter.minted == 3
    clock.now += 300 - minter.refresh_before_s - 0.5
    assert minter.for_user(alice) == first
    clock.now += 1
    assert minter.for_user(alice) != first and minter.minted == 4
    fresh = minter.for_user(alice)
    minter.forget(fresh)
    clock.now += 1
    assert minter.for_user(alice) != fresh and minter.minted == 5


def test_an_expired_principal_gets_no_token(rsa_pem: str) -> None:
    from datetime import UTC, datetime

    from services.auth import AuthError

    minter = TokenMinter(AppSigner.from_pem(rsa_pem))
    stale = Principal("user_alice", expires_at=datetime(2020, 1, 1, tzinfo=UTC))
    with pytest.raises(AuthError) as caught:
        minter.for_user(stale)
    assert caught.value.reason == "expired" and minter.minted == 0


def test_the_cache_is_bounded(rsa_pem: str) -> None:
    minter = TokenMinter(AppSigner.from_pem(rsa_pem), max_cached=3)
    for i in range(5):
        minter.for_user(Principal(f"user_{i}"))
    assert len(minter._cache) == 3


def test_the_signing_key_setting_is_read_or_refused_with_a_plain_message(rsa_pem: str) -> None:
    flattened = rsa_pem.strip().replace("\n", "\\n")  # how some platforms store multi-line secrets
    assert AppSigner.from_pem(flattened).kid == AppSigner.from_pem(rsa_pem).kid
    with pytest.raises(SigningKeyError, match="CHAT_SIGNING_KEY is not a readable"):
        AppSigner.from_pem("not a key")
    with pytest.raises(SigningKeyError, match="must be an RSA private key"):
        AppSigner.from_pem(pem(ec.generate_private_key(ec.SECP256R1())))
    with pytest.raises(SigningKeyError, match="at least 2048 bits"):
        AppSigner.from_pem(pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))


# --- settings, identity and the JWKS route --------------------------------------------------------------


SUPABASE = {"SUPABASE_URL": "https://abc.supabase.co", "SUPABASE_ANON_KEY": "sb_publishable_x"}
CLERK = {"CHAT_AUTH": "clerk", "CLERK_ISSUER": "https://clerk.example.test"}


def test_the_supabase_settings_come_in_pairs_and_exclude_a_database_url() -> None:
    with pytest.raises(ConfigError, match="'SUPABASE_ANON_KEY' is missing"):
        settings_from({"SUPABASE_URL": "https://abc.supabase.co"})
    with pytest.raises(ConfigError, match="'SUPABASE_URL' is missing"):
        settings_from({"SUPABASE_ANON_KEY": "sb_publishable_x"})
    with pytest.raises(ConfigError, match="both set"):
        settings_from({**SUPABASE, "DATABASE_URL": "postgresql://u@h/db"})
    settings = settings_from(SUPABASE)
    assert settings.supabase_url == "https://abc.supabase.co" and settings.supabase_timeout_s == 10.0


def test_clerk_with_supabase_publishes_the_app_key_and_clerk_alone_publishes_none(tmp_path: Path, rsa_pem: str) -> None:
    alone = build_identity(settings_from({**CLERK, "CHAT_DATA_DIR": str(tmp_path / "a")}))
    assert alone.app_signer is None and jwks(alone) == {"keys": []}

    with_key = build_identity(settings_from({**CLERK, **SUPABASE, "CHAT_SIGNING_KEY": rsa_pem}))
    assert with_key.app_signer is not None
    assert jwks(with_key) == {"keys": [with_key.app_signer.jwk()]}
    assert with_key.app_signer.kid == AppSigner.from_pem(rsa_pem).kid
    assert with_key.signing_key_path is None

    # Without CHAT_SIGNING_KEY the key is made once in the data dir, and must stay private to serve others.
    data = tmp_path / "b"
    generated = build_identity(settings_from({**CLERK, **SUPABASE, "CHAT_DATA_DIR": str(data)}))
    assert generated.signing_key_path == data / "keys" / "local-signing-key.pem"
    assert [k["kid"] for k in jwks(generated)["keys"]] == [generated.app_signer.kid]  # type: ignore[union-attr]
    assert startup_problem(generated, "0.0.0.0") is None
    generated.signing_key_path.chmod(0o644)
    assert "readable by other users" in (startup_problem(generated, "0.0.0.0") or "")


def test_local_sign_in_with_a_configured_key_signs_with_it_and_publishes_it_once(tmp_path: Path, rsa_pem: str) -> None:
    identity = build_identity(
        settings_from({"CHAT_AUTH": "local", "CHAT_DATA_DIR": str(tmp_path), "CHAT_SIGNING_KEY": rsa_pem})
    )
    assert identity.issuer is not None and identity.app_signer is not None
    published = jwks(identity)["keys"]
    assert [k["kid"] for k in published] == [identity.app_signer.kid] == [identity.issuer.kid]
    account = Account(username="ann", name="Ann", email="", roles=(), id="acct_1")
    token = identity.issuer.issue(account)
    assert jwt.get_unverified_header(token)["kid"] == identity.app_signer.kid
    assert identity.issuer.verifier.verify(token).user_id == "acct_1"
    assert not (tmp_path / "keys" / "local-signing-key.pem").exists()  # the setting wins over a file
