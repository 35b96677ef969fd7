"""Entry point: the HTTP app (`st.App` with the API routes) and, inside a script run, page config, the auth
gate and navigation over pages/. Nothing else lives here.

`streamlit run app.py` finds `app` below by parsing this file and then imports it as a module, outside any
script run; the page code runs only inside a script run (see components/shell.py).
"""

from __future__ import annotations

import logging

import streamlit as st

from api import MIDDLEWARE, ROUTES
from components import state
from components.auth_gate import DEEP_LINK_PATHS, current_principal, signed_out_pages
from components.shell import in_script_run, page_services
from components.user_badge import render_user_badge
from services.auth import Principal
from services.error_tracking import report_script_error
from services.errors import UserError
from services.logs import new_request_id
from services.runtime import Services, configure_logging

configure_logging()
log = logging.getLogger(__name__)
app = st.App(__file__, routes=ROUTES, middleware=MIDDLEWARE, on_script_error=report_script_error)


def remember_name(services: Services, principal: Principal) -> None:
    """Once per session and user: keep the name from the token, so reviewers see names, not ids."""
    if st.session_state.get(state.NAME_SAVED_FOR) == principal.user_id:
        return
    try:
        services.history.remember_name(principal)
    except UserError as exc:  # a name is a label: never block the app for it
        log.warning("display name not saved: %s", exc.message)
    st.session_state[state.NAME_SAVED_FOR] = principal.user_id


def main() -> None:
    new_request_id()  # every log line of this page run (a chat turn included) carries it
    # Page icons are emoji, not ":material/...": Streamlit turns a Material icon into a favicon URL on
    # fonts.gstatic.com that every visitor's browser fetches; an emoji becomes an inline data: SVG.
    st.set_page_config(page_title="Chat", page_icon="💬", layout="wide")
    services = page_services()
    principal = current_principal(services)
    if principal is None:
        st.navigation(signed_out_pages(), position="hidden").run()
        st.stop()
    render_user_badge(principal, services.settings.auth_mode)
    remember_name(services, principal)
    pages = [
        st.Page("pages/chat.py", title="Chat", icon="💬", default=True),
        # the same path as in the signed-out navigation, so a deep link to it survives sign-in
        st.Page("pages/history.py", title="History", icon="🕘", url_path=DEEP_LINK_PATHS[0]),
    ]
    # Account: everyone's default instructions; local accounts manage everything there, Clerk users their API
    # keys. Admin: local admins only.
    pages.append(st.Page("pages/account.py", title="Account", icon="👤"))
    if services.sessions is not None and "admin" in principal.roles:
        pages.append(st.Page("pages/admin.py", title="Admin", icon="🛠️"))
    st.navigation(pages).run()


if in_script_run():
    main()
