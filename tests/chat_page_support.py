"""The chat page under AppTest, shared by its test modules: app.py with the real services on the module's real
PostgreSQL (CHAT_AUTH=none, so everyone is LOCAL_USER), a local OpenAI wire-format server, and small readers.

A test module imports the fixtures it uses by name (`from tests.chat_page_support import app, my_store`);
pytest then finds them in the module, as if they were defined there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest, local_script_runner

from components.auth_gate import LOCAL_USER
from devtools.wire_servers import WireServer
from services.runtime import reset_shared_services
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
ME = LOCAL_USER  # CHAT_AUTH=none signs everyone in as this user
# Settings a test may set through `app(**env)`; cleared first so the machine's environment never leaks in.
CLEARED = (
    "OPENAI_BASE_URL", "OPENAI_COMPAT_MODELS", "OPENAI_API_KEY", "ANTHROPIC_API_KEY", "CHAT_DEFAULT_INSTRUCTIONS",
)


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture
def app(
    database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[Callable[..., AppTest]]:
    """A factory: app(**env) sets the environment, drops cached services, and returns a fresh AppTest."""

    def make(**env: str) -> AppTest:
        base = {
            "CHAT_AUTH": "none",
            "CHAT_DATA_DIR": str(tmp_path),
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "CHAT_DEMO_CHARS_PER_S": "1000000",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        }
        for name in CLEARED:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **env}.items():
            monkeypatch.setenv(name, value)
        reset_shared_services()  # services are built once per process; this test's env must take effect
        return AppTest.from_file(APP, default_timeout=30)

    yield make
    reset_shared_services()


@pytest.fixture
def my_store(database: EmbeddedDatabase) -> Iterator[PostgresStore]:
    s = PostgresStore(database.app_url, pool_max=2)
    yield s
    s.close()


@pytest.fixture
def stop_keeps_the_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """An overrunning AppTest run is stopped (as the stop button does) and its elements are kept, as the
    browser keeps them, instead of AppTest raising "timed out" and discarding them."""

    def stop_at_timeout(runner: local_script_runner.LocalScriptRunner, timeout: float = 3) -> None:
        # The user presses stop `timeout` seconds into the run (or the run ends first).
        if runner._script_thread is not None:
            runner._script_thread.join(timeout)
        runner.request_stop()
        runner.join()

    monkeypatch.setattr(local_script_runner, "require_widgets_deltas", stop_at_timeout)


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    """(role, text) of each chat bubble; a message drawn block by block (one markdown element per block)
    is joined back."""
    return [(m.name, "\n\n".join(md.value for md in m.markdown)) for m in at.chat_message]


def cid_of(at: AppTest) -> str:
    """The open conversation's id, from the page's `?c=`."""
    value = at.query_params["c"]
    return value[0] if isinstance(value, list) else value


def reload(cid: str) -> AppTest:
    """A new session (a reload, another tab) opening the conversation, with the services already built."""
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params["c"] = cid
    return at.run()
