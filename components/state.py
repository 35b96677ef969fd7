"""Session-state keys, in one place (pages and components import these instead of string literals)."""

PRINCIPAL = "chat.principal"
TOKEN = "chat.token"
DRAFT = "chat.draft"
NARROW_CHAT_PICK = "chat.narrow_pick"  # the phone-only conversation picker (components/chat.py)
# history page: the URL state the filter widgets were last synced from, and a one-shot notice
HISTORY_SYNCED = "history.synced"
HISTORY_FLASH = "history.flash"
HISTORY_PENDING_DELETE = "history.pending_delete"
# history page widgets: synced from the URL and read back to write the URL
HISTORY_QUERY = "history.q"
HISTORY_CONVERSATION = "history.conversation"
HISTORY_ROLE = "history.role"
HISTORY_MODEL = "history.model"
HISTORY_STATUS = "history.status"
HISTORY_FROM = "history.from"
HISTORY_TO = "history.to"
HISTORY_LIMIT = "history.limit"
HISTORY_ALL_USERS = "history.all_users"
HISTORY_FEEDBACK = "history.feedback"
HISTORY_VIEW = "history.view"
HISTORY_DELETE_TYPED = "history.delete.all.typed"
MODEL = "chat.model"
CHAT_INPUT = "chat.input"
FLASH = "chat.flash"
PENDING_FILES = "chat.pending_files"  # files kept after a refused send, sent with the next message
PENDING = "chat.pending"
EXAMPLE = "chat.example"  # an example prompt clicked on the first screen, sent on the next run
WINDOW_PAGES = "chat.window_pages"
# the message tree: which user message is being edited (its id), and an edit saved for the next run
EDITING = "chat.editing"
PENDING_EDIT = "chat.pending_edit"
# managing the open conversation and the sidebar list
CONVERSATION_FILTER = "chat.conversation_filter"
RENAMING = "chat.renaming"
RENAME_TEXT = "chat.rename_text"
CONFIRM_DELETE = "chat.confirm_delete"
NEW_INSTRUCTIONS = "chat.instructions.new"  # the instructions box of a chat not started yet
CONVERSATION_PAGES = "chat.conversation_pages"
LOGOUT_REQUESTED = "chat.logout_requested"
NAME_SAVED_FOR = "chat.name_saved_for"  # the user id whose display name this session has kept
AUTH_NOTICE = "chat.auth_notice"
CLERK_SESSION_ID = "chat.clerk_session_id"  # the Clerk session (sid) whose tokens CLERK_SECRET_KEY renews
CLERK_SIGNED_OUT = "chat.clerk_signed_out"  # a header/cookie Clerk token stays in the handshake: ignore it
# local accounts: this tab's session secret (from the cookie the websocket arrived with; AppTest seeds it),
# and a secret whose session ended, so a stale cookie is not looked up again on every run
SESSION_SECRET = "chat.session_secret"
ENDED_SESSION = "chat.ended_session"
# account and admin pages: a one-shot notice after an action, and a one-time link to show once
ACCOUNT_FLASH = "account.flash"
# account page, default instructions for new chats: the text box, and a one-shot notice (failed?, text)
DEFAULT_INSTRUCTIONS = "account.default_instructions"
DEFAULT_INSTRUCTIONS_FLASH = "account.default_instructions.flash"
ADMIN_FLASH = "admin.flash"
ADMIN_LINK = "admin.link"
# account page, API keys: a one-shot notice, and the key whose revocation waits for confirmation
API_KEY_FLASH = "apikeys.flash"
API_KEY_PENDING_REVOKE = "apikeys.pending_revoke"
REFRESH_MODELS = "chat.refresh_models"
# feedback on replies: the stored comment each comment box was last filled from (message id -> text), so a
# rerun refills a box only when the stored comment changed, never over what the user is typing
FEEDBACK_SYNCED = "chat.feedback_synced"
