"""Entry point: page config, the auth gate, and navigation over pages/. Nothing else lives here."""

from __future__ import annotations

import streamlit as st

from components import state
from components.auth_gate import current_principal
from services.config import ConfigError, load_settings
from services.runtime import Services, build_services

st.set_page_config(page_title="Chat", page_icon=":material/forum:", layout="wide")


@st.cache_resource(show_spinner="Starting the database…")
def get_services() -> Services:
    return build_services(load_settings())


try:
    services = get_services()
except (ConfigError, RuntimeError) as exc:
    st.error(str(exc))
    st.stop()

st.session_state[state.SERVICES] = services  # pages read the per-process services from here
principal = current_principal(services)
if principal is None:
    st.stop()

pages = [
    st.Page("pages/chat.py", title="Chat", icon=":material/chat:", default=True),
    st.Page("pages/history.py", title="History", icon=":material/history:"),
]
st.navigation(pages).run()
