"""The start-up heap is frozen, so the full collection Streamlit runs after every script run
(`runner.postScriptGC`) walks only what was made since, not the ~300,000 objects of the SDKs and modules
(0.12-0.18 s of held GIL per run, measured with bench/stream.py's app: every other session's stream froze)."""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from components import shell
from services.runtime import is_started
from tests.chat_page_support import app  # noqa: F401 - fixture

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import gc, sys
from components import shell
assert gc.get_freeze_count() == 0
shell.freeze_startup_heap()
frozen = gc.get_freeze_count()
loaded = all(name in sys.modules for name in shell.STARTUP_MODULES)
shell.freeze_startup_heap()  # once per process: a second call changes nothing
again = gc.get_freeze_count()
print(frozen, again, len(gc.get_objects()), loaded)
"""


def test_freezing_leaves_the_collector_only_new_objects() -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    frozen, again, tracked, loaded = done.stdout.split()
    assert loaded == "True"  # the SDKs and page modules were loaded first, so their objects are frozen too
    assert int(frozen) > 200_000
    assert abs(int(again) - int(frozen)) < 1_000  # no second freeze (it would take this call's objects too)
    assert int(tracked) < 5_000  # what a full collection still walks


def test_a_page_run_freezes_the_heap_once_services_have_started(app: Callable[..., AppTest]) -> None:  # noqa: F811
    at = app().run()
    assert not at.exception, at.exception
    assert gc.get_freeze_count() > 200_000


def test_every_page_run_asks_for_the_freeze_whoever_started_the_services(
    app: Callable[..., AppTest],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The HTTP API (a readiness probe) may start the services before any page runs: the first page run must
    still freeze the heap, so every run asks (it is a no-op after the first time)."""
    at = app().run()
    assert is_started()
    asked: list[bool] = []
    monkeypatch.setattr(shell, "freeze_startup_heap", lambda: asked.append(True))
    at.run()
    assert not at.exception, at.exception
    assert asked == [True]
