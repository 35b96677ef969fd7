"""Conversations named by a client's own chat id (the Vercel AI SDK's `id`, which is not a UUID).

The id maps to a conversation deterministically: UUIDv5 of (the user, the client's id). Nothing extra is
stored and nothing needs a migration; the same client id gives the same conversation on every replica and
after a restart, two users' equal ids give different conversations, and a conversation that is not yet
there is created with that id (an insert that does nothing when a concurrent first request won the race).
A client that wants to continue a conversation the app already has sends its `conversation_id` instead.
"""

from __future__ import annotations

import uuid

from services.auth import Principal
from services.chat import title_from
from services.store import ChatStore, InvalidInput

# Fixed forever: changing it would detach every client chat from its conversation.
NAMESPACE = uuid.UUID("5b0c3f5e-8d0e-4d55-9a43-0b6b1f7f2d11")
MAX_CLIENT_ID_CHARS = 200


def conversation_id_for(principal: Principal, client_chat_id: str) -> uuid.UUID:
    # The unit separator cannot occur in either part (checked below), so ("a", "b\x1fc") never equals
    # ("a\x1fb", "c").
    return uuid.uuid5(NAMESPACE, f"{principal.user_id}\x1f{client_chat_id}")


def check_client_chat_id(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidInput("The chat id must be a non-empty string.")
    if len(value) > MAX_CLIENT_ID_CHARS or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidInput(f"The chat id must be at most {MAX_CLIENT_ID_CHARS} printable characters.")
    return value


class ClientChats:
    def __init__(self, store: ChatStore) -> None:
        self.store = store

    def conversation(self, principal: Principal, client_chat_id: str, first_text: str) -> uuid.UUID:
        """The conversation for the client's chat id, created (titled from `first_text`) if missing."""
        cid = conversation_id_for(principal, check_client_chat_id(client_chat_id))
        principal.ensure_fresh()
        return self.store.create_conversation(principal, title_from(first_text), conversation_id=cid).id
