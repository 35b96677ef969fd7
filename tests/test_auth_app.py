"""AppTest flows for CHAT_AUTH=local through the real app.py: the sign-in page, a session found by its
secret (what the cookie carries; AppTest cannot send cookies, so the tests seed the tab's session state the
way the gate does), silent token renewal as the server's clock moves, a session ending with the draft
kept, the redirect outcomes, and no page reachable without a principal. The HTML forms themselves are
posted by a real browser in tests/e2e/test_auth_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from components import state
from services.accounts import AccountStore
from services.auth import Principal
from services.runtime import reset_shared_services, shared_services
from services.sessions import SessionService
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
    for name in ("CHAT_USERS_FILE", "CHAT_ALLOW_SIGNUP", "CHAT_COOKIE_KEY", "CHAT_TOKEN_TTL_S", "CHAT_SETUP_CODE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("CHAT_TEST_CLOCK_FILE", str(tmp_path / "clock"))
    monkeypatch.setenv("CHAT_TOKEN_TTL_S", "60")
    reset_shared_services()  # services are built once per process; this test's env must take effect
    yield tmp_path
    reset_shared_services()


def new_session(secret: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    if secret is not None:
        at.session_state[state.SESSION_SECRET] = secret
    return at.run()


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [t.value for t in at.text] + [c.value for c in at.caption]
    parts += [e.value for e in at.error] + [i.value for i in at.info] + [w.value for w in at.warning]
    parts += [t.value for t in at.title] + [s.value for s in at.subheader]
    return "\n".join(str(p) for p in parts)


def principal_of(at: AppTest) -> Principal | None:
    value = at.session_state[state.PRINCIPAL] if state.PRINCIPAL in at.session_state else None
    assert value is None or isinstance(value, Principal)
    return value


def is_sign_in_page(at: AppTest) -> bool:
    return any(t.value == "Sign in" for t in at.title)


def seed_accounts(data_dir: Path, *usernames: str) -> AccountStore:
    accounts = AccountStore(data_dir / "users.yaml")
    for username in usernames:
        accounts.create(username, PASSWORD, name=username.title())
    return accounts


def sessions() -> SessionService:
    found = shared_services().sessions
    assert found is not None
    return found


def advance(data_dir: Path, seconds: float) -> None:
    clock = data_dir / "clock"
    current = float(clock.read_text()) if clock.exists() else 0.0
    clock.write_text(str(current + seconds))


def signed_in(data_dir: Path, username: str) -> AppTest:
    secret = sessions().sign_in(username, PASSWORD, address="198.51.100.7")
    at = new_session(secret)
    assert not at.exception, at.exception
    return at


def test_no_accounts_asks_for_the_setup_code_and_logs_it(data_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="services.sessions"):
        at = new_session()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert "No accounts exist yet" in texts(at) and "setup code" in texts(at)
    assert principal_of(at) is None
    code = (data_dir / "keys" / "setup-code").read_text().strip()
    assert any(code in r.getMessage() for r in caplog.records)


def test_a_session_secret_signs_the_tab_in_with_a_short_token(data_dir: Path) -> None:
    accounts = seed_accounts(data_dir, "ann", "bob")
    at = signed_in(data_dir, "bob")
    principal = principal_of(at)
    bob = accounts.get("bob")
    assert bob is not None and principal is not None
    assert principal.user_id == bob.user_id and principal.user_id.startswith("acct_")
    assert principal.claims["iss"] == "urn:chat-app:local"
    assert principal.claims["exp"] - principal.claims["iat"] == 60
    assert not is_sign_in_page(at)
    assert "Bob" in [t.value for t in at.sidebar.text]


def test_the_token_is_renewed_from_the_session_as_the_clock_moves(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = signed_in(data_dir, "ann")
    first = at.session_state[state.TOKEN]
    at.run()
    assert at.session_state[state.TOKEN] == first  # plenty of life left: kept
    seen = {first}
    for _ in range(20):  # 20 minutes with a 60 s token
        advance(data_dir, 60)
        at.run()
        assert not at.exception, at.exception
        assert principal_of(at) is not None and not is_sign_in_page(at)
        seen.add(at.session_state[state.TOKEN])
    assert len(seen) == 21


def test_a_revoked_session_ends_the_tab_and_keeps_the_draft(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    secret = sessions().sign_in("ann", PASSWORD, address="198.51.100.7")
    at = new_session(secret)
    assert principal_of(at) is not None
    sessions().sign_out(secret)  # Log out in another tab
    at.session_state[state.DRAFT] = "half a thought"
    at.run()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert any("Your session has ended" in i.value and "draft is kept" in i.value for i in at.info)
    assert principal_of(at) is None and state.TOKEN not in at.session_state
    assert at.session_state[state.DRAFT] == "half a thought"

    # Signing in again (a new session) brings the draft back into the chat input.
    at.session_state[state.SESSION_SECRET] = sessions().sign_in("ann", PASSWORD, address="198.51.100.7")
    at.run()
    assert principal_of(at) is not None
    assert at.chat_input[0].proto.value == "half a thought"


def test_message_sent_as_the_session_ends_becomes_the_draft(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = signed_in(data_dir, "ann")
    assert at.chat_input, "the chat page shows its input once signed in"
    advance(data_dir, 481 * 60)  # idle longer than CHAT_SESSION_IDLE_MINUTES
    at.chat_input[0].set_value("typed just before the end")
    at.run()
    assert not at.exception, at.exception
    assert is_sign_in_page(at)
    assert at.session_state[state.DRAFT] == "typed just before the end"


def test_a_forged_token_or_secret_is_not_trusted(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    at = signed_in(data_dir, "ann")
    token = at.session_state[state.TOKEN]
    head, payload, signature = token.split(".")
    at.session_state[state.TOKEN] = f"{head}.{payload[:-4]}AAAA.{signature}"
    at.run()
    # The forged token is dropped and a real one issued from the session: never the forged claims.
    assert at.session_state[state.TOKEN] != f"{head}.{payload[:-4]}AAAA.{signature}"
    assert principal_of(at) is not None
    at = new_session("not-a-session-secret")
    assert is_sign_in_page(at) and principal_of(at) is None


def test_a_disabled_account_loses_its_open_tab_on_the_next_action(data_dir: Path) -> None:
    accounts = seed_accounts(data_dir, "ann")
    at = signed_in(data_dir, "ann")
    accounts.set_disabled("ann", True)
    at.run()
    assert is_sign_in_page(at) and principal_of(at) is None


def test_redirect_outcomes_become_plain_messages(data_dir: Path) -> None:
    seed_accounts(data_dir, "ann")
    cases = {
        ("signin", "invalid"): "Username or password is incorrect.",
        ("signin", "signed_out"): "You are signed out.",
        ("signup", "mismatch"): "The two passwords do not match.",
    }
    for (name, code), message in cases.items():
        at = AppTest.from_file(APP, default_timeout=30)
        at.query_params[name] = code
        at.run()
        assert not at.exception, at.exception
        assert message in texts(at)
    # Locked, with the wait from the route.
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["signin"] = "locked"
    at.query_params["wait"] = "900"
    at.run()
    assert "Too many failed sign-ins. Try again in 15 minutes." in texts(at)
    # A message put in a link by someone else is not shown; the route's signed one is.
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["signup"] = "account"
    at.query_params["why"] = "Your account is compromised: call +1 555 0100"
    at.query_params["sig"] = "0" * 32
    at.run()
    assert "compromised" not in texts(at) and "That account could not be created." in texts(at)
    why = "Choose a password of at least 12 characters."
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["signup"] = "account"
    at.query_params["why"] = why
    at.query_params["sig"] = sessions().sign_note(why)
    at.run()
    assert why in texts(at)


@pytest.mark.parametrize("page", ["pages/chat.py", "pages/history.py"])
def test_pages_unreachable_without_a_principal(data_dir: Path, page: str) -> None:
    seed_accounts(data_dir, "ann")
    at = new_session()
    assert principal_of(at) is None
    # Signed out, navigation holds only empty sign-in pages: there is no route to a real page.
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        at.switch_page(page)

    # Signed in, the page is reachable; once the session is gone, the same page no longer renders.
    at = signed_in(data_dir, "ann")
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not is_sign_in_page(at)
    sessions().sign_out(at.session_state[state.SESSION_SECRET])
    at.run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Sign in"]
    assert principal_of(at) is None


def test_signup_is_offered_on_localhost_by_default_and_can_be_switched_off(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed_accounts(data_dir, "ann")
    previous = st.get_option("server.address")
    try:
        st.config.set_option("server.address", "localhost")
        assert "New here? Create an account" in [e.label for e in new_session().expander]
        st.config.set_option("server.address", "0.0.0.0")
        monkeypatch.setenv("CHAT_COOKIE_KEY", "k" * 40)
        monkeypatch.delenv("CHAT_TEST_CLOCK_FILE")  # refused beyond localhost
        reset_shared_services()
        at = new_session()
        assert is_sign_in_page(at) and not at.error, [e.value for e in at.error]
        assert "New here? Create an account" not in [e.label for e in at.expander]
        st.config.set_option("server.address", "localhost")
        monkeypatch.setenv("CHAT_ALLOW_SIGNUP", "false")
        reset_shared_services()
        assert "New here? Create an account" not in [e.label for e in new_session().expander]
    finally:
        st.config.set_option("server.address", previous)


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
