"""What app.py needs from Streamlit beyond pages: whether code runs inside a script run, and the process's
services for a page run, started with a spinner and a clear error instead of a stack trace."""

from __future__ import annotations

import gc
import importlib
import threading

import streamlit as st
from streamlit.runtime.scriptrunner import get_script_run_ctx

from services.config import ConfigError
from services.runtime import Services, StartupError, is_started, shared_services


def in_script_run() -> bool:
    """True inside a Streamlit script run. `streamlit run app.py` also imports app.py as a plain module to
    find its `st.App`; page code must not run then (st.stop() would do nothing there)."""
    return get_script_run_ctx(suppress_warning=True) is not None


def page_services() -> Services:
    """The per-process services, or stop this run with the reason they could not be started."""
    try:
        if is_started():
            services = shared_services()
        else:
            with st.spinner("Starting the database…"):
                services = shared_services()
    except (ConfigError, StartupError) as exc:
        st.error(str(exc))
        st.stop()
        raise AssertionError("unreachable") from None  # st.stop() raises
    # Asked on every run, not only by the run that started the services: an HTTP request (a readiness probe)
    # may have started them first. After the first time it returns at once.
    freeze_startup_heap()
    return services


# What the pages and the provider clients import on first use: loaded before the heap is frozen.
STARTUP_MODULES = ("pandas", "openai", "anthropic", "components.chat", "components.history", "components.account")
_frozen = threading.Lock()


def freeze_startup_heap() -> None:
    """Once per process, when the services have started: load what the pages use, collect, and move every
    object alive now (modules, classes, the services) out of the garbage collector's sight.

    Streamlit runs a full collection after every script run (`runner.postScriptGC`), holding the GIL while
    it walks every tracked object: ~300,000 once the SDKs are loaded, 0.12-0.18 s a run measured on this
    machine's 2 cores. Every other session's reply stream froze that long whenever anyone's page ran. Frozen,
    a collection walks only what was made since (0.2-2.7 ms), and the start-up objects live as long as the
    process anyway."""
    if not _frozen.acquire(blocking=False):
        return  # done, or being done by another session's first run
    for name in STARTUP_MODULES:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()
