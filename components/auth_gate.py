"""The auth gate app.py runs before any page: returns the verified Principal or renders the sign-in.

Every script run re-verifies the token kept in session state, so an expired or revoked sign-in stops
at the next interaction; the store also calls `principal.ensure_fresh()` before each transaction.
The chat draft (state.DRAFT) is never touched here, so signing in again loses nothing.
"""

from __future__ import annotations

import importlib.util
import logging
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import streamlit as st

from components import login, state
from components.account import SET_PASSWORD_PARAM, set_password_page
from services.accounts import AccountError
from services.auth import AuthError, Principal
from services.errors import UserError
from services.identity import COOKIE_NAME, LOCAL_USER, Identity, signup_allowed, startup_problem
from services.runtime import Services

log = logging.getLogger(__name__)

_MAIN_SCRIPT = str(Path(__file__).resolve().parents[1] / "app.py")
EXPIRED_NOTICE = "Your sign-in has expired. Please sign in again; your draft is kept."
ENDED_NOTICE = (
    "Your session has ended (signed out, or unused for too long). Please sign in again; your draft is kept."
)
__all__ = [
    "DEEP_LINK_PATHS",
    "LOCAL_USER",
    "current_principal",
    "request_logout",
    "require_principal",
    "signed_out_page",
    "signed_out_pages",
]


def signed_out_page() -> None:
    """The page app.py navigates to while nobody is signed in: the gate has already drawn the sign-in."""


def require_principal() -> Principal:
    """First line of every page: the Principal the gate verified on this run, or stop.

    With a `pages/` folder next to app.py, a freshly started Streamlit process serves `/chat` or
    `/history` by running that file directly (multipage "v1" mode) until app.py has run once, so the
    gate in app.py can be skipped. A page that finds no principal sends the browser through app.py,
    which leaves v1 mode for good and shows the sign-in."""
    principal = st.session_state.get(state.PRINCIPAL)
    if isinstance(principal, Principal):
        return principal
    if getattr(_pages_manager(), "uses_pages_directory", None):
        # The page ran without app.py (a fresh server's first deep link): register the signed-out navigation
        # and go to its page of the same path with the same query, so the deep link survives sign-in too.
        _switch_to_signed_out_page()
    try:
        st.switch_page(_MAIN_SCRIPT)
    except Exception:  # noqa: BLE001 - app.py is not a page here (normal navigation): just stop
        pass
    st.stop()
    raise AssertionError("unreachable")  # st.stop() raises; this keeps the return type honest


def _pages_manager() -> Any:
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return None
    return PagesManager


def _switch_to_signed_out_page() -> None:
    pages = signed_out_pages()
    try:
        st.navigation(pages, position="hidden")
        path = urlsplit(st.context.url or "").path.rstrip("/").rsplit("/", 1)[-1]
        target = next((page for page in pages if page.url_path == path), pages[0])
        query = st.query_params.to_dict()
    except Exception:  # noqa: BLE001 - a Streamlit internal moved: fall back to the main script
        return
    st.switch_page(target, query_params=query)


def request_logout() -> None:
    """Button callback (Clerk mode; local accounts sign out with a form post to /api/auth/sign-out, which
    also deletes the cookie): the next run of the gate signs out."""
    st.session_state[state.LOGOUT_REQUESTED] = True


def _leave_pages_folder_mode() -> None:
    """With a `pages/` folder next to app.py, a fresh Streamlit process starts in multipage "v1" mode and
    only leaves it when app.py first calls st.navigation. That first run then ends on a different page id
    than the browser sends back, and Streamlit drops the widget values of the first interaction (a new
    user's sign-up form came back empty). Registering our navigation and rerunning once makes the first
    run like every later one. Uses a Streamlit internal; if it moves, this quietly does nothing."""
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:
        return
    if getattr(PagesManager, "uses_pages_directory", None):
        st.navigation(signed_out_pages(), position="hidden")
        st.rerun()


# The URL paths of app.py's pages besides the default one (Chat, at "/", whose ?c= link keeps its query).
DEEP_LINK_PATHS = ("history",)


def signed_out_pages() -> list[Any]:
    """The navigation while nobody is signed in: every page is empty under the sign-in form the gate drew,
    so no URL (and no pages/ auto-discovery) reaches a real page without a principal. Each real page's URL
    path is kept: a deep link (/history?q=...) stays in the address bar through sign-in, and the signed-in
    navigation then finds the real page by that same path (Streamlit keys a page by its URL path)."""
    pages = [st.Page(signed_out_page, title="Sign in", url_path="sign-in", default=True)]
    return pages + [st.Page(signed_out_page, title="Sign in", url_path=path) for path in DEEP_LINK_PATHS]


def current_principal(services: Services) -> Principal | None:
    _leave_pages_folder_mode()
    identity = services.identity
    problem = startup_problem(identity, st.get_option("server.address"))
    if problem:
        st.error(problem)
        _forget_principal()
        return None

    if identity.mode == "none":
        principal: Principal | None = LOCAL_USER
    elif identity.mode == "local":
        principal = _local(services, identity)
    else:
        principal = _clerk(identity)

    if principal is None:
        _forget_principal()
        _keep_typed_message()
        return None
    # The one writer of the signed-in principal: pages read it through require_principal().
    st.session_state[state.PRINCIPAL] = principal
    return principal


def _keep_typed_message() -> None:
    """A message sent just as the sign-in expired reaches this run, but the chat page will not run to take
    it: park it as the draft, which the chat page puts back into the input box after signing in again."""
    try:
        typed = st.session_state.get(state.CHAT_INPUT)
    except Exception:  # noqa: BLE001 - widget state from an older run can be unreadable; nothing to keep
        return
    text = getattr(typed, "text", typed)
    if isinstance(text, str) and text.strip() and not st.session_state.get(state.DRAFT):
        st.session_state[state.DRAFT] = text


def _forget_principal() -> None:
    st.session_state.pop(state.PRINCIPAL, None)


def _session_secret() -> str | None:
    """This tab's session secret: kept in session state once found, else the cookie the websocket
    connection arrived with (a snapshot: the server never changes it while the session lives)."""
    secret = st.session_state.get(state.SESSION_SECRET)
    if isinstance(secret, str) and secret:
        return secret
    try:
        cookie = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no request context (bare mode, AppTest)
        cookie = None
    if isinstance(cookie, str) and cookie and cookie != st.session_state.get(state.ENDED_SESSION):
        return cookie
    return None


def _local(services: Services, identity: Identity) -> Principal | None:
    sessions = services.sessions
    if sessions is None:
        return None
    secret = _session_secret()
    if secret is not None:
        try:
            resumed = sessions.resume(secret, st.session_state.get(state.TOKEN))
        except UserError as exc:
            st.title("Sign in")
            st.warning(f"{exc.message} Your draft is kept.")
            return None
        if resumed is not None:
            st.session_state[state.SESSION_SECRET] = secret
            st.session_state[state.TOKEN] = resumed.token
            return resumed.principal
        # Revoked (Log out elsewhere, a password change, an administrator), expired or idle too long.
        if st.session_state.pop(state.TOKEN, None) is not None:
            st.session_state[state.AUTH_NOTICE] = ENDED_NOTICE
        st.session_state.pop(state.SESSION_SECRET, None)
        st.session_state[state.ENDED_SESSION] = secret
    link = st.query_params.get(SET_PASSWORD_PARAM)
    if isinstance(link, str) and link:
        if not set_password_page(sessions, link):
            return None
        del st.query_params[SET_PASSWORD_PARAM]
    allow = signup_allowed(services.settings, st.get_option("server.address"))
    try:
        login.render_sign_in(sessions, allow_signup=allow)
    except AccountError as exc:
        st.error(exc.message)
    return None


# --- clerk ---------------------------------------------------------------------------------------------


def _oidc_token() -> str | None:
    """The ID token from Streamlit's OIDC login (needs `expose_tokens` in [auth])."""
    try:
        if st.user.is_logged_in:
            tokens = st.user.tokens
            token = tokens.get("id") if tokens else None
            if isinstance(token, str) and token:
                return token
    except Exception:  # noqa: BLE001 - st.user without [auth] configured, or without Authlib
        pass
    return None


def _session_token() -> str | None:
    """A Clerk session token from the Authorization header or the `__session` cookie. Both are the
    websocket handshake's snapshot: a long-lived tab keeps the token it connected with."""
    try:
        auth = st.context.headers.get("Authorization")
        if isinstance(auth, str) and auth[:7].lower() == "bearer " and auth[7:].strip():
            return auth[7:].strip()
        cookie = st.context.cookies.get("__session")
        if isinstance(cookie, str) and cookie:
            return cookie
    except Exception:  # noqa: BLE001 - no request context (bare mode)
        pass
    return None


def _oidc_available() -> bool:
    try:
        configured = "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file
        configured = False
    return configured and importlib.util.find_spec("authlib") is not None


def _clerk(identity: Identity) -> Principal | None:
    if st.session_state.pop(state.LOGOUT_REQUESTED, False):
        st.session_state.pop(state.TOKEN, None)
        st.session_state.pop(state.CLERK_SESSION_ID, None)
        # A header/cookie token stays in this session's handshake snapshot: ignore it from now on.
        st.session_state[state.CLERK_SIGNED_OUT] = True
        st.session_state[state.AUTH_NOTICE] = "You are signed out."
        if _oidc_token() is not None:
            st.logout()  # clears Streamlit's identity cookie and reruns
        return None
    renewed = _renewed_clerk_session(identity)
    if renewed is not None:
        return renewed
    if st.session_state.get(state.CLERK_SESSION_ID) and identity.clerk_renewer is not None:
        return None  # Clerk could not be reached: _renewed_clerk_session said so, the work is kept
    oidc_token = _oidc_token()
    if oidc_token is not None and identity.oidc_verifier is None:
        st.title("Sign in")
        st.error(
            "Streamlit's sign-in returned a Clerk ID token, but CLERK_AUDIENCE is not set: set it to the "
            "OAuth client id of your Clerk application (the client_id under [auth.clerk] in secrets.toml)."
        )
        return None
    session_token = None if st.session_state.get(state.CLERK_SIGNED_OUT) else _session_token()
    candidates = [(oidc_token, identity.oidc_verifier), (session_token, identity.verifier)]
    for token, verifier in candidates:
        if token is None or verifier is None:
            continue
        try:
            principal = verifier.verify(token)
        except AuthError as exc:
            if exc.reason == "jwks_unavailable":
                st.title("Sign in")
                st.warning("We cannot verify sign-in right now. Please try again in a minute; your draft is kept.")
                return None
            log.info("clerk token rejected: %s", exc.reason)
            st.session_state[state.AUTH_NOTICE] = EXPIRED_NOTICE if exc.reason == "expired" else exc.message
            continue
        st.session_state[state.TOKEN] = token
        sid = principal.claims.get("sid")
        if identity.clerk_renewer is not None and isinstance(sid, str) and verifier is identity.verifier:
            st.session_state[state.CLERK_SESSION_ID] = sid
        return principal
    _clerk_sign_in_page()
    return None


# A Clerk token with less than this left is replaced before the run uses it.
CLERK_RENEW_BEFORE_S = 20


def _renewed_clerk_session(identity: Identity) -> Principal | None:
    """With CLERK_SECRET_KEY: the tab's Clerk token while it has life left, else a new one from Clerk's
    Backend API for the same Clerk session. None (and the session forgotten) when Clerk says the session is
    over; None with a warning, session kept, when Clerk cannot be reached."""
    renewer = identity.clerk_renewer
    sid = st.session_state.get(state.CLERK_SESSION_ID)
    if renewer is None or not isinstance(sid, str) or st.session_state.get(state.CLERK_SIGNED_OUT):
        return None
    token = st.session_state.get(state.TOKEN)
    if isinstance(token, str):
        try:
            current = renewer.verifier.verify(token)
        except AuthError:
            current = None
        if (
            current is not None
            and current.claims.get("sid") == sid
            and current.expires_at is not None
            and current.expires_at.timestamp() - time.time() > CLERK_RENEW_BEFORE_S
        ):
            return current
    try:
        renewed = renewer.renew(sid)
    except AuthError as exc:
        st.title("Sign in")
        st.warning(f"{exc.message} Your draft is kept.")
        return None
    if renewed is None:
        st.session_state.pop(state.CLERK_SESSION_ID, None)
        st.session_state.pop(state.TOKEN, None)
        st.session_state[state.AUTH_NOTICE] = "Your Clerk session has ended. Please sign in again; your draft is kept."
        return None
    principal, fresh = renewed
    st.session_state[state.TOKEN] = fresh
    return principal


def _clerk_sign_in_page() -> None:
    st.title("Sign in")
    notice = st.session_state.pop(state.AUTH_NOTICE, None)
    if notice:
        st.info(notice)
    if _oidc_available():
        st.button("Sign in with Clerk", on_click=st.login, args=("clerk",), type="primary")
    else:
        st.write(
            "This app signs in with Clerk. Open it through your Clerk-protected site, or configure "
            "Streamlit's OIDC login ([auth.clerk] in .streamlit/secrets.toml, with the Authlib package)."
        )
