"""Opaque keyset cursors: the (created_at, id) of a page's last row, tied to the user and the listing.

A cursor carries no secret: RLS already keeps others' rows out. The owner tag only lets us tell a user
"this link is from another account or listing" instead of silently showing page 1.
"""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from datetime import datetime

from services.auth import Principal
from services.store.types import InvalidCursor

MAX_CURSOR_CHARS = 256


def _owner_tag(principal: Principal, scope: str) -> str:
    return hashlib.sha256(f"{scope}\x00{principal.user_id}".encode()).hexdigest()[:12]


def encode_cursor(principal: Principal, scope: str, created_at: datetime, row_id: uuid.UUID) -> str:
    payload = {"v": 1, "t": created_at.isoformat(), "i": str(row_id), "o": _owner_tag(principal, scope)}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(principal: Principal, scope: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    bad = InvalidCursor("That page link is not valid (it may be damaged or from another account).")
    if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_CHARS:
        raise bad
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        payload = json.loads(raw)
        if not isinstance(payload, dict) or payload.get("v") != 1:
            raise ValueError
        created_at = datetime.fromisoformat(payload["t"])
        row_id = uuid.UUID(payload["i"])
        owner = payload["o"]
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise bad from None
    if created_at.tzinfo is None or owner != _owner_tag(principal, scope):
        raise bad
    return created_at, row_id
