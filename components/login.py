"""Sign-in screens for CHAT_AUTH=local: streamlit-authenticator's login form over the credentials YAML,
our "Create account" form, and the sign-out that clears both. Every path ends in a token from the
local issuer; the gate turns tokens into Principals with `verify`, never these widgets."""

from __future__ import annotations

import logging

import streamlit as st
import streamlit_authenticator as stauth

from components import state
from services.accounts import AccountError
from services.identity import COOKIE_NAME, Identity

log = logging.getLogger(__name__)



def _authenticator(identity: Identity, token_ttl_s: int) -> stauth.Authenticate:
    if identity.accounts is None or identity.cookie_key is None:
        raise RuntimeError("local sign-in is not configured")
    # The re-login cookie lives no longer than a token, so "remember me" never outlasts a sign-in.
    return stauth.Authenticate(
        identity.accounts.credentials(),
        cookie_name=COOKIE_NAME,
        cookie_key=identity.cookie_key,
        cookie_expiry_days=token_ttl_s / 86_400,
        auto_hash=False,
    )


def _store_token(identity: Identity, username: str) -> bool:
    """Issue a local token for `username`; False if that account no longer exists. The gate verifies the
    token (once) and is the only writer of the principal."""
    if identity.accounts is None or identity.issuer is None:
        return False
    account = identity.accounts.get(username)
    if account is None:
        return False
    st.session_state[state.TOKEN] = identity.issuer.issue(account)
    return True


def forget_library_login() -> None:
    """Make streamlit-authenticator show its form again and ignore its re-login cookie this session."""
    for key in state.AUTHENTICATOR_KEYS:
        st.session_state[key] = None
    st.session_state[state.AUTHENTICATOR_LOGOUT] = True


def sign_out() -> None:
    """Drop our token and the library's login; the next login form asks the browser to delete the
    re-login cookie. The chat draft (state.DRAFT) is deliberately left alone."""
    st.session_state.pop(state.TOKEN, None)
    forget_library_login()
    st.session_state[state.LOGIN_DELETE_COOKIE] = True


def render_sign_in(identity: Identity, *, allow_signup: bool, token_ttl_s: int, users_file: str) -> bool:
    """Render the sign-in page. True when this run signed someone in (a token is now in session state);
    the page is then taken off again, because the app renders below in this same run."""
    slot = st.empty()
    with slot.container():
        signed_in = _sign_in_page(identity, allow_signup=allow_signup, token_ttl_s=token_ttl_s, users_file=users_file)
    if signed_in:
        slot.empty()
    return signed_in


def _sign_in_page(identity: Identity, *, allow_signup: bool, token_ttl_s: int, users_file: str) -> bool:
    if identity.accounts is None:
        return False
    st.title("Sign in")
    notice = st.session_state.pop(state.AUTH_NOTICE, None)
    if notice:
        st.info(notice)
    try:
        has_accounts = identity.accounts.has_accounts()
    except AccountError as exc:
        st.error(exc.message)
        return False

    if not has_accounts:
        if not allow_signup:
            st.warning(
                f"There are no accounts yet and sign-up is switched off (CHAT_ALLOW_SIGNUP=false). "
                f"Add users to {users_file} (CHAT_USERS_FILE) or set CHAT_ALLOW_SIGNUP=true."
            )
            return False
        st.write("No accounts exist yet. Create the first one: it becomes the reviewer account.")
        return _signup_form(identity)

    if _login_form(identity, token_ttl_s):
        return True
    if allow_signup:
        with st.expander("New here? Create an account"):
            return _signup_form(identity)
    return False


def _login_form(identity: Identity, token_ttl_s: int) -> bool:
    authenticator = _authenticator(identity, token_ttl_s)
    if st.session_state.pop(state.LOGIN_DELETE_COOKIE, False):
        try:
            authenticator.cookie_controller.delete_cookie()
        except Exception:  # noqa: BLE001 - best effort; the session already ignores the cookie
            log.warning("could not delete the re-login cookie", exc_info=True)
    try:
        authenticator.login(location="main", key="login")
    except Exception:  # noqa: BLE001
        # A re-login cookie the library cannot decode raises from inside login(); ignore the cookie
        # for this session and show the plain form rather than a stack trace.
        log.warning("login widget failed; retrying without the re-login cookie", exc_info=True)
        forget_library_login()
        authenticator.login(location="main", key="login")

    status = st.session_state.get(state.AUTHENTICATOR_STATUS)
    if status is False:
        st.error("Username or password is incorrect.")
        return False
    if status and st.session_state.get(state.AUTHENTICATOR_USERNAME):
        if _store_token(identity, str(st.session_state[state.AUTHENTICATOR_USERNAME])):
            return True
        forget_library_login()
        st.error("That account no longer exists.")
    return False


def _signup_form(identity: Identity) -> bool:
    if identity.accounts is None:
        return False
    with st.form("signup", clear_on_submit=False):
        st.subheader("Create account")
        username = st.text_input("Username", key="signup_username")
        name = st.text_input("Display name (optional)", key="signup_name")
        password = st.text_input("Password", type="password", key="signup_password")
        repeat = st.text_input("Repeat password", type="password", key="signup_repeat")
        submitted = st.form_submit_button("Create account")
    if not submitted:
        return False
    if password != repeat:
        st.error("The two passwords do not match.")
        return False
    try:
        account = identity.accounts.create(username, password, name=name)
    except AccountError as exc:
        st.error(exc.message)
        return False
    log.info("created local account %s (roles: %s)", account.username, ",".join(account.roles) or "-")
    return _store_token(identity, account.username)
