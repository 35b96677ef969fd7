"""History page rendering: filter bar, message table, pager, detail view, usage chart, exports and the delete
dialogs. Each takes data and callbacks (defined in pages/history.py), never a store or a service. The URL
model is services/history_query.py; the URL is the source of truth, widgets are synced from it, and a
change goes back through the page's callback.

(Just over 400 lines: the History page's filter bar, table, pager, detail, usage, exports and dialogs, each small.)
"""

from __future__ import annotations

import io
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from functools import partial
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from components import state
from components.attachments import FileOpener, files_in_bubble
from components.markdown import neutralise
from services.errors import UserError
from services.history import FilterOptions, Usage
from services.history_query import PAGE_SIZES, HistoryQuery
from services.store import FEEDBACK_FILTERS, MAX_QUERY_CHARS, ROLES, STATUSES, Attachment, HistoryPage, HistoryRow

PREVIEW_CHARS = 120
# The feedback filter's choices and the table's feedback cells.
FEEDBACK_LABELS = {
    "up": "👍 Thumbs up",
    "down": "👎 Thumbs down",
    "none": "Replies without",
    "comment": "With a comment",
}
THUMBS = {"up": "👍", "down": "👎"}
VIEWS = ("Messages", "Usage", "Export & delete")
ALL_DATA = "all"  # the pending-delete marker for "all my data" (a conversation is an (id, title) pair)

GoTo = Callable[[HistoryQuery], None]  # show another query: writes the URL and reruns
Download = Callable[[], io.FileIO]  # builds an export when its button is clicked
Delete = Callable[[], str]  # deletes, returns the sentence to show afterwards; raises StoreError/AuthError


def widgets(query: HistoryQuery) -> dict[str, Any]:
    """The filter widgets' values for a query, by session-state key."""
    return {
        state.HISTORY_QUERY: query.q,
        state.HISTORY_CONVERSATION: query.conversation,
        state.HISTORY_ROLE: query.role,
        state.HISTORY_MODEL: query.model,
        state.HISTORY_STATUS: query.status,
        state.HISTORY_FROM: query.date_from,
        state.HISTORY_TO: query.date_to,
        state.HISTORY_LIMIT: query.limit,
        state.HISTORY_ALL_USERS: query.all_users,
        state.HISTORY_FEEDBACK: query.feedback,
    }


def user_timezone() -> ZoneInfo:
    """The browser's time zone (st.context.timezone), UTC when unknown or not a zone Python knows."""
    name = st.context.timezone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def notices(messages: Sequence[str]) -> None:
    # Fixed sentences (services/history_query.py): st.warning renders markdown, so none quotes the URL.
    for message in messages:
        st.warning(message)


# --- filter bar ------------------------------------------------------------------------------------


ALL = "All"


def _all_or(value: str | None) -> str:
    return ALL if value is None else value


def filter_bar(query: HistoryQuery, options: FilterOptions, *, may_review: bool, on_change: GoTo) -> None:
    """Filter widgets, synced from the URL. A change calls `on_change` with the new filters and no cursor
    (a filter change starts at the first page); the URL parser then judges them like any link (an end day
    before the start day is dropped with a notice, and the widgets follow)."""
    url_state = widgets(query)
    # Streamlit drops a widget's state when a run does not draw it (another page did): the widgets would
    # come back at their own defaults (10 per page, today..today) and be written into the URL as if the
    # user had picked them. So the widgets follow the URL whenever it changed OR their state is gone.
    lost = any(key not in st.session_state for key in url_state)
    if lost or st.session_state.get(state.HISTORY_SYNCED) != url_state:
        # The URL changed under the widgets (first load, bookmark, pager, back button): follow it.
        for key, value in url_state.items():
            st.session_state[key] = value
        st.session_state[state.HISTORY_SYNCED] = url_state

    titles = {c.id: c.title for c in options.conversations}
    conversation_options: list[uuid.UUID | None] = [None, *titles]
    if query.conversation is not None and query.conversation not in titles:
        conversation_options.append(query.conversation)
    model_options: list[str | None] = [None, *options.models]
    if query.model is not None and query.model not in options.models:
        model_options.append(query.model)

    top = st.columns([4, 1])
    top[0].text_input("Search", key=state.HISTORY_QUERY, placeholder='words, "a phrase", -exclude, this or that')
    top[1].selectbox("Per page", PAGE_SIZES, key=state.HISTORY_LIMIT)
    # Two rows: six filters in one row left each too narrow for its text ("Choose an op…", "yyyy-mm-d").
    cols = st.columns([2, 1, 1, 1])
    # A None value shows the placeholder, not the None option's label: both say "All".
    cols[0].selectbox(
        "Conversation",
        conversation_options,
        key=state.HISTORY_CONVERSATION,
        # ids in the label: titles repeat ("New chat") and Streamlit keeps a choice by its label
        format_func=lambda c: "All" if c is None else f"{titles.get(c, 'Conversation')} · {str(c)[:8]}",
        placeholder=ALL,
    )
    cols[1].selectbox("Role", [None, *ROLES], key=state.HISTORY_ROLE, format_func=_all_or, placeholder=ALL)
    cols[2].selectbox("Model", model_options, key=state.HISTORY_MODEL, format_func=_all_or, placeholder=ALL)
    cols[3].selectbox("Status", [None, *STATUSES], key=state.HISTORY_STATUS, format_func=_all_or, placeholder=ALL)
    days = st.columns([1, 1, 1, 2], vertical_alignment="bottom")
    days[0].date_input("From", key=state.HISTORY_FROM, format="YYYY-MM-DD")
    days[1].date_input("To", key=state.HISTORY_TO, format="YYYY-MM-DD")
    days[2].selectbox(
        "Feedback",
        [None, *FEEDBACK_FILTERS],
        key=state.HISTORY_FEEDBACK,
        format_func=lambda f: ALL if f is None else FEEDBACK_LABELS[f],
        placeholder=ALL,
    )
    if may_review:
        days[3].toggle("All users (reviewer, read-only)", key=state.HISTORY_ALL_USERS)

    chosen = HistoryQuery(
        limit=st.session_state[state.HISTORY_LIMIT],
        q=" ".join(str(st.session_state[state.HISTORY_QUERY] or "").split())[:MAX_QUERY_CHARS],
        conversation=st.session_state[state.HISTORY_CONVERSATION],
        role=st.session_state[state.HISTORY_ROLE],
        model=st.session_state[state.HISTORY_MODEL],
        status=st.session_state[state.HISTORY_STATUS],
        date_from=st.session_state[state.HISTORY_FROM],
        date_to=st.session_state[state.HISTORY_TO],
        all_users=bool(may_review and st.session_state.get(state.HISTORY_ALL_USERS)),
        feedback=st.session_state[state.HISTORY_FEEDBACK],
    )
    if widgets(chosen) != url_state:
        st.session_state[state.HISTORY_SYNCED] = widgets(chosen)
        on_change(chosen)


def view_picker() -> str:
    return str(st.radio("View", VIEWS, horizontal=True, key=state.HISTORY_VIEW, label_visibility="collapsed"))


# --- messages -----------------------------------------------------------------------------------------


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _tokens(row: HistoryRow) -> int | None:
    if row.input_tokens is None and row.output_tokens is None:
        return None
    return (row.input_tokens or 0) + (row.output_tokens or 0)


def _tokens_cell(row: HistoryRow) -> str:
    # Text, not a nullable number: the table shows a missing number as "None" (a user message has no usage).
    tokens = _tokens(row)
    return "" if tokens is None else f"{tokens:,}"


def feedback_cell(row: HistoryRow) -> str:
    return THUMBS.get(row.feedback or "", "")


def user_label(user_id: str, names: Mapping[str, str]) -> str:
    """A user's display name, or their id when they have none (e.g. they never signed in since names
    were kept)."""
    return names.get(user_id) or user_id


def version_cell(row: HistoryRow, on_path: Collection[uuid.UUID] | None) -> str:
    """Whether the chat shows this message (its conversation's current path) or it is another version."""
    if on_path is None:
        return ""
    return "current" if row.id in on_path else "other version"


def history_frame(
    rows: Sequence[HistoryRow],
    tz: ZoneInfo,
    *,
    show_user: bool,
    names: Mapping[str, str] | None = None,
    on_path: Collection[uuid.UUID] | None = None,
) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "Time": [_local(r.created_at, tz) for r in rows],
            "User": [user_label(r.user_id, names or {}) for r in rows],
            "Conversation": [r.conversation_title for r in rows],
            "Role": [r.role for r in rows],
            "Model": [r.model for r in rows],
            "Status": [r.status for r in rows],
            "Tokens": [_tokens_cell(r) for r in rows],
            # Before the wide preview, so a thumb is in view without scrolling the table sideways.
            "Feedback": [feedback_cell(r) for r in rows],
            "Preview": [_preview(r.content) for r in rows],
            "Comment": [_preview(r.feedback_comment or "") for r in rows],
            "Version": [version_cell(r, on_path) for r in rows],
        }
    )
    return frame if show_user else frame.drop(columns=["User"])


def message_table(
    page: HistoryPage,
    tz: ZoneInfo,
    *,
    show_user: bool,
    names: Mapping[str, str] | None = None,
    on_path: Collection[uuid.UUID] | None = None,
) -> None:
    if not page.items:
        st.info("No messages match." if page.prev_cursor is None else "No more messages this way.")
        return
    st.dataframe(
        history_frame(page.items, tz, show_user=show_user, names=names, on_path=on_path),
        hide_index=True,
        width="stretch",
        column_config={
            "Time": st.column_config.DatetimeColumn(f"Time ({tz.key})", format="YYYY-MM-DD HH:mm:ss"),
            "Tokens": st.column_config.TextColumn("Tokens", alignment="right"),
        },
    )


def pager(page: HistoryPage, query: HistoryQuery, go_to: GoTo) -> None:
    cols = st.columns([1, 1, 1, 3])
    if cols[0].button("First page", disabled=not (query.before or query.after), key="history.first"):
        go_to(query.first_page())
    if cols[1].button("← Newer", disabled=page.prev_cursor is None, key="history.newer"):
        go_to(replace(query, before=None, after=page.prev_cursor))
    if cols[2].button("Older →", disabled=page.next_cursor is None, key="history.older"):
        go_to(replace(query, before=page.next_cursor, after=None))


def _label(position: int, row: HistoryRow, tz: ZoneInfo) -> str:
    # Streamlit keeps a selectbox choice by its label, so labels must be unique: the row number is.
    return f"{position}. {_local(row.created_at, tz):%Y-%m-%d %H:%M:%S} · {row.role} · {_preview(row.content)[:60]}"


def detail(
    rows: Sequence[HistoryRow],
    me: str,
    tz: ZoneInfo,
    *,
    export_markdown: Callable[[uuid.UUID], io.FileIO],
    names: Mapping[str, str] | None = None,
    files: Callable[[uuid.UUID], Sequence[Attachment]] | None = None,
    open_file: FileOpener | None = None,
) -> None:
    """Pick one message of the page; show it as markdown with a link to its conversation. `me` is the
    signed-in user's id: another user's message is read-only (its link opens the chat read-only)."""
    if not rows:
        return
    by_id = {str(r.id): r for r in rows}
    positions = {key: n for n, key in enumerate(by_id, start=1)}
    picked = st.selectbox(
        "Message details",
        [None, *by_id],
        key="history.detail." + next(iter(by_id)),  # a new page starts with nothing open
        format_func=lambda i: "Choose a message…" if i is None else _label(positions[i], by_id[i], tz),
    )
    if picked is None:
        return
    row = by_id[picked]
    own = row.user_id == me
    with st.container(border=True):
        tokens = f" · {row.input_tokens or 0} in / {row.output_tokens or 0} out tokens" if _tokens(row) else ""
        st.caption(
            f"{_local(row.created_at, tz):%Y-%m-%d %H:%M:%S} ({tz.key}) · {row.role} · {row.model} · {row.status}"
            f"{tokens}"
        )
        if not own:
            # Names are user data: st.text shows them literally. The id says exactly who, names may repeat.
            name = (names or {}).get(row.user_id)
            st.text(f"User: {name} ({row.user_id})" if name else f"User: {row.user_id}")
        st.markdown(f"**{neutralise(row.conversation_title)}**")
        st.markdown(neutralise(row.content))
        if files is not None and open_file is not None:
            # Asked only for the message picked: the table's page reads no file at all.
            files_in_bubble(st.empty(), files(row.id), open_file)
        if row.feedback:
            who = "Your" if own else "The author's"
            said = "thumbs up" if row.feedback == "up" else "thumbs down"
            st.caption(f"{who} feedback: {THUMBS[row.feedback]} {said}")
            if row.feedback_comment:
                st.text(f"Comment: {row.feedback_comment}")  # user text, shown literally
        if not own:
            st.caption("Another user's message: read-only.")
            st.page_link(
                "pages/chat.py",
                label="Open in chat (read-only)",
                icon=":material/visibility:",
                query_params={"c": str(row.conversation_id)},
            )
            return
        cols = st.columns(3)
        with cols[0]:
            st.page_link(
                "pages/chat.py",
                label="Open in chat",
                icon=":material/chat:",
                query_params={"c": str(row.conversation_id)},
            )
        cols[1].download_button(
            "Conversation as Markdown",
            data=partial(export_markdown, row.conversation_id),
            file_name=f"conversation-{row.conversation_id}.md",
            mime="text/markdown",
            on_click="ignore",
            key="history.export.md",
        )
        if cols[2].button("Delete conversation…", key="history.delete.one"):
            st.session_state[state.HISTORY_PENDING_DELETE] = (row.conversation_id, row.conversation_title)


# --- delete dialogs -----------------------------------------------------------------------------------


def _forget_pending() -> None:
    st.session_state.pop(state.HISTORY_PENDING_DELETE, None)
    st.session_state.pop(state.HISTORY_DELETE_TYPED, None)


def pending_dialog(delete_conversation: Callable[[uuid.UUID], str], delete_all: Delete) -> None:
    """Open the delete dialog the user asked for. The request lives in session state, so the dialog stays
    open across full reruns (not only its own fragment reruns) until confirmed, cancelled or dismissed."""
    pending = st.session_state.get(state.HISTORY_PENDING_DELETE)
    if pending == ALL_DATA:
        confirm_delete_all(delete_all)
    elif isinstance(pending, tuple):
        conversation_id, title = pending
        confirm_delete_conversation(title, partial(delete_conversation, conversation_id))


def _confirmed(delete: Delete) -> None:
    try:
        done = delete()
    except UserError as exc:
        st.error(exc.message)
        return
    st.session_state[state.HISTORY_FLASH] = done
    # The conversation filter or cursor may point at deleted rows: start again from the first page.
    _forget_pending()
    st.query_params.clear()
    st.session_state.pop(state.HISTORY_SYNCED, None)
    st.rerun()


def _cancelled() -> None:
    _forget_pending()
    st.rerun()


@st.dialog("Delete this conversation?", on_dismiss=_forget_pending)
def confirm_delete_conversation(title: str, delete: Delete) -> None:
    st.markdown(f"**{neutralise(title)}** and all its messages will be deleted. This cannot be undone.")
    cols = st.columns(2)
    if cols[0].button("Delete", type="primary", key="history.delete.one.confirm"):
        _confirmed(delete)
    if cols[1].button("Cancel", key="history.delete.one.cancel"):
        _cancelled()


@st.dialog("Delete all my data?", on_dismiss=_forget_pending)
def confirm_delete_all(delete: Delete) -> None:
    st.markdown("Every conversation and message of your account will be deleted. This cannot be undone.")
    # A form: its button sends the typed text with the click. A button enabled by the text input's value
    # needed two clicks (the first only committed the text, while the button was still disabled).
    with st.form("history.delete.all.form", border=False, enter_to_submit=False):
        typed = st.text_input("Type DELETE to confirm", key=state.HISTORY_DELETE_TYPED)
        confirmed = st.form_submit_button("Delete everything", type="primary", key="history.delete.all.confirm")
    if confirmed:
        if typed.strip() == "DELETE":
            _confirmed(delete)
        else:
            st.error("Type DELETE (in capitals) to confirm; nothing was deleted.")
    if st.button("Cancel", key="history.delete.all.cancel"):
        _cancelled()


def flash() -> None:
    message = st.session_state.pop(state.HISTORY_FLASH, None)
    if message:
        st.success(message)


# --- usage and exports ------------------------------------------------------------------------------


def usage_chart(usage: Usage) -> None:
    st.caption(f"{usage.first_day:%Y-%m-%d} to {usage.last_day:%Y-%m-%d} ({usage.timezone}), per day and model.")
    if not usage.rows:
        st.info("No messages in this range.")
        return
    frame = pd.DataFrame(
        {
            "day": [r.day for r in usage.rows],
            "model": [r.model for r in usage.rows],
            "messages": [r.messages for r in usage.rows],
            "tokens": [r.input_tokens + r.output_tokens for r in usage.rows],
            "thumbs up": [r.thumbs_up for r in usage.rows],
            "thumbs down": [r.thumbs_down for r in usage.rows],
        }
    )
    cols = st.columns(4)
    cols[0].metric("Messages", f"{int(frame['messages'].sum()):,}")
    cols[1].metric("Tokens", f"{int(frame['tokens'].sum()):,}")
    cols[2].metric("👍 Thumbs up", f"{int(frame['thumbs up'].sum()):,}")
    cols[3].metric("👎 Thumbs down", f"{int(frame['thumbs down'].sum()):,}")
    if usage.by_user:
        st.subheader("By user")
        st.dataframe(
            pd.DataFrame(
                {
                    "User": [user_label(u.user_id, usage.names) for u in usage.by_user],
                    "User id": [u.user_id for u in usage.by_user],
                    "Messages": [u.messages for u in usage.by_user],
                    "Tokens": [u.input_tokens + u.output_tokens for u in usage.by_user],
                }
            ),
            hide_index=True,
            width="stretch",
        )
    st.subheader("Messages per day")
    st.bar_chart(frame, x="day", y="messages", color="model")
    st.subheader("Tokens per day")
    st.bar_chart(frame, x="day", y="tokens", color="model")
    st.subheader("Feedback per day")
    st.caption("Thumbs on the replies written each day, as their authors gave them.")
    per_day = frame.groupby("day", as_index=False)[["thumbs up", "thumbs down"]].sum()
    st.bar_chart(per_day, x="day", y=["thumbs up", "thumbs down"], color=["#2e7d32", "#c62828"])


def exports_and_delete(export_csv: Download, export_json: Download) -> None:
    st.subheader("Export my data")
    st.caption(
        "Everything you have stored, built when you click. JSON is lossless; CSV guards cells "
        "that a spreadsheet would run as formulas by prefixing them with an apostrophe."
    )
    cols = st.columns(2)
    cols[0].download_button(
        "All messages as CSV",
        data=export_csv,
        file_name="chat-history.csv",
        mime="text/csv",
        on_click="ignore",
        key="history.export.csv",
    )
    cols[1].download_button(
        "All data as JSON",
        data=export_json,
        file_name="chat-history.json",
        mime="application/json",
        on_click="ignore",
        key="history.export.json",
    )
    st.caption("To export one conversation as Markdown, open one of its messages under Messages.")
    st.subheader("Delete my data")
    if st.button("Delete all my data…", type="secondary", key="history.delete.all"):
        st.session_state[state.HISTORY_PENDING_DELETE] = ALL_DATA
