"""Session-state keys, in one place (pages and components import these instead of string literals)."""

PRINCIPAL = "chat.principal"
TOKEN = "chat.token"
CONVERSATION_ID = "chat.conversation_id"
DRAFT = "chat.draft"
SERVICES = "chat.services"
# history page: the URL state the filter widgets were last synced from, and a one-shot notice
HISTORY_SYNCED = "history.synced"
HISTORY_FLASH = "history.flash"
HISTORY_PENDING_DELETE = "history.pending_delete"
