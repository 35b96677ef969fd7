"""The Account page's API keys section under AppTest, through the real app.py, on the real embedded PostgreSQL:
create (the secret shown once, then never again), list, revoke behind a confirmation; in local accounts,
Clerk and single-user modes alike."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from services.accounts import AccountStore
from services.api_keys import ApiKeyService
from services.auth import AuthError
from services.runtime import reset_shared_services, shared_services
from services.store.embedded import EmbeddedDatabase
from tests.auth_support import ISSUER, SigningKey, app_py_runs_every_time, claims  # noqa: F401 - autouse fixture

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PASSWORD = "correct horse battery"
SECRET = re.compile(r"sk-chat-[A-Za-z0-9_-]{43}")
CLIENT_ID = "oauth_client_keys"


@pytest.fixture
def base_env(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    monkeypatch.setenv("CHAT_API_KEYS_MAX", "2")
    for name in ("CHAT_USERS_FILE", "CHAT_ALLOW_SIGNUP", "CHAT_COOKIE_KEY", "CHAT_TOKEN_TTL_S", "CHAT_API_KEYS"):
        monkeypatch.delenv(name, raising=False)
    reset_shared_services()
    yield
    reset_shared_services()


@pytest.fixture
def local(base_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> AccountStore:
    monkeypatch.setenv("CHAT_AUTH", "local")
    accounts = AccountStore(tmp_path / "users.yaml")
    accounts.create("ann", PASSWORD, name="Ann")
    return accounts


def api_keys() -> ApiKeyService:
    found = shared_services().api_keys
    assert found is not None
    return found


def local_tab(username: str = "ann") -> AppTest:
    sessions = shared_services().sessions
    assert sessions is not None
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state[state.SESSION_SECRET] = sessions.sign_in(username, PASSWORD, address="198.51.100.30")
    at.run()
    at.switch_page("pages/account.py").run()
    assert not at.exception, at.exception
    return at


def create(at: AppTest, name: str, expiry: str = "Never") -> AppTest:
    at.text_input(key="apikeys.name").input(name)
    at.selectbox(key="apikeys.expiry").select(expiry)
    at = at.button(key="FormSubmitter:api_key_create-Create key").click().run()
    assert not at.exception, at.exception
    return at


def secrets_on_page(at: AppTest) -> list[str]:
    texts = [c.value for c in at.code] + [t.value for t in at.text] + [m.value for m in at.markdown]
    texts += [s.value for s in at.success] + [str(d.value.to_dict()) for d in at.dataframe]
    return [found for text in texts for found in SECRET.findall(str(text))]


def key_rows(at: AppTest) -> list[dict[str, str]]:
    frames = [d.value for d in at.dataframe if "Key" in d.value.columns]
    return frames[0].to_dict("records") if frames else []


def test_a_created_key_is_shown_once_listed_and_works(local: AccountStore) -> None:
    at = create(local_tab(), "laptop script", "30 days")
    assert [s.value for s in at.success] == ["Key created. Copy it now: you will not see it again."]
    secret = at.code[0].value
    assert SECRET.fullmatch(secret)
    assert api_keys().authenticate(secret).user_id == local.get("ann").user_id  # type: ignore[union-attr]
    rows = key_rows(at)
    assert [(r["Name"], r["Key"], r["Status"], r["Last used"]) for r in rows] == [
        ("laptop script", secret[:14] + "…", "active", "never")
    ]
    assert rows[0]["Expires"] != "never"

    # Any rerun (a click, a reload of the script) and the secret is gone for good.
    at.run()
    assert not at.exception, at.exception
    assert secrets_on_page(at) == []
    assert secret not in repr(at.session_state) and "apikeys.name" in repr(at.session_state)
    assert key_rows(at)[0]["Last used"] != "never"  # the authenticate above used it


def test_revoking_asks_first_and_cancel_keeps_the_key(local: AccountStore) -> None:
    at = create(local_tab(), "ci")
    secret = at.code[0].value
    at = at.button(key="apikeys.revoke").click().run()
    assert [w.value for w in at.warning] == [
        "Revoke this key? Programs using it stop working at once. This cannot be undone."
    ]
    at = at.button(key="apikeys.revoke_cancel").click().run()
    assert not at.warning and key_rows(at)[0]["Status"] == "active"
    api_keys().authenticate(secret)

    at = at.button(key="apikeys.revoke").click().run()
    at = at.button(key="apikeys.revoke_yes").click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == [f"Revoked the key {secret[:14]}…"]
    assert key_rows(at)[0]["Status"] == "revoked"
    with pytest.raises(AuthError) as caught:
        api_keys().authenticate(secret)
    assert caught.value.reason == "api_key_revoked"
    assert not [b for b in at.button if b.key == "apikeys.revoke"]  # nothing live is left to revoke


def test_revoke_picks_the_chosen_key(local: AccountStore) -> None:
    at = create(local_tab(), "first")
    first = at.code[0].value
    at = create(at, "second")
    second = at.code[0].value
    choice = at.selectbox(key="apikeys.revoke_choice")
    target = next(o for o in choice.options if o.startswith("first"))
    at = choice.select(target).run()
    at = at.button(key="apikeys.revoke").click().run()
    assert "first (" in " ".join(t.value for t in at.text)
    at = at.button(key="apikeys.revoke_yes").click().run()
    statuses = {r["Name"]: r["Status"] for r in key_rows(at)}
    assert statuses == {"first": "revoked", "second": "active"}
    api_keys().authenticate(second)
    with pytest.raises(AuthError):
        api_keys().authenticate(first)


def test_a_missing_name_and_the_cap_are_explained(local: AccountStore) -> None:
    at = create(local_tab(), "   ")
    assert [e.value for e in at.error] == ["Give the key a name, so you can tell it apart later."]
    assert not at.code and key_rows(at) == []
    at = create(create(at, "one"), "two")
    at = create(at, "three")
    assert [e.value for e in at.error] == ["You already have 2 active API keys: revoke one before creating another."]
    assert not at.code and len(key_rows(at)) == 2


CLERK_KEY = SigningKey.generate("clerk-keys")


def clerk_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_AUTH", "clerk")
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_JWT_KEY", CLERK_KEY.public_pem)
    monkeypatch.setenv("CLERK_AUDIENCE", CLIENT_ID)
    monkeypatch.delenv("CLERK_JWKS_URL", raising=False)
    monkeypatch.delenv("CLERK_AUTHORIZED_PARTIES", raising=False)


def clerk_tab() -> AppTest:
    token = CLERK_KEY.sign(claims(sub="user_clerk_keys", aud=CLIENT_ID, azp=CLIENT_ID, exp=int(time.time()) + 600))
    at = AppTest.from_file(APP, default_timeout=30)
    at.user = {"is_logged_in": True, "email": "kim@example.test", "tokens": {"id": token}}
    at.run()
    assert not at.exception, at.exception
    return at


def test_clerk_users_get_the_account_page_with_api_keys_and_no_local_account_sections(
    base_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clerk_env(monkeypatch)
    reset_shared_services()
    at = clerk_tab()
    at.switch_page("pages/account.py").run()
    assert [t.value for t in at.title] == ["Account"]
    # no password, sessions or account deletion
    assert [s.value for s in at.subheader] == ["Default instructions", "API keys"]
    at = create(at, "from clerk")
    principal = api_keys().authenticate(at.code[0].value)
    assert principal.user_id == "user_clerk_keys" and principal.roles == ()


def test_without_a_key_service_the_account_page_has_no_keys_outside_local_accounts(
    base_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Single-user mode: the API answers the one local user without credentials, so there are no keys. The
    # page is there for the default instructions only.
    monkeypatch.setenv("CHAT_AUTH", "none")
    reset_shared_services()
    assert shared_services().api_keys is None
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception, at.exception
    at.switch_page("pages/account.py").run()
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["Default instructions"]
    assert not [c for c in at.caption if "API keys" in c.value]
    # Clerk with CHAT_API_KEYS=false: the same, and the page says why there are no keys.
    clerk_env(monkeypatch)
    monkeypatch.setenv("CHAT_API_KEYS", "false")
    reset_shared_services()
    assert shared_services().api_keys is None
    at = clerk_tab()
    at.switch_page("pages/account.py").run()
    assert not at.exception, at.exception
    assert [s.value for s in at.subheader] == ["Default instructions"]
    assert [c.value for c in at.caption if "API keys" in c.value] == [
        "API keys are switched off on this server (CHAT_API_KEYS)."
    ]


def test_local_accounts_keep_the_page_when_keys_are_off(local: AccountStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_API_KEYS", "false")
    reset_shared_services()
    at = local_tab()
    assert "API keys" not in [s.value for s in at.subheader]
    assert "Change password" in [s.value for s in at.subheader]
