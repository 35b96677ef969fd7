"""The Account and Admin pages under AppTest, through the real app.py, on the real embedded PostgreSQL:
password change ends other sessions, sign out the others, delete the account and its data, one-time
set-password links, switching an account off ends its open tab, roles, and the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
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
NEW_PASSWORD = "a different long passphrase"


@pytest.fixture
def accounts(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[AccountStore]:
    monkeypatch.setenv("CHAT_AUTH", "local")
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    monkeypatch.setenv("CHAT_RATE_LIMIT_PER_MINUTE", "0")
    for name in ("CHAT_USERS_FILE", "CHAT_ALLOW_SIGNUP", "CHAT_COOKIE_KEY", "CHAT_TOKEN_TTL_S", "CHAT_SETUP_CODE"):
        monkeypatch.delenv(name, raising=False)
    reset_shared_services()
    store = AccountStore(tmp_path / "users.yaml")
    store.create("root", PASSWORD, name="Root", roles=("admin", "reviewer"))
    store.create("ann", PASSWORD, name="Ann")
    yield store
    reset_shared_services()


def sessions() -> SessionService:
    found = shared_services().sessions
    assert found is not None
    return found


def tab(username: str, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state[state.SESSION_SECRET] = sessions().sign_in(username, PASSWORD, address="198.51.100.20")
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def principal_of(at: AppTest) -> Principal | None:
    value = at.session_state[state.PRINCIPAL] if state.PRINCIPAL in at.session_state else None
    return value if isinstance(value, Principal) else None


def signed_out(at: AppTest) -> bool:
    return any(t.value == "Sign in" for t in at.title) and principal_of(at) is None


def button(at: AppTest, label: str):  # type: ignore[no-untyped-def]
    matches = [b for b in at.button if b.label == label]
    assert matches, f"no button {label!r} in {[b.label for b in at.button]}"
    return matches[0]


def test_password_change_asks_for_the_current_one_and_ends_other_sessions(accounts: AccountStore) -> None:
    other = tab("ann")
    at = tab("ann", "pages/account.py")
    at.text_input(key="account.current").input("not my password")
    at.text_input(key="account.new").input(NEW_PASSWORD)
    at.text_input(key="account.repeat").input(NEW_PASSWORD)
    at = button(at, "Change password").click().run()
    assert [e.value for e in at.error] == ["Your current password is not right."]

    at.text_input(key="account.current").input(PASSWORD)
    at.text_input(key="account.new").input(NEW_PASSWORD)
    at.text_input(key="account.repeat").input(NEW_PASSWORD)
    at = button(at, "Change password").click().run()
    assert not at.exception, at.exception
    assert any("Password changed. Signed out 1 other session(s)." in s.value for s in at.success)
    assert principal_of(at) is not None  # this tab stays signed in
    other.run()
    assert signed_out(other)  # the other one does not
    assert accounts.check_password("ann", NEW_PASSWORD) is not None


def test_sessions_are_listed_and_the_others_signed_out(accounts: AccountStore) -> None:
    other = tab("ann")
    at = tab("ann", "pages/account.py")
    frame = at.dataframe[0].value
    assert len(frame) == 2 and list(frame["This browser"]).count("✓") == 1
    at = at.button(key="account.sign_out_others").click().run()
    assert any("Signed out 1 other session(s)." in s.value for s in at.success)
    other.run()
    assert signed_out(other)


def test_delete_account_needs_the_typed_username_and_removes_everything(accounts: AccountStore) -> None:
    at = tab("ann", "pages/account.py")
    ann = principal_of(at)
    assert ann is not None
    shared_services().store.create_conversation(ann, "to be deleted")
    at.text_input(key="account.delete_confirm").input("someone")
    at = button(at, "Delete my account and all my data").click().run()
    assert [e.value for e in at.error] == ["Type your username, ann, to confirm."]
    at.text_input(key="account.delete_confirm").input("ann")
    at = button(at, "Delete my account and all my data").click().run()
    assert not at.exception, at.exception
    assert signed_out(at)
    assert accounts.get("ann") is None
    assert sessions().list_sessions(ann) == []
    assert shared_services().store.list_conversations(ann).items == []


def test_admin_page_is_only_for_administrators(accounts: AccountStore) -> None:
    at = tab("ann")
    with pytest.raises(ValueError, match="Known pages"):
        at.switch_page("pages/admin.py")
    admin = tab("root", "pages/admin.py")
    assert [t.value for t in admin.title] == ["Admin"]
    assert not admin.error, [e.value for e in admin.error]


def test_admin_creates_an_account_whose_one_time_link_sets_its_password(accounts: AccountStore) -> None:
    at = tab("root", "pages/admin.py")
    at.text_input(key="admin.new_username").input("carol")
    at.multiselect(key="admin.new_roles").select("reviewer")
    at = button(at, "Create account").click().run()
    assert not at.exception, at.exception
    link = at.code[0].value
    assert "/?setpw=" in link
    token = link.split("setpw=", 1)[1]
    carol = accounts.get("carol")
    assert carol is not None and carol.roles == ("reviewer",)

    opened = AppTest.from_file(APP, default_timeout=30)
    opened.query_params["setpw"] = token
    opened.run()
    assert [t.value for t in opened.title] == ["Set your password"]
    opened.text_input(key="setpw_password").input(NEW_PASSWORD)
    opened.text_input(key="setpw_repeat").input(NEW_PASSWORD)
    opened = button(opened, "Set password").click().run()
    assert not opened.exception, opened.exception
    assert any("Your password is set" in i.value for i in opened.info)
    assert accounts.check_password("carol", NEW_PASSWORD) is not None
    assert sessions().link_account(token) is None  # used once

    again = AppTest.from_file(APP, default_timeout=30)
    again.query_params["setpw"] = token
    again.run()
    assert any("has been used or has expired" in e.value for e in again.error)


def test_switching_an_account_off_ends_its_open_tab_and_is_audited(accounts: AccountStore) -> None:
    ann_tab = tab("ann")
    at = tab("root", "pages/admin.py")
    at.selectbox(key="admin.account").select("ann")
    at.run()
    at = at.button(key="admin.disable").click().run()
    assert not at.exception, at.exception
    assert any("ann is switched off" in s.value for s in at.success)
    ann_tab.run()
    assert signed_out(ann_tab)
    audit = at.dataframe[-1].value
    assert "account.disable" in list(audit["Action"])
    at.selectbox(key="admin.account").select("ann")
    at.run()
    at = at.button(key="admin.enable").click().run()
    assert any("ann is switched on" in s.value for s in at.success)


def test_roles_are_granted_and_the_last_administrator_is_kept(accounts: AccountStore) -> None:
    at = tab("root", "pages/admin.py")
    at.selectbox(key="admin.account").select("root")
    at.run()
    at.multiselect(key="admin.roles.root").unselect("admin")
    at = button(at, "Save roles").click().run()
    assert any("only administrator" in e.value for e in at.error)
    assert "admin" in accounts.get("root").roles  # type: ignore[union-attr]
    at.selectbox(key="admin.account").select("ann")
    at.run()
    at.multiselect(key="admin.roles.ann").select("admin")
    at = button(at, "Save roles").click().run()
    assert not at.exception, at.exception
    assert accounts.get("ann").roles == ("admin",)  # type: ignore[union-attr]
    ann_tab = tab("ann")
    assert "admin" in principal_of(ann_tab).roles  # type: ignore[union-attr]
