"""Account: default instructions for new chats, change password, the sessions signed in to this account, API
keys, export, delete the account.

Local accounts get every section; with Clerk the account lives at Clerk, and only the default instructions and
the API keys are managed here; without sign-in (CHAT_AUTH=none) only the default instructions."""

from __future__ import annotations

import streamlit as st

from components import state
from components.account import default_instructions_section, sessions_table
from components.api_keys import api_keys_section
from components.auth_gate import require_principal
from components.shell import page_services
from services import export
from services.sessions import SignInRefused

principal = require_principal()
services = page_services()
sessions = services.sessions
st.title("Account")
default_instructions_section(services.chat, principal, services.settings.default_instructions)
if sessions is None:
    if services.settings.auth_mode == "clerk":
        st.info("Your account is managed by your sign-in provider (Clerk).")
    if services.api_keys is not None:
        api_keys_section(services.api_keys, principal)
    elif services.settings.auth_mode != "none":  # without sign-in there is nobody for a key to stand for
        st.caption("API keys are switched off on this server (CHAT_API_KEYS).")
    st.stop()

flash = st.session_state.pop(state.ACCOUNT_FLASH, None)
if flash:
    st.success(flash)

st.subheader("Change password")
with st.form("change_password", clear_on_submit=True):
    current = st.text_input("Current password", type="password", key="account.current")
    new = st.text_input("New password", type="password", key="account.new")
    repeat = st.text_input("Repeat new password", type="password", key="account.repeat")
    change = st.form_submit_button("Change password")
if change:
    try:
        ended = sessions.change_password(principal, current, new, repeat)
    except SignInRefused as exc:
        st.error(exc.message)
    else:
        st.session_state[state.ACCOUNT_FLASH] = f"Password changed. Signed out {ended} other session(s)."
        st.rerun()

st.subheader("Where you are signed in")
rows = sessions.list_sessions(principal)
sessions_table(rows, sessions.current_session_id(principal))
if len(rows) > 1 and st.button("Sign out all other sessions", key="account.sign_out_others"):
    count = sessions.sign_out_others(principal)
    st.session_state[state.ACCOUNT_FLASH] = f"Signed out {count} other session(s)."
    st.rerun()

if services.api_keys is not None:
    api_keys_section(services.api_keys, principal)

st.subheader("Export your data")
st.download_button(
    "All your data as JSON",
    data=lambda: export.spool(export.export_json(services.store, principal)),
    file_name="chat-history.json",
    mime="application/json",
    on_click="ignore",
    key="account.export.json",
)

st.subheader("Delete account")
st.caption("Deletes your account, every conversation and message, and signs you out everywhere. It cannot be undone.")
with st.form("delete_account"):
    typed = st.text_input("Type your username to confirm", key="account.delete_confirm")
    delete = st.form_submit_button("Delete my account and all my data", type="primary")
if delete:
    try:
        deleted = sessions.delete_account(principal, typed, services.store.delete_all_user_data)
    except SignInRefused as exc:
        st.error(exc.message)
    else:
        st.session_state.pop(state.PRINCIPAL, None)
        st.session_state.pop(state.TOKEN, None)
        st.session_state.pop(state.SESSION_SECRET, None)
        st.session_state[state.AUTH_NOTICE] = f"Your account and {deleted} message(s) are deleted."
        st.rerun()
