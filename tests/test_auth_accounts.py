"""Local accounts file, key files and the local issuer, on real files with real bcrypt and RSA."""

from __future__ import annotations

import stat
import threading
import time
from pathlib import Path

import pytest
import yaml
from streamlit_authenticator.utilities.hasher import Hasher

from services.accounts import (
    LOCAL_ISSUER,
    AccountError,
    AccountStore,
    LocalIssuer,
    load_or_create_secret,
    load_or_create_signing_key,
)
from services.auth import AuthError, TokenVerifier
from tests.auth_support import SigningKey

PASSWORD = "correct horse battery"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_first_account_is_reviewer_later_ones_are_not(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    assert not accounts.has_accounts()
    ann = accounts.create("Ann", PASSWORD, name="Ann Lee", email="ann@example.test")
    bob = accounts.create("bob", PASSWORD)
    assert (ann.username, ann.roles, ann.user_id) == ("ann", ("reviewer",), "local:ann")
    assert bob.roles == ()
    assert accounts.has_accounts()
    assert accounts.get("ANN") == ann


def test_file_is_streamlit_authenticator_format_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "users.yaml"
    AccountStore(path).create("ann", PASSWORD, name="Ann Lee", email="ann@example.test")
    data = yaml.safe_load(path.read_text())
    entry = data["credentials"]["usernames"]["ann"]
    assert entry["first_name"] == "Ann Lee" and entry["email"] == "ann@example.test"
    assert entry["roles"] == ["reviewer"]
    assert Hasher.is_hash(entry["password"]) and Hasher.check_pw(PASSWORD, entry["password"])
    assert mode(path) == 0o600


def test_password_check(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    accounts.create("ann", PASSWORD)
    account = accounts.check_password("ann", PASSWORD)
    assert account is not None and account.username == "ann"
    assert accounts.check_password("ann", PASSWORD + "!") is None
    assert accounts.check_password("nobody", PASSWORD) is None
    assert accounts.check_password("ann", "x" * 200) is None


@pytest.mark.parametrize(
    ("username", "password", "message"),
    [
        ("ab", PASSWORD, "Choose a username"),
        ("ann smith", PASSWORD, "Choose a username"),
        ("../etc", PASSWORD, "Choose a username"),
        ("ann", "short", "at least 8 characters"),
        ("ann", "é" * 40, "at most 72 bytes"),
        ("ann", " padded password ", "cannot start or end with a space"),
    ],
)
def test_bad_sign_up_is_explained_and_writes_nothing(
    tmp_path: Path, username: str, password: str, message: str
) -> None:
    path = tmp_path / "users.yaml"
    with pytest.raises(AccountError, match=message):
        AccountStore(path).create(username, password)
    assert not path.exists()


def test_taken_username_is_refused_and_first_account_unchanged(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    accounts.create("ann", PASSWORD)
    with pytest.raises(AccountError, match="taken"):
        accounts.create("ANN", "another password")
    assert accounts.check_password("ann", PASSWORD) is not None


def test_concurrent_first_sign_ups_make_exactly_one_reviewer(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    names = [f"user{i}" for i in range(6)]
    errors: list[BaseException] = []

    def sign_up(name: str) -> None:
        try:
            AccountStore(path).create(name, PASSWORD)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    users = yaml.safe_load(path.read_text())["credentials"]["usernames"]
    assert sorted(users) == names
    assert sum(entry["roles"] == ["reviewer"] for entry in users.values()) == 1


def test_hand_written_plain_text_passwords_are_hashed_on_load(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(
        "credentials:\n  usernames:\n    Carol:\n      email: c@example.test\n      name: Carol\n"
        "      password: plain-text-pass\n      roles: [reviewer]\n"
    )
    accounts = AccountStore(path)
    credentials = accounts.credentials()
    assert Hasher.is_hash(credentials["usernames"]["carol"]["password"])
    assert "plain-text-pass" not in path.read_text()
    carol = accounts.check_password("carol", "plain-text-pass")
    assert carol is not None and carol.name == "Carol" and carol.roles == ("reviewer",)


@pytest.mark.parametrize(
    "text", ["credentials: [1, 2", "credentials: 3", "credentials:\n  usernames: [a, b]", "- a list"]
)
def test_broken_accounts_file_names_the_setting(tmp_path: Path, text: str) -> None:
    path = tmp_path / "users.yaml"
    path.write_text(text)
    with pytest.raises(AccountError, match="CHAT_USERS_FILE"):
        AccountStore(path).has_accounts()
    assert path.read_text() == text


def test_signing_key_is_created_private_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "local-signing-key.pem"
    first = load_or_create_signing_key(path)
    assert mode(path) == 0o600 and mode(path.parent) == 0o700
    second = load_or_create_signing_key(path)
    assert first.private_numbers() == second.private_numbers()
    secret = load_or_create_secret(tmp_path / "keys" / "cookie-key")
    assert len(secret) >= 48 and load_or_create_secret(tmp_path / "keys" / "cookie-key") == secret
    assert mode(tmp_path / "keys" / "cookie-key") == 0o600


def test_local_tokens_go_through_the_same_verifier(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    ann = accounts.create("ann", PASSWORD, name="Ann")
    issuer = LocalIssuer(load_or_create_signing_key(tmp_path / "k.pem"), ttl_s=900)
    token = issuer.issue(ann)
    principal = issuer.verifier.verify(token)
    assert isinstance(issuer.verifier, TokenVerifier)
    assert principal.user_id == "local:ann" and principal.is_reviewer
    assert principal.claims["iss"] == LOCAL_ISSUER and principal.claims["name"] == "Ann"
    assert principal.expires_at is not None
    assert 890 <= principal.expires_at.timestamp() - principal.claims["iat"] <= 900
    # An explicit verifier built from the public PEM accepts it too: nothing local-only in the path.
    assert TokenVerifier(issuer=LOCAL_ISSUER, public_key_pem=issuer.public_pem).verify(token).user_id == "local:ann"


def test_local_token_from_another_install_or_expired_is_rejected(tmp_path: Path) -> None:
    ann = AccountStore(tmp_path / "users.yaml").create("ann", PASSWORD)
    ours = LocalIssuer(load_or_create_signing_key(tmp_path / "ours.pem"), ttl_s=900)
    theirs = LocalIssuer(load_or_create_signing_key(tmp_path / "theirs.pem"), ttl_s=900)
    with pytest.raises(AuthError) as caught:
        ours.verifier.verify(theirs.issue(ann))
    assert caught.value.reason == "bad_signature"
    with pytest.raises(AuthError) as caught:
        ours.verifier.verify(ours.issue(ann, now=time.time() - 3600))
    assert caught.value.reason == "expired"


def test_clerk_style_token_is_not_accepted_by_the_local_verifier(tmp_path: Path) -> None:
    issuer = LocalIssuer(load_or_create_signing_key(tmp_path / "k.pem"), ttl_s=900)
    other = SigningKey.generate("x")
    now = int(time.time())
    forged = other.sign({"iss": LOCAL_ISSUER, "sub": "local:ann", "iat": now, "exp": now + 60, "roles": ["reviewer"]})
    with pytest.raises(AuthError) as caught:
        issuer.verifier.verify(forged)
    assert caught.value.reason == "bad_signature"
