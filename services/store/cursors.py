"""Keyset cursors: the (created_at, id) of a page's last row, signed for one user and one listing.

A cursor is `<payload>.<mac>`, both base64url: the payload is `{"t": <ISO instant>, "i": <uuid>}` and the
MAC is HMAC-SHA256 over the user id, the listing's scope and the payload, with a key only the servers hold
(`<data dir>/keys/cursor-key`, or CHAT_CURSOR_KEY shared by replicas). RLS already keeps others' rows out;
the MAC makes a cursor unforgeable and useless in another account or listing, so a damaged, forged or
foreign link is refused with a clear message instead of silently showing some other position.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime

from services.auth import Principal
from services.config import MIN_CURSOR_KEY_CHARS
from services.store.types import InvalidCursor

MAX_CURSOR_CHARS = 256
MAC_BYTES = 16
# Instants a stored row can have; anything outside is a forged or damaged cursor, not a position.
EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
BAD_CURSOR = "That page link is not valid (it may be damaged or from another account)."


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class CursorCodec:
    """Signs and checks cursors with one key. Every replica serving the same users needs the same key."""

    def __init__(self, key: bytes | str | None = None) -> None:
        # No key: a random one, so cursors last as long as this object (tests, scripts). The app passes
        # a persistent key (services/runtime.py).
        raw = secrets.token_bytes(32) if key is None else key.encode() if isinstance(key, str) else key
        if len(raw) < MIN_CURSOR_KEY_CHARS:
            raise ValueError(f"a cursor key needs at least {MIN_CURSOR_KEY_CHARS} bytes")
        self._key = raw

    def _mac(self, principal: Principal, scope: str, payload: bytes) -> bytes:
        message = b"\x00".join((principal.user_id.encode(), scope.encode(), payload))
        return hmac.new(self._key, message, hashlib.sha256).digest()[:MAC_BYTES]

    def encode(self, principal: Principal, scope: str, created_at: datetime, row_id: uuid.UUID) -> str:
        payload = json.dumps({"t": created_at.isoformat(), "i": str(row_id)}, separators=(",", ":")).encode()
        return f"{_b64(payload)}.{_b64(self._mac(principal, scope, payload))}"

    def decode(self, principal: Principal, scope: str, cursor: str) -> tuple[datetime, uuid.UUID]:
        if not isinstance(cursor, str) or not 0 < len(cursor) <= MAX_CURSOR_CHARS or cursor.count(".") != 1:
            raise InvalidCursor(BAD_CURSOR)
        body, mac = cursor.split(".")
        try:
            payload, given = _unb64(body), _unb64(mac)
        except (binascii.Error, ValueError):
            raise InvalidCursor(BAD_CURSOR) from None
        if not hmac.compare_digest(given, self._mac(principal, scope, payload)):
            raise InvalidCursor(BAD_CURSOR)
        # Signed by us, so well-formed unless the key leaked; checked strictly anyway (typed fields, bounds).
        try:
            fields = json.loads(payload)
            if not isinstance(fields, dict) or not all(isinstance(fields.get(k), str) for k in ("t", "i")):
                raise ValueError
            created_at = datetime.fromisoformat(fields["t"])
            row_id = uuid.UUID(fields["i"])
        except (ValueError, UnicodeDecodeError):
            raise InvalidCursor(BAD_CURSOR) from None
        if created_at.tzinfo is None or not EARLIEST <= created_at < LATEST:
            raise InvalidCursor(BAD_CURSOR)
        return created_at, row_id
