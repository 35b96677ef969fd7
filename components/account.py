"""Rendering for the Account and Admin pages: the default instructions (every sign-in mode), and for local
accounts session and account tables, the audit log, one-time links, and the set-password form a link opens.
Values are user data: shown as text or in dataframes, never as markdown or HTML."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pandas as pd
import streamlit as st

from components import state
from services.accounts import Account
from services.auth import Principal
from services.chat import ChatService
from services.errors import UserError
from services.sessions import SessionService, SignInRefused
from services.store import MAX_INSTRUCTIONS_CHARS
from services.store.signin import AuditRow, SessionRow

SET_PASSWORD_PARAM = "setpw"


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def sessions_table(rows: Sequence[SessionRow], current: str | None) -> None:
    frame = pd.DataFrame(
        [
            {
                "This browser": "✓" if str(r.id) == current else "",
                "Signed in": _when(r.created_at),
                "Last used": _when(r.last_seen_at),
                "Ends": _when(r.ends_at()),
                "Browser": r.user_agent[:80],
                "Address": r.client_address,
            }
            for r in rows
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def accounts_table(accounts: Sequence[Account]) -> None:
    frame = pd.DataFrame(
        [
            {
                "Username": a.username,
                "Name": a.name,
                "Roles": ", ".join(a.roles),
                "Status": "switched off" if a.disabled else "active",
                "Id": a.user_id,
            }
            for a in accounts
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def audit_table(rows: Sequence[AuditRow]) -> None:
    if not rows:
        st.caption("Nothing recorded yet.")
        return
    frame = pd.DataFrame(
        [
            {
                "When": _when(r.at),
                "Who": r.actor_id,
                "Action": r.action,
                "Account": r.target_id or "",
                "Detail": ", ".join(f"{k}={v}" for k, v in sorted(r.detail.items())),
            }
            for r in rows
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def link_url(token: str) -> str:
    """The full set-password link, on the address this page was opened at."""
    base = ""
    try:
        url = st.context.url
        if url:
            parts = urlsplit(url)
            base = f"{parts.scheme}://{parts.netloc}"
    except Exception:  # noqa: BLE001 - no request context (AppTest)
        base = ""
    return f"{base}/?{SET_PASSWORD_PARAM}={token}"


def show_link(username: str, token: str) -> None:
    st.success(f"One-time link for {username} (works once, for 24 hours). Send it to them privately:")
    st.code(link_url(token), language=None)


def set_password_page(sessions: SessionService, token: str) -> bool:
    """The page a one-time link opens. True once the password is set (the caller then shows sign-in)."""
    st.title("Set your password")
    account = sessions.link_account(token)
    if account is None:
        st.error("This link has been used or has expired. Ask an administrator for a new one.")
        return False
    st.text(f"Account: {account.username}")
    with st.form("set_password"):
        password = st.text_input("New password", type="password", key="setpw_password")
        repeat = st.text_input("Repeat new password", type="password", key="setpw_repeat")
        submitted = st.form_submit_button("Set password")
    if not submitted:
        return False
    try:
        sessions.use_link(token, password, repeat)
    except SignInRefused as exc:
        st.error(exc.message)
        return False
    st.session_state[state.AUTH_NOTICE] = "Your password is set. Sign in with it now."
    return True


DEFAULT_INSTRUCTIONS_HELP = (
    "Standing instructions (a system prompt) every new chat starts with, such as a tone, a language or a role. "
    "Instructions typed for a chat when starting it win over these; a chat keeps its own instructions when "
    "these change later."
)


def default_instructions_section(chat: ChatService, principal: Principal, server_default: str) -> None:
    """The user's own default instructions for new chats: shown, edited, saved, cleared. When they have none,
    the server's (CHAT_DEFAULT_INSTRUCTIONS) apply, and the section says which those are."""
    st.subheader("Default instructions")
    if notice := st.session_state.pop(state.DEFAULT_INSTRUCTIONS_FLASH, None):
        failed, text = notice
        (st.error if failed else st.success)(text)
    if state.DEFAULT_INSTRUCTIONS not in st.session_state:
        try:
            own = chat.own_default_instructions(principal)
        except UserError as exc:
            st.error(f"Your default instructions could not be read. {exc.message}")
            return
        # Seeded through session state, not `value=`: a saved or cleared default replaces the text in place.
        st.session_state[state.DEFAULT_INSTRUCTIONS] = own or ""

    def save(text: str) -> None:
        try:
            stored = chat.set_default_instructions(principal, text)
        except UserError as exc:
            st.session_state[state.DEFAULT_INSTRUCTIONS_FLASH] = (True, exc.message)
            return
        st.session_state[state.DEFAULT_INSTRUCTIONS] = stored or ""
        st.session_state[state.DEFAULT_INSTRUCTIONS_FLASH] = (
            False,
            "Saved. New chats start with these instructions." if stored else "Cleared: " + _fallback(server_default),
        )

    with st.form("default_instructions", border=False):
        st.text_area(
            "Instructions for new chats", key=state.DEFAULT_INSTRUCTIONS, max_chars=MAX_INSTRUCTIONS_CHARS,
            help=DEFAULT_INSTRUCTIONS_HELP, placeholder="For example: answer briefly, in French.",
        )
        with st.container(horizontal=True):
            st.form_submit_button(
                "Save default instructions",
                on_click=lambda: save(str(st.session_state.get(state.DEFAULT_INSTRUCTIONS, ""))),
            )
            st.form_submit_button("Clear", key="account.default_instructions.clear", on_click=lambda: save(""))
    st.caption("When empty: " + _fallback(server_default))
    if server_default:
        st.text(server_default)


def _fallback(server_default: str) -> str:
    if server_default:
        return "new chats start with this server's default instructions, shown below."
    return "new chats start with no instructions."
