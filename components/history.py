"""History page pieces: URL state, filter bar, message table, pager, detail view, usage chart, exports
and delete dialogs. The URL query is the source of truth (`?limit=20&before=<cursor>&q=...`), so any
page can be bookmarked and reloaded; widgets are synced from it and write back to it."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from components import state
from components.markdown import neutralise
from services import export
from services.auth import AuthError, Principal
from services.store import (
    MAX_QUERY_CHARS,
    ROLES,
    STATUSES,
    Conversation,
    HistoryPage,
    HistoryRow,
    InvalidCursor,
    MessageFilter,
    ReviewStore,
    StoreError,
)

PAGE_SIZES = (10, 20, 50, 100)
DEFAULT_LIMIT = 20
PREVIEW_CHARS = 120
USAGE_DEFAULT_DAYS = 30
CURSOR_PARAMS = ("before", "after")

# widget keys (the URL is synced into these; see filter_bar)
K_QUERY = "history.q"
K_CONVERSATION = "history.conversation"
K_ROLE = "history.role"
K_MODEL = "history.model"
K_STATUS = "history.status"
K_FROM = "history.from"
K_TO = "history.to"
K_LIMIT = "history.limit"
K_ALL = "history.all_users"
K_VIEW = "history.view"
VIEWS = ("Messages", "Usage", "Export & delete")


@dataclass(frozen=True)
class HistoryQuery:
    """What the URL asks for, validated."""

    limit: int = DEFAULT_LIMIT
    before: str | None = None
    after: str | None = None
    q: str = ""
    conversation: uuid.UUID | None = None
    role: str | None = None
    model: str | None = None
    status: str | None = None
    date_from: date | None = None
    date_to: date | None = None
    all_users: bool = False

    def params(self) -> dict[str, str]:
        """The URL form (only non-default values, so links stay short)."""
        out: dict[str, str] = {"limit": str(self.limit)}
        for key, value in (
            ("before", self.before),
            ("after", self.after),
            ("q", self.q),
            ("conversation", self.conversation),
            ("role", self.role),
            ("model", self.model),
            ("status", self.status),
            ("from", self.date_from),
            ("to", self.date_to),
        ):
            if value:
                out[key] = value.isoformat() if isinstance(value, date) else str(value)
        if self.all_users:
            out["scope"] = "all"
        return out

    def widgets(self) -> dict[str, Any]:
        return {
            K_QUERY: self.q,
            K_CONVERSATION: self.conversation,
            K_ROLE: self.role,
            K_MODEL: self.model,
            K_STATUS: self.status,
            K_FROM: self.date_from,
            K_TO: self.date_to,
            K_LIMIT: self.limit,
            K_ALL: self.all_users,
        }

    def first_page(self) -> HistoryQuery:
        return replace(self, before=None, after=None)

    def message_filter(self, tz: ZoneInfo) -> MessageFilter:
        return MessageFilter(
            query=self.q,
            conversation_id=self.conversation,
            role=self.role,
            model=self.model,
            status=self.status,
            since=start_of(self.date_from, tz) if self.date_from else None,
            until=start_of(self.date_to + timedelta(days=1), tz) if self.date_to else None,
            all_users=self.all_users,
        )


def start_of(day: date, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def user_timezone() -> ZoneInfo:
    """The browser's time zone (st.context.timezone), UTC when unknown or not a zone Python knows."""
    name = st.context.timezone or "UTC"
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def parse_query(params: Mapping[str, str], *, may_review: bool) -> tuple[HistoryQuery, list[str]]:
    """Validate URL parameters. Anything bad is dropped with a notice; a bad page size or cursor falls
    back to the first page. Never raises."""
    notices: list[str] = []
    values: dict[str, Any] = {}
    raw_limit = params.get("limit")
    first_page = False
    if raw_limit is not None:
        if raw_limit.strip().isdigit() and int(raw_limit) in PAGE_SIZES:
            values["limit"] = int(raw_limit)
        else:
            notices.append(
                f"Page size {raw_limit[:20]!r} is not one of {', '.join(map(str, PAGE_SIZES))}: "
                f"showing the first page, {DEFAULT_LIMIT} per page."
            )
            first_page = True
    before, after = params.get("before") or None, params.get("after") or None
    if before and after:
        notices.append("That page link is not valid (it names two positions): showing the first page.")
        first_page = True
    if not first_page:
        values["before"], values["after"] = before, after

    q = params.get("q", "")
    if len(q) > MAX_QUERY_CHARS or "\x00" in q:
        notices.append(f"The search text is too long or contains invalid characters (limit {MAX_QUERY_CHARS}).")
    else:
        values["q"] = q.strip()
    if params.get("conversation"):
        try:
            values["conversation"] = uuid.UUID(params["conversation"])
        except ValueError:
            notices.append("The conversation in the link is not valid; showing all conversations.")
    for key, allowed in (("role", ROLES), ("status", STATUSES)):
        if params.get(key):
            if params[key] in allowed:
                values[key] = params[key]
            else:
                notices.append(f"Unknown {key} {params[key][:40]!r}; showing every {key}.")
    model = (params.get("model") or "").strip()
    if model:
        if len(model) <= 200 and "\x00" not in model:
            values["model"] = model
        else:
            notices.append("The model in the link is not valid; showing every model.")
    for key, field in (("from", "date_from"), ("to", "date_to")):
        if params.get(key):
            try:
                values[field] = date.fromisoformat(params[key])
            except ValueError:
                notices.append(f"The {key!r} date {params[key][:40]!r} is not a date like 2026-11-26; ignored.")
    if values.get("date_from") and values.get("date_to") and values["date_from"] > values["date_to"]:
        notices.append("The date range ends before it starts; the end date is ignored.")
        del values["date_to"]
    if params.get("scope") == "all":
        if may_review:
            values["all_users"] = True
        else:
            notices.append("The all-users view is only for reviewers; showing your own messages.")
    known = {f.name for f in fields(HistoryQuery)}
    return HistoryQuery(**{k: v for k, v in values.items() if k in known}), notices


def set_url(query: HistoryQuery) -> None:
    st.query_params.from_dict(query.params())


# --- filter bar ------------------------------------------------------------------------------------


def filter_bar(
    query: HistoryQuery, conversations: Sequence[Conversation], models: Sequence[str], *, may_review: bool
) -> None:
    """Filter widgets, synced from the URL. A change writes the new filters to the URL, drops the
    cursor (a filter change starts at the first page) and reruns."""
    url_state = query.widgets()
    if st.session_state.get(state.HISTORY_SYNCED) != url_state:
        # The URL changed under the widgets (first load, bookmark, pager, back button): follow it.
        for key, value in url_state.items():
            st.session_state[key] = value
        st.session_state[state.HISTORY_SYNCED] = url_state

    titles = {c.id: c.title for c in conversations}
    conversation_options: list[uuid.UUID | None] = [None, *titles]
    if query.conversation is not None and query.conversation not in titles:
        conversation_options.append(query.conversation)
    model_options: list[str | None] = [None, *models]
    if query.model is not None and query.model not in models:
        model_options.append(query.model)

    top = st.columns([4, 1])
    top[0].text_input("Search", key=K_QUERY, placeholder='words, "a phrase", -exclude, this or that')
    top[1].selectbox("Per page", PAGE_SIZES, key=K_LIMIT)
    cols = st.columns(6)
    cols[0].selectbox(
        "Conversation",
        conversation_options,
        key=K_CONVERSATION,
        # ids in the label: titles repeat ("New chat") and Streamlit keeps a choice by its label
        format_func=lambda c: "All" if c is None else f"{titles.get(c, 'Conversation')} · {str(c)[:8]}",
    )
    cols[1].selectbox("Role", [None, *ROLES], key=K_ROLE, format_func=lambda v: "All" if v is None else v)
    cols[2].selectbox("Model", model_options, key=K_MODEL, format_func=lambda v: "All" if v is None else v)
    cols[3].selectbox("Status", [None, *STATUSES], key=K_STATUS, format_func=lambda v: "All" if v is None else v)
    cols[4].date_input("From", key=K_FROM, format="YYYY-MM-DD")
    cols[5].date_input("To", key=K_TO, format="YYYY-MM-DD")
    if may_review:
        st.toggle("All users (reviewer, read-only)", key=K_ALL)

    chosen = HistoryQuery(
        limit=st.session_state[K_LIMIT],
        q=" ".join(str(st.session_state[K_QUERY] or "").split())[:MAX_QUERY_CHARS],
        conversation=st.session_state[K_CONVERSATION],
        role=st.session_state[K_ROLE],
        model=st.session_state[K_MODEL],
        status=st.session_state[K_STATUS],
        date_from=st.session_state[K_FROM],
        date_to=st.session_state[K_TO],
        all_users=bool(may_review and st.session_state.get(K_ALL)),
    )
    if chosen.date_from and chosen.date_to and chosen.date_from > chosen.date_to:
        st.warning("The end date is before the start date; the end date is ignored.")
        chosen = replace(chosen, date_to=None)
    if chosen.widgets() != url_state:
        st.session_state[state.HISTORY_SYNCED] = chosen.widgets()
        set_url(chosen)
        st.rerun()


# --- loading and rendering --------------------------------------------------------------------------


def load_page(store: ReviewStore, principal: Principal, query: HistoryQuery, tz: ZoneInfo) -> HistoryPage:
    """The page the URL names; a cursor that is damaged or from another listing gives the first page."""
    where = query.message_filter(tz)
    try:
        page = store.search_messages(principal, where, query.limit, before=query.before, after=query.after)
    except InvalidCursor as exc:
        st.warning(f"{exc} Showing the first page.")
        set_url(query.first_page())
        return store.search_messages(principal, where, query.limit)
    if query.after and page.prev_cursor is None:
        set_url(query.first_page())  # walked back to the top: the canonical first-page URL
    return page


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= PREVIEW_CHARS else flat[: PREVIEW_CHARS - 1] + "…"


def _local(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def _tokens(row: HistoryRow) -> int | None:
    if row.input_tokens is None and row.output_tokens is None:
        return None
    return (row.input_tokens or 0) + (row.output_tokens or 0)


def history_frame(rows: Sequence[HistoryRow], tz: ZoneInfo, *, show_user: bool) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "Time": [_local(r.created_at, tz) for r in rows],
            "User": [r.user_id for r in rows],
            "Conversation": [r.conversation_title for r in rows],
            "Role": [r.role for r in rows],
            "Model": [r.model for r in rows],
            "Status": [r.status for r in rows],
            "Tokens": pd.array([_tokens(r) for r in rows], dtype="Int64"),
            "Preview": [_preview(r.content) for r in rows],
        }
    )
    return frame if show_user else frame.drop(columns=["User"])


def message_table(page: HistoryPage, tz: ZoneInfo, *, show_user: bool) -> None:
    if not page.items:
        st.info("No messages match." if page.prev_cursor is None else "No more messages this way.")
        return
    st.dataframe(
        history_frame(page.items, tz, show_user=show_user),
        hide_index=True,
        width="stretch",
        column_config={"Time": st.column_config.DatetimeColumn(f"Time ({tz.key})", format="YYYY-MM-DD HH:mm:ss")},
    )


def pager(page: HistoryPage, query: HistoryQuery) -> None:
    cols = st.columns([1, 1, 1, 3])
    if cols[0].button("First page", disabled=not (query.before or query.after), key="history.first"):
        set_url(query.first_page())
        st.rerun()
    if cols[1].button("← Newer", disabled=page.prev_cursor is None, key="history.newer"):
        set_url(replace(query, before=None, after=page.prev_cursor))
        st.rerun()
    if cols[2].button("Older →", disabled=page.next_cursor is None, key="history.older"):
        set_url(replace(query, before=page.next_cursor, after=None))
        st.rerun()


def _label(position: int, row: HistoryRow, tz: ZoneInfo) -> str:
    # Streamlit keeps a selectbox choice by its label, so labels must be unique: the row number is.
    return f"{position}. {_local(row.created_at, tz):%Y-%m-%d %H:%M:%S} · {row.role} · {_preview(row.content)[:60]}"


def detail(rows: Sequence[HistoryRow], principal: Principal, store: ReviewStore, tz: ZoneInfo) -> None:
    """Pick one message of the page; show it as markdown with a link to its conversation."""
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
    own = row.user_id == principal.user_id
    with st.container(border=True):
        tokens = f" · {row.input_tokens or 0} in / {row.output_tokens or 0} out tokens" if _tokens(row) else ""
        st.caption(
            f"{_local(row.created_at, tz):%Y-%m-%d %H:%M:%S} ({tz.key}) · {row.role} · {row.model} · {row.status}"
            f"{tokens}" + ("" if own else f" · user {row.user_id}")
        )
        st.markdown(f"**{neutralise(row.conversation_title)}**")
        st.markdown(neutralise(row.content))
        if not own:
            st.caption("Another user's message: read-only.")
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
            data=lambda: export.spool(export.export_markdown(store, principal, row.conversation_id)),
            file_name=f"conversation-{row.conversation_id}.md",
            mime="text/markdown",
            on_click="ignore",
            key="history.export.md",
        )
        if cols[2].button("Delete conversation…", key="history.delete.one"):
            st.session_state[state.HISTORY_PENDING_DELETE] = (row.conversation_id, row.conversation_title)


ALL_DATA = "all"


def _forget_pending() -> None:
    st.session_state.pop(state.HISTORY_PENDING_DELETE, None)
    st.session_state.pop("history.delete.all.typed", None)


def pending_dialog(store: ReviewStore, principal: Principal) -> None:
    """Open the delete dialog the user asked for. The request lives in session state, so the dialog stays
    open across full reruns (not only its own fragment reruns) until confirmed, cancelled or dismissed."""
    pending = st.session_state.get(state.HISTORY_PENDING_DELETE)
    if pending == ALL_DATA:
        confirm_delete_all(store, principal)
    elif isinstance(pending, tuple):
        confirm_delete_conversation(store, principal, *pending)


@st.dialog("Delete this conversation?", on_dismiss=_forget_pending)
def confirm_delete_conversation(
    store: ReviewStore, principal: Principal, conversation_id: uuid.UUID, title: str
) -> None:
    st.markdown(f"**{neutralise(title)}** and all its messages will be deleted. This cannot be undone.")
    cols = st.columns(2)
    if cols[0].button("Delete", type="primary", key="history.delete.one.confirm"):
        try:
            store.delete_conversation(principal, conversation_id)
        except (StoreError, AuthError) as exc:
            st.error(str(exc))
            return
        st.session_state[state.HISTORY_FLASH] = "Conversation deleted."
        _reset_after_delete()
        st.rerun()
    if cols[1].button("Cancel", key="history.delete.one.cancel"):
        _forget_pending()
        st.rerun()


@st.dialog("Delete all my data?", on_dismiss=_forget_pending)
def confirm_delete_all(store: ReviewStore, principal: Principal) -> None:
    st.markdown("Every conversation and message of your account will be deleted. This cannot be undone.")
    typed = st.text_input("Type DELETE to confirm", key="history.delete.all.typed")
    cols = st.columns(2)
    if cols[0].button(
        "Delete everything", type="primary", disabled=typed.strip() != "DELETE", key="history.delete.all.confirm"
    ):
        try:
            count = store.delete_all_user_data(principal)
        except (StoreError, AuthError) as exc:
            st.error(str(exc))
            return
        st.session_state[state.HISTORY_FLASH] = f"All your data was deleted ({count:,} messages)."
        _reset_after_delete()
        st.rerun()
    if cols[1].button("Cancel", key="history.delete.all.cancel"):
        _forget_pending()
        st.rerun()


def _reset_after_delete() -> None:
    # The conversation filter or cursor may point at deleted rows: start again from the first page.
    _forget_pending()
    st.query_params.clear()
    st.session_state.pop(state.HISTORY_SYNCED, None)


def flash() -> None:
    message = st.session_state.pop(state.HISTORY_FLASH, None)
    if message:
        st.success(message)


# --- usage and exports ------------------------------------------------------------------------------


def usage_range(query: HistoryQuery, tz: ZoneInfo) -> tuple[datetime, datetime]:
    today = datetime.now(tz).date()
    end = query.date_to or today
    start = query.date_from or (end - timedelta(days=USAGE_DEFAULT_DAYS - 1))
    return start_of(start, tz), start_of(end + timedelta(days=1), tz)


def usage_chart(store: ReviewStore, principal: Principal, query: HistoryQuery, tz: ZoneInfo) -> None:
    since, until = usage_range(query, tz)
    rows = store.usage_by_day(principal, since, until, tz.key, all_users=query.all_users)
    st.caption(f"{since:%Y-%m-%d} to {until - timedelta(days=1):%Y-%m-%d} ({tz.key}), per day and model.")
    if not rows:
        st.info("No messages in this range.")
        return
    frame = pd.DataFrame(
        {
            "day": [r.day for r in rows],
            "model": [r.model for r in rows],
            "messages": [r.messages for r in rows],
            "tokens": [r.input_tokens + r.output_tokens for r in rows],
        }
    )
    cols = st.columns(2)
    cols[0].metric("Messages", f"{int(frame['messages'].sum()):,}")
    cols[1].metric("Tokens", f"{int(frame['tokens'].sum()):,}")
    st.subheader("Messages per day")
    st.bar_chart(frame, x="day", y="messages", color="model")
    st.subheader("Tokens per day")
    st.bar_chart(frame, x="day", y="tokens", color="model")


def exports_and_delete(store: ReviewStore, principal: Principal) -> None:
    st.subheader("Export my data")
    st.caption(
        "Everything you have stored, built when you click. JSON is lossless; CSV guards cells "
        "that a spreadsheet would run as formulas by prefixing them with an apostrophe."
    )
    cols = st.columns(2)
    cols[0].download_button(
        "All messages as CSV",
        data=lambda: export.spool(export.export_csv(store, principal)),
        file_name="chat-history.csv",
        mime="text/csv",
        on_click="ignore",
        key="history.export.csv",
    )
    cols[1].download_button(
        "All data as JSON",
        data=lambda: export.spool(export.export_json(store, principal)),
        file_name="chat-history.json",
        mime="application/json",
        on_click="ignore",
        key="history.export.json",
    )
    st.caption("To export one conversation as Markdown, open one of its messages under Messages.")
    st.subheader("Delete my data")
    if st.button("Delete all my data…", type="secondary", key="history.delete.all"):
        st.session_state[state.HISTORY_PENDING_DELETE] = ALL_DATA
