"""What app.py needs from Streamlit beyond pages: whether code runs inside a script run, and the process's
services for a page run, started with a spinner and a clear error instead of a stack trace."""

from __future__ import annotations

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
            return shared_services()
        with st.spinner("Starting the database…"):
            return shared_services()
    except (ConfigError, StartupError) as exc:
        st.error(str(exc))
        st.stop()
        raise AssertionError("unreachable") from None  # st.stop() raises
