"""Every page runs under AppTest without an exception (STYLE.md 8)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import state
from services.accounts import AccountStore
from services.runtime import reset_shared_services, shared_services
from services.store.embedded import EmbeddedDatabase

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "pages").glob("*.py"))


@pytest.fixture
def app_env(database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    monkeypatch.setenv("CHAT_AUTH", "none")
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", database.app_url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    reset_shared_services()  # services are built once per process; this test's env must take effect
    yield
    reset_shared_services()


def test_pages_are_found() -> None:
    assert "pages/chat.py" in PAGES and "pages/history.py" in PAGES


# Pages only local accounts have (the Admin page only for administrators): run them signed in as one.
LOCAL_ONLY = {"pages/account.py", "pages/admin.py"}


@pytest.mark.parametrize("page", PAGES)
def test_page_runs_without_exception(
    app_env: None, page: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=30)
    if page in LOCAL_ONLY:
        monkeypatch.setenv("CHAT_AUTH", "local")
        reset_shared_services()
        AccountStore(tmp_path / "users.yaml").create("root", "correct horse battery", roles=("admin",))
        sessions = shared_services().sessions
        assert sessions is not None
        at.session_state[state.SESSION_SECRET] = sessions.sign_in("root", "correct horse battery", address="x")
    at.run()
    assert not at.exception, at.exception
    at.switch_page(page).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
