"""Admin (the `admin` role, local accounts): accounts, one-time set-password links, switching accounts off
and on, roles, and the audit log of every such action."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from components import state
from components.account import accounts_table, audit_table, show_link
from components.auth_gate import require_principal
from components.shell import page_services
from services.accounts import ADMIN, GRANTABLE_ROLES
from services.sessions import SignInRefused

principal = require_principal()
services = page_services()
sessions = services.sessions
st.title("Admin")
if sessions is None or ADMIN not in principal.roles:
    st.error("Only administrators of local accounts can open this page.")
    st.stop()

flash = st.session_state.pop(state.ADMIN_FLASH, None)
if flash:
    st.success(flash)
link = st.session_state.pop(state.ADMIN_LINK, None)
if isinstance(link, tuple):
    show_link(*link)


def act(done: str, action: Callable[..., object], *args: Any) -> None:
    """Run one admin action; a refusal is shown, a success reruns with a notice."""
    try:
        result = action(principal, *args)
    except SignInRefused as exc:
        st.error(exc.message)
        return
    if isinstance(result, str):
        st.session_state[state.ADMIN_LINK] = (args[0], result)
    st.session_state[state.ADMIN_FLASH] = done
    st.rerun()


try:
    accounts = sessions.list_accounts(principal)
except SignInRefused as exc:
    st.error(exc.message)
    st.stop()

st.subheader("Accounts")
accounts_table(accounts)

st.subheader("Create an account")
with st.form("admin_create", clear_on_submit=True):
    new_username = st.text_input("Username", key="admin.new_username")
    new_name = st.text_input("Display name (optional)", key="admin.new_name")
    new_roles = st.multiselect("Roles", GRANTABLE_ROLES, key="admin.new_roles")
    create = st.form_submit_button("Create account")
if create:
    act(f"Created {new_username.strip().lower()}.", sessions.create_account, new_username, new_name, tuple(new_roles))

st.subheader("Change an account")
names = [a.username for a in accounts]
chosen = st.selectbox("Account", names, key="admin.account")
target = next((a for a in accounts if a.username == chosen), None)
if target is not None:
    cols = st.columns(3)
    if target.disabled:
        if cols[0].button("Switch on", key="admin.enable"):
            act(f"{target.username} is switched on.", sessions.set_disabled, target.username, False)
    elif cols[0].button("Switch off", key="admin.disable"):
        off = f"{target.username} is switched off and signed out everywhere."
        act(off, sessions.set_disabled, target.username, True)
    if cols[1].button("Reset password", key="admin.reset"):
        act(f"{target.username}'s password is reset; they are signed out.", sessions.reset_password, target.username)
    with st.form("admin_roles"):
        key = f"admin.roles.{target.username}"
        roles = st.multiselect("Roles", GRANTABLE_ROLES, default=list(target.roles), key=key)
        save = st.form_submit_button("Save roles")
    if save:
        act(f"{target.username}'s roles are saved.", sessions.set_roles, target.username, tuple(roles))

st.subheader("Audit log")
st.caption("Every action above, and account deletions and password changes. Nobody can edit it.")
audit_table(sessions.audit_entries(principal))
