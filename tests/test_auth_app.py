"""AppTest flows for CHAT_AUTH=local through the real app.py: first account, login, wrong password,
logout, expiry with the draft kept, and no page reachable without a principal."""

from __future__ import annotations

import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
import yaml
from streamlit.testing.v1 import AppTest

from components import state
from services.accounts import AccountStore, LocalIssuer, load_or_create_signing_key
from services.auth import Principal
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase
from tests.auth_support import app_py_runs_every_time  # noqa: F401 - autouse fixture

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PASSWORD = "correct horse battery"


@pytest.fixture
def data_dir(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    monkeypatch.setenv("CHAT_AUTH", "local")
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    for name in ("CHAT_USERS_FILE", "CHAT_ALLOW_SIGNUP", "CHAT_COOKIE_KEY", "CHAT_TOKEN_TTL_S"):
        monkeypatch.delenv(name, raising=False)
    reset_shared_services()  # services are built once per process; this test's env must take effect
    yield tmp_path
    reset_shared_services()


def new_session() -> AppTest:
    return AppTest.from_file(APP, default_timeout=30).run()


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [t.value for t in at.text] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [t.value for t in at.title] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


def principal_of(at: AppTest) -> Principal | None:
    value = at.session_state[state.PRINCIPAL] if state.PRINCIPAL in at.session_state else None
    assert value is None or isinstance(value, Principal)
    return value


def button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def create_account(at: AppTest, username: str, password: str = PASSWORD, repeat: str | None = None) -> AppTest:
    at.text_input(key="signup_username").input(username)
    at.text_input(key="signup_name").input(username.title())
    at.text_input(key="signup_password").input(password)
    at.text_input(key="signup_repeat").input(password if repeat is None else repeat)
    return button(at, "Create account").click().run()


def log_in(at: AppTest, username: str, password: str) -> AppTest:
    # streamlit-authenticator's form: its "Username" and "Password" inputs come first on the page.
    username_box = [t for t in at.text_input if t.label == "Username" and t.key != "signup_username"][0]
    password_box = [t for t in at.text_input if t.label == "Password" and t.key != "signup_password"][0]
    username_box.input(username)
    password_box.input(password)
    return button(at, "Login").click().run()


def is_sign_in_page(at: AppTest) -> bool:
    return any(t.value == "Sign in" for t in at.title)


def seed_accounts(data_dir: Path, *usernames: str) -> AccountStore:
    accounts = AccountStore(data_dir / "users.yaml")
    for username in usernames:
        accounts.create(username, PASSWORD, name=username.title())
    return accounts


def test_first_account_from_the_login_page_becomes_reviewer(data_dir: Path) -> None:
    at = new_session()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert "No accounts exist yet" in texts(at)
    assert principal_of(at) is None

    at = create_account(at, "ann")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    principal = principal_of(at)
    assert principal is not None and principal.user_id == "local:ann"
    assert principal.is_reviewer
    assert not is_sign_in_page(at)
    assert "Ann" in [t.value for t in at.sidebar.text]

    users_file = data_dir / "users.yaml"
    saved = yaml.safe_load(users_file.read_text())["credentials"]["usernames"]["ann"]
    assert saved["roles"] == ["reviewer"]
    assert saved["password"].startswith("$2") and PASSWORD not in users_file.read_text()
    assert stat.S_IMODE(users_file.stat().st_mode) == 0o600
    assert stat.S_IMODE((data_dir / "keys" / "local-signing-key.pem").stat().st_mode) == 0o600


def test_second_account_is_not_reviewer(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = new_session()
    assert "New here? Create an account" in [e.label for e in at.expander]
    at = create_account(at, "bob")
    assert not at.exception, at.exception
    principal = principal_of(at)
    assert principal is not None and principal.user_id == "local:bob"
    assert not principal.is_reviewer


def test_signup_mistakes_are_explained_and_nothing_is_written(data_dir: Path) -> None:
    at = new_session()
    at = create_account(at, "ann", PASSWORD, repeat=PASSWORD + "x")
    assert not at.exception
    assert "The two passwords do not match." in [e.value for e in at.error]
    at = create_account(at, "ann", "short")
    assert any("at least 8 characters" in e.value for e in at.error)
    at = create_account(at, "A n n")
    assert any("Choose a username" in e.value for e in at.error)
    assert principal_of(at) is None
    assert not (data_dir / "users.yaml").exists()


def test_login_then_logout_keeps_the_draft(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann", "bob")
    at = new_session()
    assert is_sign_in_page(at)
    at = log_in(at, "bob", PASSWORD)
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    principal = principal_of(at)
    assert principal is not None and principal.user_id == "local:bob"
    assert principal.claims["iss"] == "urn:chat-app:local"
    assert isinstance(at.session_state[state.TOKEN], str)
    assert not is_sign_in_page(at)

    at.session_state[state.DRAFT] = "half a thought"
    at = at.button(key="chat_logout_button").click().run()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert "You are signed out." in texts(at)
    assert principal_of(at) is None
    assert state.TOKEN not in at.session_state
    assert at.session_state[state.DRAFT] == "half a thought"

    # Signing in again works in the same session.
    at = log_in(at, "ann", PASSWORD)
    principal = principal_of(at)
    assert principal is not None and principal.user_id == "local:ann"


def test_wrong_password_gives_a_clear_message(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = log_in(new_session(), "ann", "not the password")
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == ["Username or password is incorrect."]
    assert principal_of(at) is None
    assert state.TOKEN not in at.session_state
    assert "not the password" not in texts(at)
    # Unknown user: the same message, so usernames cannot be probed.
    at = log_in(at, "nobody", PASSWORD)
    assert [e.value for e in at.error] == ["Username or password is incorrect."]


@pytest.mark.parametrize("page", ["pages/chat.py", "pages/history.py"])
def test_pages_unreachable_without_a_principal(data_dir: Path, page: str) -> None:
    seed_accounts(data_dir, "ann")
    at = new_session()
    assert principal_of(at) is None
    # Signed out, navigation holds only empty sign-in pages: there is no route to a real page.
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page)

    # Signed in, the page is reachable; once the sign-in is gone, the same page no longer renders.
    at = log_in(at, "ann", PASSWORD)
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not is_sign_in_page(at)
    at.session_state[state.TOKEN] = "not-a-token"
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert principal_of(at) is None


def expire_token(at: AppTest, data_dir: Path, username: str) -> None:
    account = AccountStore(data_dir / "users.yaml").get(username)
    assert account is not None
    issuer = LocalIssuer(load_or_create_signing_key(data_dir / "keys" / "local-signing-key.pem"), ttl_s=60)
    at.session_state[state.TOKEN] = issuer.issue(account, now=time.time() - 3600)


def test_expired_token_asks_to_sign_in_again_and_keeps_the_draft(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = log_in(new_session(), "ann", PASSWORD)
    assert principal_of(at) is not None

    expire_token(at, data_dir, "ann")
    at.session_state[state.DRAFT] = "my unsent message"
    at.run()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert any("expired" in i.value and "draft is kept" in i.value for i in at.info)
    assert principal_of(at) is None
    assert at.session_state[state.DRAFT] == "my unsent message"

    at = log_in(at, "ann", PASSWORD)
    assert principal_of(at) is not None
    assert not at.exception, at.exception
    # The chat page moves the draft back into its input box.
    assert state.DRAFT not in at.session_state
    assert at.chat_input[0].proto.value == "my unsent message"


def test_message_sent_as_the_token_expires_becomes_the_draft(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = log_in(new_session(), "ann", PASSWORD)
    assert at.chat_input, "the chat page shows its input once signed in"
    expire_token(at, data_dir, "ann")
    at.chat_input[0].set_value("typed just before expiry")
    at.run()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert at.session_state[state.DRAFT] == "typed just before expiry"

    at = log_in(at, "ann", PASSWORD)
    assert not at.exception, at.exception
    assert at.chat_input[0].proto.value == "typed just before expiry"


def test_forged_token_in_session_is_not_trusted(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = log_in(new_session(), "ann", PASSWORD)
    token = at.session_state[state.TOKEN]
    head, payload, signature = token.split(".")
    at.session_state[state.TOKEN] = f"{head}.{payload[:-4]}AAAA.{signature}"
    at.run()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert principal_of(at) is None


def test_signup_switched_off_with_no_accounts_says_what_to_set(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_ALLOW_SIGNUP", "false")
    at = new_session()
    assert not at.exception, at.exception
    assert any("CHAT_ALLOW_SIGNUP" in w.value for w in at.warning)
    assert not [b for b in at.button if b.label == "Create account"]


def test_signup_switched_off_hides_the_create_form(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_ALLOW_SIGNUP", "false")
    seed_accounts(data_dir, "ann")
    at = new_session()
    assert not [b for b in at.button if b.label == "Create account"]
    assert principal_of(log_in(at, "ann", PASSWORD)) is not None


def test_none_mode_is_refused_when_listening_beyond_localhost(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHAT_AUTH", "none")
    previous = st.get_option("server.address")
    st.config.set_option("server.address", "0.0.0.0")
    try:
        at = new_session()
    finally:
        st.config.set_option("server.address", previous)
    assert not at.exception, at.exception
    assert any("CHAT_AUTH=none" in e.value for e in at.error)
    assert principal_of(at) is None


def _page_using_require_principal() -> None:
    import streamlit as st

    from components.auth_gate import require_principal

    principal = require_principal()
    st.text(f"page for {principal.user_id}")


def test_require_principal_stops_a_page_without_one() -> None:
    at = AppTest.from_function(_page_using_require_principal, default_timeout=30).run()
    assert not at.exception, at.exception
    assert [t.value for t in at.text] == []


def test_require_principal_returns_the_gates_principal() -> None:
    at = AppTest.from_function(_page_using_require_principal, default_timeout=30)
    at.session_state[state.PRINCIPAL] = Principal(user_id="local:ann")
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.text] == ["page for local:ann"]
