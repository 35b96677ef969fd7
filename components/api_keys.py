"""The Account page's "API keys" section: create a key (its secret shown once), list keys, revoke with a
confirmation. Key names are user data: shown as text or in a dataframe, never as markdown.

The new secret is rendered in the run that created it and kept nowhere, not even in session state: the
next rerun (any click) has nothing to show, which is what "you will not see it again" promises."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import pandas as pd
import streamlit as st

from components import state
from services.api_keys import ApiKeyService
from services.auth import Principal
from services.errors import UserError
from services.store.types import ApiKey

# Expiry choices offered on the form, in days (None: the key never expires).
EXPIRY_CHOICES: dict[str, int | None] = {
    "Never": None,
    "7 days": 7,
    "30 days": 30,
    "90 days": 90,
    "1 year": 365,
}
STATUS_TEXT = {"live": "active", "revoked": "revoked", "expired": "expired"}


def _when(moment: datetime | None, empty: str) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else empty


def keys_table(keys: Sequence[ApiKey], now: datetime) -> None:
    if not keys:
        st.caption("You have no API keys yet.")
        return
    frame = pd.DataFrame(
        [
            {
                "Name": k.name,
                "Key": f"{k.prefix}…",
                "Created": _when(k.created_at, ""),
                "Last used": _when(k.last_used_at, "never"),
                "Expires": _when(k.expires_at, "never"),
                "Status": STATUS_TEXT[k.state(now)],
            }
            for k in keys
        ]
    )
    st.dataframe(frame, hide_index=True, width="stretch")


def _create_form(service: ApiKeyService, principal: Principal) -> None:
    with st.form("api_key_create", clear_on_submit=True):
        name = st.text_input("Key name", max_chars=100, placeholder="e.g. laptop script", key="apikeys.name")
        expiry = st.selectbox("Expires", list(EXPIRY_CHOICES), key="apikeys.expiry")
        create = st.form_submit_button("Create key")
    if not create:
        return
    try:
        key, secret = service.create(principal, name, EXPIRY_CHOICES[expiry])
    except UserError as exc:
        st.error(exc.message)
        return
    st.success("Key created. Copy it now: you will not see it again.")
    st.text(f"Name: {key.name}")
    st.code(secret, language=None)


def _revoke_controls(service: ApiKeyService, principal: Principal, live: Sequence[ApiKey]) -> None:
    pending = st.session_state.get(state.API_KEY_PENDING_REVOKE)
    chosen = next((k for k in live if str(k.id) == pending), None)
    if chosen is None:
        st.session_state.pop(state.API_KEY_PENDING_REVOKE, None)
        if not live:
            return
        by_id = {str(k.id): k for k in live}
        picked = st.selectbox(
            "Key to revoke",
            list(by_id),
            format_func=lambda kid: f"{by_id[kid].name} ({by_id[kid].prefix}…)",
            key="apikeys.revoke_choice",
        )
        if st.button("Revoke…", key="apikeys.revoke"):
            st.session_state[state.API_KEY_PENDING_REVOKE] = picked
            st.rerun()
        return
    st.warning("Revoke this key? Programs using it stop working at once. This cannot be undone.")
    st.text(f"{chosen.name} ({chosen.prefix}…)")
    yes, no = st.columns(2)
    if yes.button("Yes, revoke it", type="primary", key="apikeys.revoke_yes"):
        st.session_state.pop(state.API_KEY_PENDING_REVOKE, None)
        try:
            service.revoke(principal, chosen.id)
        except UserError as exc:
            st.error(exc.message)
            return
        st.session_state[state.API_KEY_FLASH] = f"Revoked the key {chosen.prefix}…"
        st.rerun()
    if no.button("Cancel", key="apikeys.revoke_cancel"):
        st.session_state.pop(state.API_KEY_PENDING_REVOKE, None)
        st.rerun()


def api_keys_section(service: ApiKeyService, principal: Principal) -> None:
    st.subheader("API keys")
    st.caption(
        "A key lets a script or another tool use this app's HTTP API as you: send it as "
        "`Authorization: Bearer sk-chat-…`. It reaches only your own conversations (no reviewer or admin "
        f"rights), and you can hold up to {service.max_live} active keys."
    )
    flash = st.session_state.pop(state.API_KEY_FLASH, None)
    if flash:
        st.success(flash)
    _create_form(service, principal)
    try:
        keys = service.list(principal)
    except UserError as exc:
        st.error(exc.message)
        return
    now = datetime.now(UTC)
    keys_table(keys, now)
    _revoke_controls(service, principal, [k for k in keys if k.state(now) == "live"])
