"""Storage: protocols sized for their callers (`protocols.py`), value types and errors (`types.py`), input
checks (`checks.py`) and cursors (`cursors.py`); backends one per file (`postgres.py`; `supabase.py` later).

Callers import from here; the names below are the package's public surface.
"""

from __future__ import annotations

from services.store.checks import (
    MAX_MODEL_CHARS,
    MAX_PAGE,
    MAX_QUERY_CHARS,
    MAX_STORED_CHARS,
    MAX_TITLE_CHARS,
    check_instant,
    check_limit,
    check_query,
    check_role,
    check_status,
    check_text,
    clean_model,
    clean_title,
    parse_uuid,
)
from services.store.cursors import CursorCodec
from services.store.protocols import ChatStore, ConversationReader, RateLimitCounter, ReviewStore, Store
from services.store.types import (
    ROLES,
    STATUSES,
    Conversation,
    HistoryPage,
    HistoryRow,
    InvalidCursor,
    InvalidInput,
    Message,
    MessageFilter,
    NotFound,
    Page,
    RequestCount,
    Role,
    Status,
    StoreError,
    StoreUnavailable,
    UsageRow,
)

__all__ = [
    "MAX_MODEL_CHARS",
    "MAX_PAGE",
    "MAX_QUERY_CHARS",
    "MAX_STORED_CHARS",
    "MAX_TITLE_CHARS",
    "ROLES",
    "STATUSES",
    "ChatStore",
    "Conversation",
    "ConversationReader",
    "CursorCodec",
    "HistoryPage",
    "HistoryRow",
    "InvalidCursor",
    "InvalidInput",
    "Message",
    "MessageFilter",
    "NotFound",
    "Page",
    "RateLimitCounter",
    "RequestCount",
    "ReviewStore",
    "Role",
    "Status",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "UsageRow",
    "check_instant",
    "check_limit",
    "check_query",
    "check_role",
    "check_status",
    "check_text",
    "clean_model",
    "clean_title",
    "parse_uuid",
]
