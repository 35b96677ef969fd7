"""Keyed cursors: signed for one user and one listing with a server-held key; anything else is refused with
InvalidCursor (never another exception), and replicas sharing the key accept each other's cursors."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.auth import Principal
from services.store import CursorCodec, InvalidCursor
from services.store.cursors import BAD_CURSOR, EARLIEST, LATEST

ALICE, BOB = Principal("user_alice"), Principal("user_bob")
WHEN = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
ROW = uuid.UUID("00000000-0000-4000-8000-000000000001")
KEY = "k" * 32


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def signed(codec_key: str, principal: Principal, scope: str, fields: object) -> str:
    """A cursor carrying arbitrary fields, correctly signed: what a leaked key (or a bug) could produce."""
    payload = json.dumps(fields, separators=(",", ":")).encode()
    message = b"\x00".join((principal.user_id.encode(), scope.encode(), payload))
    mac = hmac.new(codec_key.encode(), message, hashlib.sha256)
    return f"{b64(payload)}.{b64(mac.digest()[:16])}"


def test_round_trip_and_replicas_sharing_the_key() -> None:
    cursor = CursorCodec(KEY).encode(ALICE, "messages", WHEN, ROW)
    assert CursorCodec(KEY).decode(ALICE, "messages", cursor) == (WHEN, ROW)


@pytest.mark.parametrize(
    ("principal", "scope", "key"),
    [(BOB, "messages", KEY), (ALICE, "conversations", KEY), (ALICE, "messages", "another key of 32 characters!!")],
    ids=["other user", "other listing", "other key"],
)
def test_a_cursor_works_only_for_its_user_listing_and_key(principal: Principal, scope: str, key: str) -> None:
    cursor = CursorCodec(KEY).encode(ALICE, "messages", WHEN, ROW)
    with pytest.raises(InvalidCursor, match="page link is not valid"):
        CursorCodec(key).decode(principal, scope, cursor)


def test_a_forged_cursor_in_the_old_unkeyed_format_is_refused() -> None:
    # Before keys, anyone could build a valid cursor: the owner tag was a plain hash of scope and user id.
    owner = hashlib.sha256(f"messages\x00{ALICE.user_id}".encode()).hexdigest()[:12]
    forged = b64(json.dumps({"v": 1, "t": WHEN.isoformat(), "i": str(ROW), "o": owner}).encode())
    with pytest.raises(InvalidCursor, match=re.escape(BAD_CURSOR)):
        CursorCodec(KEY).decode(ALICE, "messages", forged)


def test_a_tampered_position_is_refused() -> None:
    body, mac = CursorCodec(KEY).encode(ALICE, "messages", WHEN, ROW).split(".")
    payload = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    payload["t"] = "2020-01-01T00:00:00+00:00"
    with pytest.raises(InvalidCursor, match=re.escape(BAD_CURSOR)):
        CursorCodec(KEY).decode(ALICE, "messages", f"{b64(json.dumps(payload).encode())}.{mac}")


@pytest.mark.parametrize(
    "fields",
    [
        {"t": 123, "i": str(ROW)},
        {"t": WHEN.isoformat(), "i": 5},
        {"t": None, "i": None},
        ["not", "an", "object"],
        {"t": "9999-12-31T23:59:59+00:00", "i": str(ROW)},
        {"t": "0001-01-01T00:00:00+00:00", "i": str(ROW)},
        {"t": "2026-01-01T00:00:00", "i": str(ROW)},
        {"t": WHEN.isoformat(), "i": "not-a-uuid"},
    ],
)
def test_signed_but_wrongly_typed_or_out_of_range_fields_are_refused(fields: object) -> None:
    with pytest.raises(InvalidCursor, match=re.escape(BAD_CURSOR)):
        CursorCodec(KEY).decode(ALICE, "messages", signed(KEY, ALICE, "messages", fields))


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_string_is_a_cursor_or_invalid_cursor_never_a_crash(text: str) -> None:
    try:
        CursorCodec(KEY).decode(ALICE, "messages", text)
    except InvalidCursor:
        pass


def test_keys_shorter_than_sixteen_characters_are_refused_and_bytes_keys_work() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        CursorCodec("k" * 15)
    cursor = CursorCodec("k" * 16).encode(ALICE, "messages", WHEN, ROW)  # exactly the minimum
    assert CursorCodec(b"k" * 16).decode(ALICE, "messages", cursor) == (WHEN, ROW)  # str and bytes keys agree


@pytest.mark.parametrize("cursor", ["a.b", "abcde.f", "=.="])
def test_a_cursor_that_is_not_base64_is_refused_with_the_message(cursor: str) -> None:
    with pytest.raises(InvalidCursor, match=re.escape(BAD_CURSOR)):
        CursorCodec(KEY).decode(ALICE, "messages", cursor)


@pytest.mark.parametrize("cursor", [None, 123, b"abc.def", ["a.b"]])
def test_a_cursor_that_is_not_text_is_refused(cursor: object) -> None:
    with pytest.raises(InvalidCursor, match=re.escape(BAD_CURSOR)):
        CursorCodec(KEY).decode(ALICE, "messages", cursor)  # type: ignore[arg-type]


def test_many_positions_round_trip() -> None:
    # Every length of payload and MAC encoding (base64 padding is stripped and restored).
    codec = CursorCodec(KEY)
    for n in range(300):
        when = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(microseconds=n * 7_919_113)
        row = uuid.uuid4()
        assert codec.decode(ALICE, f"scope-{n}", codec.encode(ALICE, f"scope-{n}", when, row)) == (when, row)


def test_the_range_of_positions_is_inclusive_at_the_start_and_exclusive_at_the_end() -> None:
    codec = CursorCodec(KEY)
    assert codec.decode(ALICE, "messages", codec.encode(ALICE, "messages", EARLIEST, ROW)) == (EARLIEST, ROW)
    with pytest.raises(InvalidCursor):
        codec.decode(ALICE, "messages", codec.encode(ALICE, "messages", LATEST, ROW))
