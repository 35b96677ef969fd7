"""History page: the user's messages newest first, with search, filters, usage, export and delete.

Thin on purpose: read the URL, draw the filters, one store call per view, render with
components.history. Row-level security in the database decides what the store returns.
"""

from __future__ import annotations

import streamlit as st

from components import history as ui
from components.auth_gate import require_principal
from components.shell import page_services
from services.auth import AuthError, Principal
from services.runtime import Services
from services.store import StoreError

principal: Principal = require_principal()  # first: a fresh server may run this file without app.py
services: Services = page_services()
store = services.store
tz = ui.user_timezone()

st.title("History")
ui.flash()
query, notices = ui.parse_query(st.query_params.to_dict(), may_review=principal.is_reviewer)
for notice in notices:
    st.warning(notice)
if notices:
    ui.set_url(query)  # the URL now says what is shown

try:
    conversations = store.list_conversations(principal, limit=200).items
    models = store.message_models(principal, all_users=query.all_users)
    ui.filter_bar(query, conversations, models, may_review=principal.is_reviewer)
    view = st.radio("View", ui.VIEWS, horizontal=True, key=ui.K_VIEW, label_visibility="collapsed")
    if view == "Messages":
        page = ui.load_page(store, principal, query, tz)
        ui.message_table(page, tz, show_user=query.all_users)
        ui.pager(page, query)
        ui.detail(page.items, principal, store, tz)
    elif view == "Usage":
        ui.usage_chart(store, principal, query, tz)
    else:
        ui.exports_and_delete(store, principal)
    ui.pending_dialog(store, principal)
except AuthError as exc:
    st.warning(exc.message)
except StoreError as exc:
    st.error(str(exc))
