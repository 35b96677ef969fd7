"""Entry point: the HTTP app (`st.App` with the API routes) and, inside a script run, page config, the auth
gate and navigation over pages/. Nothing else lives here.

`streamlit run app.py` finds `app` below by parsing this file and then imports it as a module, outside any
script run; the page code runs only inside a script run (see components/shell.py).
"""

from __future__ import annotations

import streamlit as st

from api import MIDDLEWARE, ROUTES
from components.auth_gate import current_principal, signed_out_page
from components.shell import in_script_run, page_services
from components.user_badge import render_user_badge
from services.runtime import configure_logging

configure_logging()
app = st.App(__file__, routes=ROUTES, middleware=MIDDLEWARE)


def main() -> None:
    # Page icons are emoji, not ":material/...": Streamlit turns a Material icon into a favicon URL on
    # fonts.gstatic.com that every visitor's browser fetches; an emoji becomes an inline data: SVG.
    st.set_page_config(page_title="Chat", page_icon="💬", layout="wide")
    services = page_services()
    principal = current_principal(services)
    if principal is None:
        # Until someone signs in, the only page is an empty one under the sign-in form the gate drew, so no
        # URL (and no pages/ auto-discovery) can reach a real page without a principal.
        st.navigation([st.Page(signed_out_page, title="Sign in", url_path="sign-in")], position="hidden").run()
        st.stop()
    render_user_badge(principal, services.settings.auth_mode)
    pages = [
        st.Page("pages/chat.py", title="Chat", icon="💬", default=True),
        st.Page("pages/history.py", title="History", icon="🕘"),
    ]
    if services.sessions is not None:  # local accounts: their own account page, and admin for admins
        pages.append(st.Page("pages/account.py", title="Account", icon="👤"))
        if "admin" in principal.roles:
            pages.append(st.Page("pages/admin.py", title="Admin", icon="🛠️"))
    st.navigation(pages).run()


if in_script_run():
    main()
