"""Session-state keys, in one place (pages and components import these instead of string literals)."""

PRINCIPAL = "chat.principal"
TOKEN = "chat.token"
DRAFT = "chat.draft"
# history page: the URL state the filter widgets were last synced from, and a one-shot notice
HISTORY_SYNCED = "history.synced"
HISTORY_FLASH = "history.flash"
HISTORY_PENDING_DELETE = "history.pending_delete"
MODEL = "chat.model"
CHAT_INPUT = "chat.input"
FLASH = "chat.flash"
PENDING = "chat.pending"
WINDOW_PAGES = "chat.window_pages"
CONVERSATION_PAGES = "chat.conversation_pages"
LOGOUT_REQUESTED = "chat.logout_requested"
AUTH_NOTICE = "chat.auth_notice"
CLERK_SESSION_ID = "chat.clerk_session_id"  # the Clerk session (sid) whose tokens CLERK_SECRET_KEY renews
CLERK_SIGNED_OUT = "chat.clerk_signed_out"  # a header/cookie Clerk token stays in the handshake: ignore it
# local accounts: this tab's session secret (from the cookie the websocket arrived with; AppTest seeds it),
# and a secret whose session ended, so a stale cookie is not looked up again on every run
SESSION_SECRET = "chat.session_secret"
ENDED_SESSION = "chat.ended_session"
# account and admin pages: a one-shot notice after an action, and a one-time link to show once
ACCOUNT_FLASH = "account.flash"
ADMIN_FLASH = "admin.flash"
ADMIN_LINK = "admin.link"
