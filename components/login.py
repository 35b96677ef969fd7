"""Sign-in screens for CHAT_AUTH=local: plain HTML forms the browser posts to api/auth.py itself.

Why not Streamlit widgets: a sign-in must end in a cookie the server sets, and Streamlit cannot answer a
widget with a Set-Cookie or a redirect. A top-level form POST can, and it involves no script run, so
nothing can drop the click (streamlit-authenticator's login widget lost about one in five, racing its
cookie component's own run). The route redirects back with a reason code in the URL; this module turns
the code into the message. Passwords are checked by services/accounts.py against the credentials YAML
(streamlit-authenticator's file format and bcrypt hashes).
"""

from __future__ import annotations

import html
from urllib.parse import urlencode, urlsplit

import streamlit as st

from components import state
from services.sessions import SessionService, locked_message, wait_text

SIGN_IN_MESSAGES = {
    "invalid": "Username or password is incorrect.",
    "disabled": "This account is switched off. Ask an administrator.",
    "signed_out": "You are signed out.",
    "unavailable": "Sign-in is not available right now. Please try again in a minute.",
}
SIGN_UP_MESSAGES = {
    "setup_code": "That setup code is not right. It is printed in the server log.",
    "closed": "Sign-up is switched off here. Ask an administrator for an account.",
    "mismatch": "The two passwords do not match.",
    "account": "That account could not be created.",
}

# The forms' look: Streamlit's own inputs are not available in a plain form, so a few rules make these
# read like them. Kept small and inline (the CSP allows inline styles, not scripts: there are none).
_STYLE = """
<style>
.chat-auth-form { display: flex; flex-direction: column; gap: 0.75rem; max-width: 26rem; }
.chat-auth-form label { display: flex; flex-direction: column; gap: 0.25rem; font-size: 0.875rem; }
.chat-auth-form input { font: inherit; padding: 0.5rem 0.75rem; border-radius: 0.5rem;
  border: 1px solid rgba(49, 51, 63, 0.2); background: rgb(240, 242, 246); color: inherit; }
.chat-auth-form button { font: inherit; align-self: flex-start; padding: 0.4rem 0.9rem; border-radius: 0.5rem;
  border: 1px solid rgba(49, 51, 63, 0.2); background: rgb(255, 75, 75); color: white; cursor: pointer; }
.chat-auth-form button:hover { filter: brightness(0.95); }
.chat-auth-form button.secondary { background: white; color: inherit; }
</style>
"""


def _field(label: str, name: str, *, kind: str = "text", value: str = "", autocomplete: str = "") -> str:
    attrs = f'type="{kind}" name="{name}" value="{html.escape(value, quote=True)}"'
    if autocomplete:
        attrs += f' autocomplete="{autocomplete}"'
    return f"<label>{html.escape(label)}<input {attrs} required></label>"


def _next_field(next_url: str) -> str:
    # Where the route sends the browser back to: the page (and query) this form was shown on.
    return f'<input type="hidden" name="next" value="{html.escape(next_url, quote=True)}">'


def sign_in_form_html(username: str = "", next_url: str = "/") -> str:
    return (
        _STYLE
        + '<form class="chat-auth-form" method="post" action="/api/auth/sign-in">'
        + _next_field(next_url)
        + _field("Username", "username", value=username, autocomplete="username")
        + _field("Password", "password", kind="password", autocomplete="current-password")
        + '<button type="submit">Sign in</button></form>'
    )


def sign_up_form_html(*, first: bool, username: str = "", next_url: str = "/") -> str:
    fields = [
        _field("Username", "username", value=username, autocomplete="username"),
        _field("Display name (optional)", "display_name", autocomplete="name").replace(" required>", ">"),
        _field("Password", "password", kind="password", autocomplete="new-password"),
        _field("Repeat password", "repeat", kind="password", autocomplete="new-password"),
    ]
    if first:
        fields.insert(0, _field("Setup code", "setup_code", autocomplete="off"))
    label = "Create administrator" if first else "Create account"
    return (
        _STYLE
        + '<form class="chat-auth-form" method="post" action="/api/auth/sign-up">'
        + _next_field(next_url)
        + "".join(fields)
        + f'<button type="submit">{label}</button></form>'
    )


def sign_out_form_html() -> str:
    return (
        _STYLE
        + '<form class="chat-auth-form" method="post" action="/api/auth/sign-out">'
        + '<button type="submit" class="secondary">Log out</button></form>'
    )


# Query parameters the sign-in routes add to report an outcome: not part of the page a user came for.
OUTCOME_PARAMS = frozenset({"signin", "signup", "wait", "why", "sig", "u"})


def current_page() -> str:
    """This page's path and query without the sign-in outcome: where a form sends the browser back to."""
    path = urlsplit(st.context.url or "").path or "/"
    query = {k: v for k, v in st.query_params.to_dict().items() if k not in OUTCOME_PARAMS}
    return path + ("?" + urlencode(query) if query else "")


def _query(name: str) -> str:
    value = st.query_params.get(name)
    return value if isinstance(value, str) else ""


def _wait() -> int:
    raw = _query("wait")
    return int(raw) if raw.isdigit() and len(raw) < 7 else 0


def outcome_message(sessions: SessionService) -> tuple[str, str] | None:
    """What the last POST to the sign-in routes said, from the redirect's reason code: (kind, text)."""
    code, signup = _query("signin"), _query("signup")
    wait = _wait()
    if code == "locked":
        return "error", locked_message(wait or 60)
    if code == "invalid" and wait:
        return "error", f"{SIGN_IN_MESSAGES['invalid']} Wait {wait_text(wait)} before trying again."
    if code == "signed_out":
        return "info", SIGN_IN_MESSAGES[code]
    if code in SIGN_IN_MESSAGES:
        return "error", SIGN_IN_MESSAGES[code]
    if signup == "rate_limited":
        return "error", f"Too many attempts from your network. Try again in {wait_text(wait or 60)}."
    if signup == "account":
        why, signature = _query("why"), _query("sig")
        if why and signature and sessions.note_is_ours(why, signature):
            return "error", why
        return "error", SIGN_UP_MESSAGES["account"]
    if signup in SIGN_UP_MESSAGES:
        return "error", SIGN_UP_MESSAGES[signup]
    return None


def render_sign_in(sessions: SessionService, *, allow_signup: bool) -> None:
    """The sign-in page: the outcome of the last attempt, then the forms. While no account exists, the
    only form creates the first administrator with the setup code from the server log."""
    st.title("Sign in")
    notice = st.session_state.pop(state.AUTH_NOTICE, None)
    outcome = outcome_message(sessions)
    if outcome is not None:
        kind, text = outcome
        (st.error if kind == "error" else st.info)(text)
    elif notice:
        st.info(notice)
    username = _query("u")
    if not sessions.accounts.has_accounts():
        st.write(
            "No accounts exist yet. Create the first administrator with the one-time setup code printed in "
            "the server log (or set as CHAT_SETUP_CODE)."
        )
        st.html(sign_up_form_html(first=True, username=username, next_url=current_page()))
        return
    signing_up = bool(_query("signup"))
    st.html(sign_in_form_html("" if signing_up else username, next_url=current_page()))
    if allow_signup:
        with st.expander("New here? Create an account", expanded=signing_up):
            st.html(sign_up_form_html(first=False, username=username if signing_up else "", next_url=current_page()))
