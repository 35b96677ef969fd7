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


def test_nobody_gets_a_role_by_signing_up_and_ids_are_random(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    assert not accounts.has_accounts()
    ann = accounts.create("Ann", PASSWORD, name="Ann Lee", email="ann@example.test")
    bob = accounts.create("bob", PASSWORD)
    assert (ann.username, ann.roles) == ("ann", ())
    assert bob.roles == ()
    assert ann.user_id.startswith("acct_") and len(ann.user_id) == 37 and ann.user_id != bob.user_id
    assert accounts.has_accounts()
    assert accounts.get("ANN") == ann
    assert accounts.by_id(ann.user_id) == ann


def test_an_account_deleted_and_registered_again_gets_a_new_id(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    old = accounts.create("ann", PASSWORD)
    accounts.delete("ann")
    new = accounts.create("ann", PASSWORD)
    assert new.user_id != old.user_id and accounts.by_id(old.user_id) is None


def test_accounts_from_before_ids_keep_the_id_their_data_is_stored_under(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    hashed = Hasher.hash(PASSWORD)
    path.write_text(f"credentials:\n  usernames:\n    dana:\n      password: '{hashed}'\n      roles: [reviewer]\n")
    accounts = AccountStore(path)
    dana = accounts.get("dana")
    assert dana is not None and dana.user_id == "local:dana"
    # Written into the file on first load, so it can never change again (not even if the name rule did).
    assert yaml.safe_load(path.read_text())["credentials"]["usernames"]["dana"]["id"] == "local:dana"
    assert accounts.check_password("dana", PASSWORD) == dana


def test_first_only_refuses_once_an_account_exists(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    first = accounts.create("root", PASSWORD, roles=("admin", "reviewer", "owner"), first_only=True)
    assert first.roles == ("reviewer", "admin")  # only roles the app grants are kept
    with pytest.raises(AccountError, match="already exists"):
        accounts.create("eve", PASSWORD, roles=("admin",), first_only=True)


def test_admin_edits_disable_roles_password(tmp_path: Path) -> None:
    accounts = AccountStore(tmp_path / "users.yaml")
    accounts.create("ann", PASSWORD)
    accounts.set_disabled("ann", True)
    ann = accounts.get("ann")
    assert ann is not None and ann.disabled
    accounts.set_roles("ann", ("admin", "superuser"))
    assert accounts.get("ann").roles == ("admin",)  # type: ignore[union-attr]
    accounts.set_password("ann", "a brand new passphrase")
    assert accounts.check_password("ann", PASSWORD) is None
    assert accounts.check_password("ann", "a brand new passphrase") is not None
    with pytest.raises(AccountError, match="too easy to guess"):
        accounts.set_password("ann", "password1234")


def test_file_is_streamlit_authenticator_format_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "users.yaml"
    AccountStore(path).create("ann", PASSWORD, name="Ann Lee", email="ann@example.test")
    data = yaml.safe_load(path.read_text())
    entry = data["credentials"]["usernames"]["ann"]
    assert entry["first_name"] == "Ann Lee" and entry["email"] == "ann@example.test"
    assert entry["roles"] == [] and entry["id"].startswith("acct_")
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
        ("ann", "short", "at least 12 characters"),
        ("ann", "password1234", "too easy to guess"),
        ("ann", "qwertyuiop12", "too easy to guess"),
        ("annabelle", "annabelle2026", "too easy to guess"),
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
        accounts.create("ANN", "another passphrase here")
    assert accounts.check_password("ann", PASSWORD) is not None


def test_concurrent_first_administrators_make_exactly_one(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    names = [f"user{i}" for i in range(6)]
    errors: list[BaseException] = []

    def sign_up(name: str) -> None:
        try:
            AccountStore(path).create(name, PASSWORD, roles=("reviewer",), first_only=True)
        except AccountError:
            pass  # the others are refused: an administrator already exists
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=sign_up, args=(n,)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    users = yaml.safe_load(path.read_text())["credentials"]["usernames"]
    assert len(users) == 1 and next(iter(users.values()))["roles"] == ["reviewer"]


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
    ann = accounts.create("ann", PASSWORD, name="Ann", roles=("reviewer",))
    issuer = LocalIssuer(load_or_create_signing_key(tmp_path / "k.pem"), ttl_s=900)
    token = issuer.issue(ann)
    principal = issuer.verifier.verify(token)
    assert isinstance(issuer.verifier, TokenVerifier)
    assert principal.user_id == ann.user_id and principal.is_reviewer
    assert principal.claims["iss"] == LOCAL_ISSUER and principal.claims["name"] == "Ann"
    assert principal.expires_at is not None
    assert 890 <= principal.expires_at.timestamp() - principal.claims["iat"] <= 900
    # An explicit verifier built from the public PEM accepts it too: nothing local-only in the path.
    assert TokenVerifier(issuer=LOCAL_ISSUER, public_key_pem=issuer.public_pem).verify(token).user_id == ann.user_id


def test_a_moved_clock_decides_expiry_for_the_local_verifier(tmp_path: Path) -> None:
    ann = AccountStore(tmp_path / "users.yaml").create("ann", PASSWORD)
    offset = [0.0]
    issuer = LocalIssuer(
        load_or_create_signing_key(tmp_path / "k.pem"), ttl_s=60, clock=lambda: time.time() + offset[0]
    )
    token = issuer.issue(ann, now=time.time())
    assert issuer.verifier.verify(token).user_id == ann.user_id
    offset[0] = 120  # the wall clock says the token is fine; the server's clock says it expired
    with pytest.raises(AuthError) as expired:
        issuer.verifier.verify(token)
    assert expired.value.reason == "expired"
    later = issuer.issue(ann, now=time.time() + 120)
    assert issuer.verifier.verify(later).user_id == ann.user_id  # no "issued in the future" either
    offset[0] = -120
    with pytest.raises(AuthError) as early:
        issuer.verifier.verify(later)
    assert early.value.reason == "issued_in_future"


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
