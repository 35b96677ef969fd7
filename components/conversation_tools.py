"""Managing a conversation where one chats: its title (rename inline, delete with a confirmation), its
standing instructions (collapsed at the top), and the sidebar's title filter."""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from components import state
from components.chat import plain_label
from services.store import MAX_INSTRUCTIONS_CHARS, Conversation

INSTRUCTIONS_HELP = (
    "Standing instructions for the model in this conversation (a system prompt), such as a tone, a language "
    "or a role. They apply to every reply from the next one on."
)


def conversation_header(
    conversation: Conversation,
    *,
    read_only: bool,
    on_rename: Callable[[], None],
    on_delete: Callable[[], None],
) -> None:
    """The title with Rename and Delete. Rename turns the title into a text box with Save / Cancel;
    Delete asks first, saying what goes."""
    renaming = st.session_state.get(state.RENAMING) == str(conversation.id)
    confirming = st.session_state.get(state.CONFIRM_DELETE) == str(conversation.id)
    if renaming and not read_only:
        with st.container(horizontal=True, vertical_alignment="bottom"):
            st.text_input("Title", value=conversation.title, key=state.RENAME_TEXT, max_chars=200)
            st.button("Save", key="rename-save", type="primary", on_click=on_rename)
            st.button("Cancel", key="rename-cancel", on_click=_stop, args=(state.RENAMING,))
        return
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(f"**{plain_label(conversation.title)}**")
        if not read_only:
            st.button(
                "Rename", key="rename-start", icon=":material/edit:", type="tertiary",
                on_click=_start, args=(state.RENAMING, str(conversation.id)),
            )
            st.button(
                "Delete", key="delete-start", icon=":material/delete:", type="tertiary",
                on_click=_start, args=(state.CONFIRM_DELETE, str(conversation.id)),
            )
    if confirming and not read_only:
        st.warning("Delete this conversation and every message in it, all versions included? This cannot be undone.")
        with st.container(horizontal=True):
            st.button("Delete conversation", key="delete-confirm", type="primary", on_click=on_delete)
            st.button("Keep it", key="delete-cancel", on_click=_stop, args=(state.CONFIRM_DELETE,))


def _start(key: str, value: str) -> None:
    st.session_state[key] = value


def _stop(key: str) -> None:
    st.session_state.pop(key, None)


def instructions_label(text: str) -> str:
    first = " ".join(text.split())
    if not first:
        return "Instructions: none"
    return "Instructions: " + (first if len(first) <= 60 else first[:59].rstrip() + "…")


def instructions_box(
    current: str, key: str, *, read_only: bool, on_save: Callable[[], None] | None
) -> None:
    """Collapsed at the top of the conversation; the label shows the start of the instructions. `key` is
    the text area's session-state key (one per conversation; `state.NEW_INSTRUCTIONS` before it starts).
    With `on_save` None (a chat not started yet) the text is taken when the first message is sent."""
    with st.expander(plain_label(instructions_label(current)), icon=":material/tune:"):
        if read_only:
            st.text(current or "(none)")
            return
        if key not in st.session_state:
            # Seeded through session state, not `value=`: Streamlit warns when a keyed widget gets both.
            st.session_state[key] = current
        st.text_area(
            "Instructions", key=key, max_chars=MAX_INSTRUCTIONS_CHARS, help=INSTRUCTIONS_HELP,
            placeholder="For example: answer briefly, in French.",
        )
        if on_save is not None:
            st.button("Save instructions", key="instructions-save", on_click=on_save)
        else:
            st.caption("Used from the first message of this chat.")


def conversation_filter(on_change: Callable[[], None]) -> str:
    """The sidebar's filter over conversation titles (matched in the database, case-insensitive)."""
    value = st.text_input(
        "Filter conversations", key=state.CONVERSATION_FILTER, placeholder="Filter by title",
        icon=":material/search:", on_change=on_change, label_visibility="collapsed",
    )
    return str(value or "")
