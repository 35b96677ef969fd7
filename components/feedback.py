"""Feedback under a finished reply: thumbs up/down (`st.feedback("thumbs")`) and, once a thumb is given, a
comment in a small popover. The stored feedback is the truth: each run the thumbs show what the database
holds (a failed write never leaves a thumb that was not stored), and a comment box is refilled only when
the stored comment changed. Callbacks come from pages/chat.py; nothing here calls a service.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import streamlit as st

from components import state
from services.store import Feedback, Rating

# st.feedback("thumbs") answers 0 for thumbs down and 1 for thumbs up.
RATING_BY_VALUE: dict[int, Rating] = {0: "down", 1: "up"}
VALUE_BY_RATING: dict[Rating, int] = {"down": 0, "up": 1}
COMMENT_PLACEHOLDER = "What was good or wrong about this reply? (optional)"


def thumbs_key(message_id: str) -> str:
    return f"feedback-{message_id}"


def comment_key(message_id: str) -> str:
    return f"feedback-comment-{message_id}"


def rating_of(message_id: str) -> Rating | None:
    """The thumb the widget of this reply now shows (in a callback: what was just clicked)."""
    value = st.session_state.get(thumbs_key(message_id))
    return RATING_BY_VALUE.get(value) if isinstance(value, int) else None


def typed_comment(message_id: str) -> str:
    return str(st.session_state.get(comment_key(message_id)) or "")


@dataclass(frozen=True)
class FeedbackControls:
    """What the feedback under each reply needs: what is stored (by message id), and what a click does.
    `read_only` (a reviewer reading another user's chat) shows the owner's feedback without changing it."""

    given: Mapping[uuid.UUID, Feedback]
    on_thumb: Callable[[str], None]
    on_save_comment: Callable[[str], None]
    on_clear_comment: Callable[[str], None]
    comment_chars: int
    read_only: bool = False


def _refill_comment(message_id: str, stored: str) -> None:
    synced: dict[str, str] = st.session_state.setdefault(state.FEEDBACK_SYNCED, {})
    key = comment_key(message_id)
    if key not in st.session_state or synced.get(message_id) != stored:
        st.session_state[key] = stored
        synced[message_id] = stored


def controls(message_id: uuid.UUID, feedback: FeedbackControls) -> None:
    """The thumbs of one reply, and its comment once a thumb is given."""
    mid = str(message_id)
    given = feedback.given.get(message_id)
    if feedback.read_only:
        if given is not None:
            st.feedback("thumbs", key=thumbs_key(mid), default=VALUE_BY_RATING[given.rating], disabled=True)
            if given.comment:
                st.text(f"Comment: {given.comment}")  # user text, shown literally
        return
    st.session_state[thumbs_key(mid)] = None if given is None else VALUE_BY_RATING[given.rating]
    st.feedback("thumbs", key=thumbs_key(mid), on_change=feedback.on_thumb, args=(mid,))
    if given is None:
        return
    _refill_comment(mid, given.comment or "")
    label = "Edit comment" if given.comment else "Add a comment"
    with st.popover(label, icon=":material/comment:", type="tertiary", key=f"feedback-popover-{mid}"):
        st.text_area(
            "Comment on this reply",
            key=comment_key(mid),
            max_chars=feedback.comment_chars,
            placeholder=COMMENT_PLACEHOLDER,
        )
        with st.container(horizontal=True):
            st.button(
                "Save comment", key=f"feedback-save-{mid}", type="primary",
                on_click=feedback.on_save_comment, args=(mid,),
            )
            if given.comment:
                st.button(
                    "Remove comment", key=f"feedback-clear-{mid}", on_click=feedback.on_clear_comment, args=(mid,)
                )
