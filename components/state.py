"""Session-state keys, in one place (pages and components import these instead of string literals)."""

PRINCIPAL = "chat.principal"
TOKEN = "chat.token"
CONVERSATION_ID = "chat.conversation_id"
DRAFT = "chat.draft"
LOGOUT_REQUESTED = "chat.logout_requested"
AUTH_NOTICE = "chat.auth_notice"
