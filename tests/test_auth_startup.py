"""Start-up rules as pure functions: `none` only on localhost, real cookie key beyond localhost, and the
identity built for each CHAT_AUTH mode."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from services.config import ConfigError, settings_from
from services.identity import (
    LOCAL_USER,
    build_identity,
    cookie_key_problem,
    is_local_address,
    none_mode_problem,
    startup_problem,
)
from tests.auth_support import SigningKey

REAL_KEY = "x3Jk9v-Qm2Lr8Tz5Wb7Yc1Nd4Fg6Hh0Pq"  # 34 random-looking characters


@pytest.mark.parametrize("address", ["localhost", "127.0.0.1", "::1", "[::1]", "LOCALHOST"])
def test_local_addresses(address: str | None) -> None:
    assert is_local_address(address)


@pytest.mark.parametrize(
    "address", [None, "", "  ", "0.0.0.0", "::", "192.168.1.20", "example.com", "localhost.evil.test"]
)
def test_non_local_addresses(address: str | None) -> None:
    # Unset means Streamlit listens on every interface, so it must not count as local.
    assert not is_local_address(address)


def test_none_mode_only_on_localhost() -> None:
    assert none_mode_problem("none", "localhost") is None
    assert none_mode_problem("none", "127.0.0.1") is None
    assert none_mode_problem("none", None) is not None  # unset: Streamlit listens on every interface
    problem = none_mode_problem("none", "0.0.0.0")
    assert problem is not None and "CHAT_AUTH=none" in problem and "0.0.0.0" in problem
    assert none_mode_problem("local", "0.0.0.0") is None


@pytest.mark.parametrize("key", [None, ""])
def test_missing_cookie_key_refused_beyond_localhost(key: str | None) -> None:
    problem = cookie_key_problem(key, from_settings=key is not None, address="0.0.0.0")
    assert problem is not None and "CHAT_COOKIE_KEY" in problem and "missing" in problem


def test_generated_cookie_key_is_fine_locally_but_not_beyond() -> None:
    generated = "generated-in-the-data-dir-" + "z" * 40
    assert cookie_key_problem(generated, from_settings=False, address="localhost") is None
    problem = cookie_key_problem(generated, from_settings=False, address="0.0.0.0")
    assert problem is not None and "CHAT_COOKIE_KEY" in problem


@pytest.mark.parametrize("key", ["some_key", "random_signature_key", "changeme", "Replace-Me", "short-but-random"])
def test_default_or_short_cookie_key_refused_beyond_localhost(key: str) -> None:
    problem = cookie_key_problem(key, from_settings=True, address="10.0.0.5")
    assert problem is not None and "CHAT_COOKIE_KEY" in problem
    assert key not in problem  # the message names the setting, never its value


def test_real_cookie_key_accepted_everywhere() -> None:
    assert cookie_key_problem(REAL_KEY, from_settings=True, address="0.0.0.0") is None
    assert cookie_key_problem(REAL_KEY, from_settings=True, address="localhost") is None


def test_local_identity_builds_keys_and_verifier(tmp_path: Path) -> None:
    settings = settings_from({"CHAT_DATA_DIR": str(tmp_path), "CHAT_TOKEN_TTL_S": "120"})
    identity = build_identity(settings)
    assert identity.mode == "local" and identity.accounts is not None and identity.issuer is not None
    assert identity.accounts.path == tmp_path / "users.yaml"
    assert identity.issuer.ttl_s == 120
    assert identity.verifier is identity.issuer.verifier
    assert not identity.cookie_key_from_settings and identity.cookie_key
    assert startup_problem(identity, "localhost") is None
    unset = startup_problem(identity, None)  # Streamlit then listens on every interface
    assert unset is not None and "CHAT_COOKIE_KEY" in unset and "server.address is not set" in unset
    # The same data dir gives the same keys (tokens survive a restart), and a generated cookie key is
    # not enough once the server listens beyond localhost.
    again = build_identity(settings)
    assert again.issuer is not None and again.issuer.kid == identity.issuer.kid
    assert again.cookie_key == identity.cookie_key
    problem = startup_problem(identity, "0.0.0.0")
    assert problem is not None and "CHAT_COOKIE_KEY" in problem


def test_local_identity_with_real_cookie_key_serves_beyond_localhost(tmp_path: Path) -> None:
    settings = settings_from({"CHAT_DATA_DIR": str(tmp_path), "CHAT_COOKIE_KEY": REAL_KEY})
    identity = build_identity(settings)
    assert identity.cookie_key == REAL_KEY and identity.cookie_key_from_settings
    assert startup_problem(identity, "0.0.0.0") is None


def test_loose_signing_key_permissions_refused_beyond_localhost(tmp_path: Path) -> None:
    identity = build_identity(settings_from({"CHAT_DATA_DIR": str(tmp_path), "CHAT_COOKIE_KEY": REAL_KEY}))
    assert identity.signing_key_path is not None
    os.chmod(identity.signing_key_path, 0o644)
    problem = startup_problem(identity, "0.0.0.0")
    assert problem is not None and "chmod 600" in problem
    assert startup_problem(identity, "localhost") is None


def test_a_movable_test_clock_is_refused_beyond_localhost(tmp_path: Path) -> None:
    settings = settings_from(
        {"CHAT_DATA_DIR": str(tmp_path), "CHAT_COOKIE_KEY": REAL_KEY, "CHAT_TEST_CLOCK_FILE": str(tmp_path / "c")}
    )
    identity = build_identity(settings)
    problem = startup_problem(identity, "0.0.0.0")
    assert problem is not None and "CHAT_TEST_CLOCK_FILE" in problem
    assert startup_problem(identity, "127.0.0.1") is None


def test_none_identity_and_refusal(tmp_path: Path) -> None:
    identity = build_identity(settings_from({"CHAT_AUTH": "none", "CHAT_DATA_DIR": str(tmp_path)}))
    assert identity.mode == "none" and identity.verifier is None
    assert startup_problem(identity, "localhost") is None
    assert startup_problem(identity, None) is not None
    assert startup_problem(identity, "0.0.0.0") is not None
    assert LOCAL_USER.is_reviewer and LOCAL_USER.user_id == "local-user"
    assert not (tmp_path / "keys").exists()


def test_clerk_identity_pem_and_jwks(tmp_path: Path) -> None:
    key = SigningKey.generate("k")
    pem_settings = settings_from(
        {
            "CHAT_AUTH": "clerk",
            "CLERK_ISSUER": "https://clerk.example.test",
            "CLERK_JWT_KEY": key.public_pem.replace("\n", "\\n"),
            "CLERK_AUTHORIZED_PARTIES": "https://app.example.test",
        }
    )
    identity = build_identity(pem_settings)
    assert identity.mode == "clerk" and identity.verifier is not None
    assert identity.verifier.authorized_parties == ("https://app.example.test",)
    now = int(time.time())
    claims = {"iss": "https://clerk.example.test", "sub": "user_1", "iat": now, "exp": now + 60}
    token = key.sign({**claims, "azp": "https://app.example.test"})
    assert identity.verifier.verify(token).user_id == "user_1"
    assert startup_problem(identity, "0.0.0.0") is None  # no cookie key involved in clerk mode

    jwks_settings = settings_from({"CHAT_AUTH": "clerk", "CLERK_ISSUER": "https://clerk.example.test"})
    assert jwks_settings.clerk_jwks_url == "https://clerk.example.test/.well-known/jwks.json"
    assert build_identity(jwks_settings).verifier is not None
    assert build_identity(jwks_settings).oidc_verifier is None

    oidc = build_identity(
        settings_from({"CHAT_AUTH": "clerk", "CLERK_ISSUER": "https://clerk.example.test", "CLERK_AUDIENCE": "cid"})
    )
    assert oidc.oidc_verifier is not None and oidc.oidc_verifier.audience == ["cid"]
    assert oidc.oidc_verifier.authorized_parties == ()


def test_clerk_mode_without_issuer_names_the_setting() -> None:
    with pytest.raises(ConfigError, match="CLERK_ISSUER"):
        settings_from({"CHAT_AUTH": "clerk"})
