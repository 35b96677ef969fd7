"""The auth gate app.py runs before any page: returns the verified Principal or renders the sign-in."""

from __future__ import annotations

import streamlit as st

from components import state
from services.auth import Principal
from services.runtime import Services

LOCAL_USER = Principal(user_id="local-user", claims={"roles": ["reviewer"], "name": "Local user"})


def current_principal(services: Services) -> Principal | None:
    if services.settings.auth_mode == "none":
        st.session_state[state.PRINCIPAL] = LOCAL_USER
        return LOCAL_USER
    st.info("Sign-in is not available yet in this build.")
    return None
