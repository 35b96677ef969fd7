"""Sidebar badge: who is signed in, their roles, and "Log out" (not shown in CHAT_AUTH=none)."""

from __future__ import annotations

import streamlit as st

from components.auth_gate import request_logout
from components.login import sign_out_form_html
from services.auth import Principal


def display_name(principal: Principal) -> str:
    for key in ("name", "username", "email"):
        value = principal.claims.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return principal.user_id


def render_user_badge(principal: Principal, auth_mode: str) -> None:
    with st.sidebar:
        # Names and roles are user data: st.text shows them literally (no markdown, no HTML).
        st.caption("Signed in as")
        st.text(display_name(principal))
        if principal.roles:
            st.text("Roles: " + ", ".join(principal.roles))
        if auth_mode == "local":
            # A form the browser posts itself: the route revokes the session everywhere and deletes the
            # HttpOnly cookie, which no script run could do.
            st.html(sign_out_form_html())
        elif auth_mode != "none":
            st.button("Log out", key="chat_logout_button", on_click=request_logout, icon=":material/logout:")
