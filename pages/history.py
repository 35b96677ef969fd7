"""History page: the user's messages newest first, with search, filters, usage, export and delete.

Thin by design: read the URL -> widgets -> one HistoryService call per view -> components render. The URL
(`?limit=20&before=<cursor>&q=...`, services/history_query.py) is the source of truth, so any page can be
bookmarked and reloaded. Row-level security in the database decides what the service returns.
"""

from __future__ import annotations

import io
import uuid

import streamlit as st

from components import history as view
from components.auth_gate import require_principal
from components.shell import page_services
from services.auth import Principal
from services.errors import UserError
from services.history_query import HistoryQuery, parse_query
from services.runtime import Services

principal: Principal = require_principal()  # first: a fresh server may run this file without app.py
services: Services = page_services()
history = services.history
tz = view.user_timezone()


# --- callbacks -----------------------------------------------------------------------------------------


def show(query: HistoryQuery) -> None:
    """Make the URL say what is shown (no rerun: this run already shows it)."""
    st.query_params.from_dict(query.params())


def go_to(query: HistoryQuery) -> None:
    show(query)
    st.rerun()


def delete_conversation(conversation_id: uuid.UUID) -> str:
    history.delete_conversation(principal, conversation_id)
    return "Conversation deleted."


def delete_all() -> str:
    count = history.delete_all_my_data(principal)
    return f"All your data was deleted ({count:,} messages)."


def export_csv() -> io.FileIO:
    return history.export_csv(principal)


def export_json() -> io.FileIO:
    return history.export_json(principal)


def export_markdown(conversation_id: uuid.UUID) -> io.FileIO:
    return history.export_markdown(principal, conversation_id)


# --- the page ------------------------------------------------------------------------------------------

st.title("History")
view.flash()
query, notices = parse_query(st.query_params.to_dict(), may_review=principal.is_reviewer)
view.notices(notices)
if notices:
    show(query)

try:
    options = history.filter_options(principal, all_users=query.all_users)
    view.filter_bar(query, options, may_review=principal.is_reviewer, on_change=go_to)
    picked = view.view_picker()
    if picked == "Messages":
        shown = history.page(principal, query, tz)
        view.notices([shown.notice] if shown.notice else [])
        if shown.query != query:
            show(shown.query)
        view.message_table(shown.page, tz, show_user=query.all_users, names=shown.names, on_path=shown.on_path)
        view.pager(shown.page, shown.query, go_to)
        view.detail(
            shown.page.items,
            principal.user_id,
            tz,
            export_markdown=export_markdown,
            names=shown.names,
            files=lambda message_id: history.attachments(principal, message_id),
            open_file=lambda attachment_id: history.attachment_file(principal, attachment_id).data,
        )
    elif picked == "Usage":
        view.usage_chart(history.usage(principal, query, tz))
    else:
        view.exports_and_delete(export_csv, export_json)
    view.pending_dialog(delete_conversation, delete_all)
except UserError as exc:
    st.error(exc.message)
