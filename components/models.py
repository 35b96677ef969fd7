"""The sidebar's model picker: one list grouped by provider or server ("OpenAI · gpt-4o", "local · llama3"),
opened on the user's last pick (remembered per user across sessions), with every compatible server whose
models could not be discovered named with the reason, and a "Refresh models" button where models are
discovered. Streamlit's selectbox has no option groups: the group leads each label and the list keeps
each group together, which also lets typing a server's name filter to its models."""

from __future__ import annotations

import streamlit as st

from components import state
from services.auth import Principal
from services.chat import ChatService
from services.errors import UserError


def _remember(principal: Principal, chat: ChatService) -> None:
    try:
        chat.remember_model(principal, st.session_state[state.MODEL])
    except UserError:
        # The pick still holds for this session; only the next one would not open on it.
        st.toast("Your model choice could not be saved for next time.", icon=":material/warning:")


def _refresh(chat: ChatService) -> None:
    chat.catalogue.refresh()


def model_picker(principal: Principal, chat: ChatService) -> str:
    """Draw the picker and return the chosen model id."""
    catalogue = chat.catalogue
    options = catalogue.options
    ids = [o.id for o in options]
    labels = {o.id: o.label for o in options}
    if state.MODEL not in st.session_state:
        st.session_state[state.MODEL] = chat.preferred_model(principal)
    if st.session_state[state.MODEL] not in labels:
        # Its server is down or it was removed from the settings; the stored pick is kept for later.
        st.session_state[state.MODEL] = catalogue.default
    model: str = st.selectbox(
        "Model",
        ids,
        key=state.MODEL,
        format_func=lambda mid: labels.get(mid, mid),
        on_change=_remember,
        args=(principal, chat),
    )
    for server in catalogue.statuses():
        if not server.available:
            st.caption(f":material/cloud_off: Server **{server.name}** is unavailable: {server.problem}.")
    if catalogue.discovers:
        st.button(
            "Refresh models",
            icon=":material/refresh:",
            key=state.REFRESH_MODELS,
            on_click=_refresh,
            args=(chat,),
            help="Ask the model servers again which models they offer.",
            type="tertiary",  # beside New chat, the page's main sidebar action, it stays quiet
        )
    return model
