"""The Store protocol over Supabase's Data API with supabase-py, scoped by row-level security (issue 16).

(Over 400 lines on purpose, like postgres.py: one file per backend, one small method per operation.)

Every operation is ONE request: a single-table read or write through the query builder, or one `.rpc()`
of the SQL functions that the Postgres backend runs too (supabase/migrations/20261128001700_app_tokens.sql),
so both backends run the same SQL under the same policies. Each request carries:

- `apikey`: the project's publishable key (SUPABASE_ANON_KEY), which only gets a request through the
  gateway;
- `Authorization: Bearer <token>`: a short-lived RS256 token this app minted (services/token_minter.py)
  with the claims of services/app_tokens.py, for the verified principal, or the narrow sign-in token.
  Clerk's tokens never leave the app.

A supabase-py client holds auth state (headers), so one is made per request (about 0.1 ms) and never
shared; only the HTTP connection pool (an httpx.Client, which holds no auth state here) is shared.

Failing fast: postgrest-py retries GET/HEAD requests that fail at the network level or answer 503/520, up
to 3 times with sleeps of 1, 2 and 4 s (postgrest/_sync/request_builder.py `send_with_retry`); that is
turned off (`postgrest_client_retry=False`), and every request has a SUPABASE_TIMEOUT_S budget, so an
outage is a StoreUnavailable within that time instead of a page frozen for 7 s or more. The only retry is
for a token Supabase calls expired: it is minted again and the request repeated once.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import logging
import re
import types
import typing
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields
from datetime import UTC, date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from postgrest.exceptions import APIError
from supabase.lib.client_options import SyncClientOptions

from services.auth import Principal
from services.config import Settings
from services.store.checks import (
    MAX_NAME_LOOKUP,
    MAX_PATH,
    MAX_STORED_CHARS,
    check_attachment,
    check_feedback_filter,
    check_instant,
    check_limit,
    check_message_ids,
    check_query,
    check_rating,
    check_role,
    check_status,
    check_text,
    clean_display_name,
    clean_feedback_comment,
    clean_instructions,
    clean_key_name,
    clean_model,
    clean_title,
    parse_uuid,
)
from services.store.cursors import CursorCodec
from services.store.types import (
    AT_LEAF,
    ApiKey,
    ApiKeyMatch,
    Attachment,
    AttachmentContent,
    AttachmentFile,
    Conversation,
    ExportedAttachment,
    Feedback,
    HistoryPage,
    HistoryRow,
    InvalidCursor,
    InvalidInput,
    Message,
    MessageFilter,
    NewAttachment,
    NotFound,
    Page,
    ParentRef,
    Rating,
    RequestCount,
    Role,
    Status,
    StoreError,
    StoreUnavailable,
    UsageRow,
    UserUsage,
    Versions,
)
from services.token_minter import TokenMinter
from supabase import Client, create_client

log = logging.getLogger(__name__)

T = TypeVar("T")

MESSAGE_COLUMNS = (
    "id,conversation_id,user_id,role,content,model,status,input_tokens,output_tokens,latency_ms,created_at,parent_id"
)
CONVERSATION_COLUMNS = "id,user_id,title,created_at,updated_at,current_leaf_id,instructions"
API_KEY_COLUMNS = "id,user_id,name,prefix,created_at,last_used_at,expires_at,revoked_at"
CSV_COLUMNS = (
    "created_at", "id", "conversation_id", "conversation_title", "role", "model", "status", "input_tokens",
    "output_tokens", "latency_ms", "content", "parent_id", "feedback", "feedback_comment",
)  # fmt: skip
# The same formula guard as the Postgres backend's COPY export (postgres.py export_csv).
_FORMULA = re.compile(r"^ *[-=+@\t\r]")

NO_CONVERSATION = "That conversation does not exist."
NO_MESSAGE = "That message does not exist."
NO_KEY = "That API key does not exist."
NO_FILE = "That file does not exist."
NO_REPLY = "That reply does not exist, is not yours, or is not finished yet."
RATING_VALUES: dict[Rating, int] = {"up": 1, "down": -1}
UNREACHABLE = "The database cannot be reached right now. Please try again."
TOO_SLOW = "The database took too long to answer. Please try again."


class _TokenExpired(Exception):
    """Supabase said the bearer had expired (401 PGRST303): mint again and repeat once."""


def map_api_error(exc: APIError, missing: str = NO_CONVERSATION) -> Exception:
    """The store error for an error answer of the Data API, with the same messages as the Postgres backend
    (postgres.py `_tx`). `missing` is the sentence for "not there, or not yours"."""
    code = exc.code or ""
    message = exc.message or ""
    if code == "PGRST303" or (code == "PGRST301" and "expired" in message.lower()):
        return _TokenExpired()
    if code.startswith("PGRST30"):
        return StoreUnavailable(
            "Supabase does not accept this app's tokens: register the app's signing key for third-party auth "
            "(docs/supabase.md)."
        )
    if not code and message in ("Invalid API key", "No API key found in request"):
        return StoreUnavailable("Supabase refused the project key: check SUPABASE_ANON_KEY (docs/supabase.md).")
    # A policy's `with check` (or a function's scope check) refused: the row would be someone else's.
    if code in ("42501", "23503", "PGRST116", "P0002"):
        return NotFound(missing)
    if code == "23514":
        return InvalidInput("The message could not be stored: a value is out of range.")
    if code.startswith("22"):
        return InvalidInput("The message could not be stored: it contains invalid data.")
    if code == "23505":
        return InvalidInput("That already exists.")
    if code == "57014" or code in ("PGRST003", "504"):
        return StoreUnavailable(TOO_SLOW)
    if code.startswith(("08", "53", "PGRST00")) or (len(code) == 3 and code.isdigit() and code >= "500"):
        return StoreUnavailable(UNREACHABLE)
    log.warning("unexpected Data API error %s: %s", code or "(no code)", message[:200])
    return StoreUnavailable(f"The database could not do that (error {code or 'unknown'}). Please try again.")


# --- rows ----------------------------------------------------------------------------------------------


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _kinds(hint: Any) -> tuple[Any, ...]:
    return typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)


def _value(hint: Any, raw: Any) -> Any:
    if raw is None:
        return None
    kinds = _kinds(hint)
    if uuid.UUID in kinds:
        return uuid.UUID(str(raw))
    if datetime in kinds:
        return datetime.fromisoformat(str(raw))
    if date in kinds:
        return date.fromisoformat(str(raw)[:10])
    if int in kinds and not isinstance(raw, bool):
        return int(raw)
    if bytes in kinds:
        return _bytea(raw)
    return raw


def _bytea(raw: Any) -> bytes:
    """PostgREST's JSON form of bytea: `\\x` and hex digits (PostgreSQL's bytea_output = hex)."""
    text = str(raw)
    if not text.startswith("\\x"):
        raise StoreUnavailable("Supabase answered a file in a form this app does not read.")
    return bytes.fromhex(text[2:])


def from_row(cls: type[T], row: Mapping[str, Any]) -> T:
    """A value type from a JSON row (uuids, instants and dates parsed; absent fields keep their defaults)."""
    hints = _hints(cls)  # type: ignore[arg-type]
    values = {f.name: _value(hints[f.name], row[f.name]) for f in fields(cls) if f.name in row}  # type: ignore[arg-type]
    return cls(**values)


def _json(value: Any) -> Any:
    """A value as the JSON the Data API takes (PostgREST casts text to each column's type)."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [_json(v) for v in value]
    if isinstance(value, bytes):
        return "\\x" + value.hex()
    return value


class SupabaseStore:
    """The `Store` protocol over Supabase's Data API (supabase-py), one app-minted token per caller."""

    def __init__(
        self,
        url: str,
        anon_key: str,
        minter: TokenMinter,
        *,
        timeout_s: float = Settings.supabase_timeout_s,
        max_message_chars: int = Settings.max_message_chars,
        cursor_key: bytes | str | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._anon_key = anon_key
        self.minter = minter
        self.cursors = CursorCodec(cursor_key)
        self.max_message_chars = max_message_chars
        self.timeout_s = timeout_s
        self._owns_http = http_client is None
        # Shared by every per-request client: connections are reused, headers are not (each request sets
        # its own apikey and bearer). The connect budget is shorter: a host that does not answer is down.
        self._http = http_client or httpx.Client(
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)),
            limits=httpx.Limits(max_connections=50, max_keepalive_connections=20),
        )

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def client(self, token: str, http: httpx.Client | None = None) -> Client:
        """A fresh supabase-py client for one request under `token` (never shared: clients hold auth state)."""
        options = SyncClientOptions(
            headers={"Authorization": f"Bearer {token}"},
            httpx_client=http or self._http,
            postgrest_client_retry=False,
            auto_refresh_token=False,
            persist_session=False,
        )
        return create_client(self.url, self._anon_key, options)

    def ping(self, timeout_s: float = 3.0) -> None:
        """One request through the gateway to PostgREST within `timeout_s` (readiness): the sign-in token's
        key lookup of a hash nobody has, which reads one index entry. Its own connection, so a probe also
        notices a network path the pooled connections no longer have."""
        with httpx.Client(timeout=timeout_s) as http:
            try:
                lookup = {"key_hash": "ping"}
                self._execute(self.minter.for_signin(), lambda c: c.rpc("api_key_owner", lookup), NO_KEY, http)
            except _TokenExpired:
                raise StoreUnavailable(
                    "Supabase does not accept the times in this app's tokens: check this server's clock."
                ) from None

    # --- plumbing --------------------------------------------------------------------------------------

    def _as(self, principal: Principal, build: Callable[[Client], Any], missing: str = NO_CONVERSATION) -> Any:
        """One request as the verified principal; the expiry is checked before anything is sent."""
        if not isinstance(principal, Principal):
            raise TypeError("database access needs a verified Principal")
        principal.ensure_fresh()
        return self._send(lambda: self.minter.for_user(principal), build, missing).data

    def _send(self, mint: Callable[[], str], build: Callable[[Client], Any], missing: str) -> Any:
        token = mint()
        try:
            return self._execute(token, build, missing)
        except _TokenExpired:
            # The server's clock is ahead of ours, or the token sat in the cache too long: once more, fresh.
            self.minter.forget(token)
        try:
            return self._execute(mint(), build, missing)
        except _TokenExpired:
            raise StoreUnavailable(
                "Supabase does not accept the times in this app's fresh tokens: check this server's clock."
            ) from None

    def _execute(
        self, token: str, build: Callable[[Client], Any], missing: str, http: httpx.Client | None = None
    ) -> Any:
        try:
            return build(self.client(token, http)).execute()
        except APIError as exc:
            raise map_api_error(exc, missing) from exc
        except httpx.TimeoutException as exc:
            raise StoreUnavailable(TOO_SLOW) from exc
        except httpx.HTTPError as exc:
            raise StoreUnavailable(UNREACHABLE) from exc

    def _rpc(self, principal: Principal, fn: str, args: Mapping[str, Any], missing: str = NO_CONVERSATION) -> Any:
        return self._as(principal, lambda c: c.rpc(fn, {k: _json(v) for k, v in args.items()}), missing)

    def _page(self, principal: Principal, scope: str, rows: list[Any], limit: int, key: Any) -> Page[Any]:
        # limit + 1 rows were asked for: the extra one only tells whether an older page exists.
        if len(rows) > limit:
            rows = rows[:limit]
            created_at, row_id = key(rows[-1])
            return Page(items=rows, next_cursor=self.cursors.encode(principal, scope, created_at, row_id))
        return Page(items=rows, next_cursor=None)

    # --- conversations ---------------------------------------------------------------------------------

    def create_conversation(
        self,
        principal: Principal,
        title: str = "New chat",
        conversation_id: uuid.UUID | None = None,
        *,
        instructions: str = "",
    ) -> Conversation:
        row = {
            "user_id": principal.user_id,
            "title": clean_title(title),
            "instructions": clean_instructions(instructions),
        }
        if conversation_id is None:
            made = self._as(principal, lambda c: c.table("conversations").insert(row).select(CONVERSATION_COLUMNS))
            return from_row(Conversation, made[0])
        cid = parse_uuid(conversation_id)
        # `on conflict (id) do nothing`: a taken id is then read like any other row, through RLS.
        made = self._as(
            principal,
            lambda c: (
                c.table("conversations")
                .upsert({"id": str(cid), **row}, on_conflict="id", ignore_duplicates=True)
                .select(CONVERSATION_COLUMNS)
            ),
        )
        return from_row(Conversation, made[0]) if made else self.get_conversation(principal, cid)

    def get_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation:
        cid = parse_uuid(conversation_id)
        # `.single()`: none (or not visible) is PostgREST's 406 PGRST116, NotFound here.
        row = self._as(
            principal, lambda c: c.table("conversations").select(CONVERSATION_COLUMNS).eq("id", str(cid)).single()
        )
        return from_row(Conversation, row)

    def list_conversations(
        self, principal: Principal, limit: int = 20, before: str | None = None, *, title_filter: str = ""
    ) -> Page[Conversation]:
        limit = check_limit(limit)
        title_filter = " ".join(check_query(title_filter).split())
        scope = "conversations"
        if title_filter:
            scope = "conversations:" + hashlib.sha256(title_filter.casefold().encode()).hexdigest()[:16]
        ts, rid = self.cursors.decode(principal, scope, before) if before else (None, None)
        rows = self._rpc(
            principal,
            "list_conversations",
            {"p_page_size": limit + 1, "p_cursor_at": ts, "p_cursor_id": rid, "p_title_filter": title_filter},
        )
        items = [from_row(Conversation, r) for r in rows]
        return self._page(principal, scope, items, limit, lambda c: (c.updated_at, c.id))

    def rename_conversation(self, principal: Principal, conversation_id: uuid.UUID | str, title: str) -> Conversation:
        return self._set_conversation_column(principal, conversation_id, "title", clean_title(title))

    def set_instructions(self, principal: Principal, conversation_id: uuid.UUID | str, text: str) -> Conversation:
        return self._set_conversation_column(principal, conversation_id, "instructions", clean_instructions(text))

    def _set_conversation_column(
        self, principal: Principal, conversation_id: uuid.UUID | str, column: str, value: str
    ) -> Conversation:
        cid = parse_uuid(conversation_id)
        rows = self._as(
            principal,
            lambda c: c.table("conversations").update({column: value}).eq("id", str(cid)).select(CONVERSATION_COLUMNS),
        )
        if not rows:
            raise NotFound(NO_CONVERSATION)
        return from_row(Conversation, rows[0])

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> None:
        cid = parse_uuid(conversation_id)
        if not self._rpc(principal, "delete_conversation", {"p_conversation": cid}):
            raise NotFound(NO_CONVERSATION)

    # --- messages ----------------------------------------------------------------------------------------

    def add_message(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        role: Role,
        content: str,
        model: str,
        status: Status = "complete",
        *,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: int | None = None,
        parent_id: ParentRef = AT_LEAF,
    ) -> Message:
        cid = parse_uuid(conversation_id)
        at_leaf = parent_id is AT_LEAF
        parent = None if parent_id is None or parent_id is AT_LEAF else parse_uuid(parent_id, "message")
        check_role(role)
        check_status(status)
        check_text(content, max_chars=self.max_message_chars if role == "user" else MAX_STORED_CHARS)
        if role == "user" and not content.strip():
            raise InvalidInput("Message is empty.")
        row = self._rpc(
            principal,
            "add_message",
            {
                "p_conversation": cid,
                "p_role": role,
                "p_content": content,
                "p_model": clean_model(model),
                "p_status": status,
                "p_input_tokens": input_tokens,
                "p_output_tokens": output_tokens,
                "p_latency_ms": latency_ms,
                "p_parent": parent,
                "p_at_leaf": at_leaf,
            },
        )
        return from_row(Message, _one(row, NO_CONVERSATION))

    def update_message(
        self,
        principal: Principal,
        message_id: uuid.UUID | str,
        *,
        content: str,
        status: Status,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        latency_ms: int | None = None,
    ) -> Message:
        mid = parse_uuid(message_id, "message")
        check_status(status)
        check_text(content, max_chars=MAX_STORED_CHARS)
        values: dict[str, Any] = {"content": content, "status": status, "heartbeat_at": _now()}
        # Only the usage that is known: PATCH leaves the other columns alone (postgres.py's coalesce).
        for column, value in (
            ("input_tokens", input_tokens),
            ("output_tokens", output_tokens),
            ("latency_ms", latency_ms),
        ):
            if value is not None:
                values[column] = value
        rows = self._as(
            principal,
            lambda c: c.table("messages").update(values).eq("id", str(mid)).select(MESSAGE_COLUMNS),
            NO_MESSAGE,
        )
        return from_row(Message, _one(rows, NO_MESSAGE))

    def touch_message(self, principal: Principal, message_id: uuid.UUID | str) -> None:
        mid = parse_uuid(message_id, "message")
        touched = self._as(
            principal,
            lambda c: (
                c.table("messages")
                .update({"heartbeat_at": _now(), "status": "streaming"})
                .eq("id", str(mid))
                .in_("status", ["streaming", "interrupted"])
                .select("id")
            ),
            NO_MESSAGE,
        )
        if not touched:
            raise NotFound(NO_MESSAGE)

    def sweep_stale_replies(self, stale_after_s: int) -> int:
        """Finalise replies whose process died mid-reply, with the sweeper token (the one function it may call)."""
        result = self._send(
            self.minter.for_sweeper,
            lambda c: c.rpc("sweep_stale_replies", {"stale_after_s": int(stale_after_s)}),
            NO_MESSAGE,
        )
        return int(result.data or 0)

    def recent_messages(self, principal: Principal, conversation_id: uuid.UUID | str, limit: int = 50) -> list[Message]:
        cid = parse_uuid(conversation_id)
        limit = check_limit(limit)
        rows = self._rpc(principal, "recent_messages", {"p_conversation": cid, "p_page_size": limit})
        return [from_row(Message, r) for r in rows]

    def page_messages(
        self,
        principal: Principal,
        limit: int = 20,
        before: str | None = None,
        conversation_id: uuid.UUID | str | None = None,
    ) -> Page[Message]:
        limit = check_limit(limit)
        cid = None if conversation_id is None else parse_uuid(conversation_id)
        scope = "messages" if cid is None else f"messages:{cid}"
        ts, rid = self.cursors.decode(principal, scope, before) if before else (None, None)
        rows = self._rpc(
            principal,
            "page_messages",
            {"p_page_size": limit + 1, "p_cursor_at": ts, "p_cursor_id": rid, "p_conversation": cid},
        )
        items = [from_row(Message, r) for r in rows]
        if not items and cid is not None:
            # An empty page of a conversation: NotFound unless it is there (rows imply it is, saving a request).
            self.get_conversation(principal, cid)
        return self._page(principal, scope, items, limit, lambda m: (m.created_at, m.id))

    def get_message(self, principal: Principal, message_id: uuid.UUID | str) -> Message:
        mid = parse_uuid(message_id, "message")
        row = self._as(
            principal, lambda c: c.table("messages").select(MESSAGE_COLUMNS).eq("id", str(mid)).single(), NO_MESSAGE
        )
        return from_row(Message, row)

    def path_messages(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        *,
        to: uuid.UUID | str | None = None,
        limit: int = 50,
    ) -> list[Message]:
        cid = parse_uuid(conversation_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PATH:
            raise InvalidInput(f"A path is read at most {MAX_PATH:,} messages at a time.")
        start = None if to is None else parse_uuid(to, "message")
        rows = self._rpc(
            principal, "path_messages", {"p_conversation": cid, "p_leaf": start, "p_max_messages": limit}, NO_MESSAGE
        )
        if not rows and start is not None:
            raise NotFound(NO_MESSAGE)
        return [from_row(Message, r) for r in rows]

    def versions(
        self, principal: Principal, conversation_id: uuid.UUID | str, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Versions]:
        cid = parse_uuid(conversation_id)
        wanted = [parse_uuid(m, "message") for m in message_ids]
        if not wanted:
            return {}
        rows = self._rpc(principal, "message_versions", {"p_conversation": cid, "p_message_ids": wanted})
        out: dict[uuid.UUID, Versions] = {}
        for row in rows:
            mid = uuid.UUID(str(row["message_id"]))
            siblings = tuple(uuid.UUID(str(s)) for s in row["sibling_ids"])
            out[mid] = Versions(siblings, siblings.index(mid))
        return out

    def choose_branch(self, principal: Principal, message_id: uuid.UUID | str) -> Conversation:
        mid = parse_uuid(message_id, "message")
        row = self._rpc(principal, "choose_branch", {"p_message": mid}, NO_MESSAGE)
        return from_row(Conversation, _one(row, NO_MESSAGE))

    def current_path_ids(self, principal: Principal, conversation_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        cids = sorted({parse_uuid(c) for c in conversation_ids})
        if not cids:
            return set()
        rows = self._rpc(principal, "current_path_ids", {"p_conversation_ids": cids})
        return {uuid.UUID(str(r["message_id"])) for r in rows}

    def delete_all_user_data(self, principal: Principal) -> int:
        return int(self._rpc(principal, "delete_all_user_data", {}) or 0)

    # --- display names and the picker's remembered model ---------------------------------------------------

    def save_display_name(self, principal: Principal, name: str) -> str:
        name = clean_display_name(name)
        self._rpc(principal, "save_display_name", {"p_display_name": name})
        return name

    def display_names(self, principal: Principal, user_ids: Sequence[str]) -> Mapping[str, str]:
        wanted = sorted({u for u in user_ids if isinstance(u, str) and 0 < len(u) <= 255 and "\x00" not in u})
        if not wanted:
            return {}
        if len(wanted) > MAX_NAME_LOOKUP:
            raise InvalidInput(f"At most {MAX_NAME_LOOKUP:,} users can be named at once.")
        rows = self._as(
            principal,
            lambda c: (
                c.table("profiles")
                .select("user_id,display_name")
                .in_("user_id", wanted)
                .not_.is_("display_name", "null")
            ),
        )
        return {str(r["user_id"]): str(r["display_name"]) for r in rows}

    def save_model_choice(self, principal: Principal, model_id: str) -> None:
        self._rpc(principal, "save_model_choice", {"p_model": clean_model(model_id)})

    def model_choice(self, principal: Principal) -> str | None:
        rows = self._as(principal, lambda c: c.table("profiles").select("last_model").eq("user_id", principal.user_id))
        return str(rows[0]["last_model"]) if rows and rows[0]["last_model"] is not None else None

    def default_instructions(self, principal: Principal) -> str | None:
        value = self._rpc(principal, "my_default_instructions", {})
        return None if value is None else str(value)

    def save_default_instructions(self, principal: Principal, text: str) -> str | None:
        value = self._rpc(principal, "set_my_default_instructions", {"instructions": clean_instructions(text)})
        return None if value is None else str(value)

    # --- feedback on replies (the SQL functions of migration 20261128001900, as postgres.py calls them) -----

    @staticmethod
    def _feedback(row: Mapping[str, Any]) -> Feedback:
        return Feedback(
            message_id=uuid.UUID(str(row["message_id"])),
            user_id=str(row["user_id"]),
            rating="up" if int(row["rating"]) > 0 else "down",
            comment=row["comment"],
            created_at=datetime.fromisoformat(str(row["created_at"])),
            updated_at=datetime.fromisoformat(str(row["updated_at"])),
        )

    def set_feedback(
        self, principal: Principal, message_id: uuid.UUID | str, rating: Rating, comment: str | None = None
    ) -> Feedback:
        mid = parse_uuid(message_id, "reply")
        value = RATING_VALUES[check_rating(rating)]
        # None keeps the stored comment; "" (or only spaces) removes it.
        note = None if comment is None else (clean_feedback_comment(comment) or "")
        rows = self._rpc(principal, "set_feedback", {"target": mid, "thumb": value, "note": note}, NO_REPLY)
        return self._feedback(_one(rows, NO_REPLY))

    def clear_feedback(self, principal: Principal, message_id: uuid.UUID | str) -> bool:
        mid = parse_uuid(message_id, "reply")
        return bool(self._rpc(principal, "clear_feedback", {"target": mid}, NO_REPLY))

    def feedback_for(self, principal: Principal, message_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Feedback]:
        wanted = sorted({parse_uuid(m, "reply") for m in message_ids})
        if not wanted:
            return {}
        if len(wanted) > MAX_PATH:
            raise InvalidInput(f"Feedback is read for at most {MAX_PATH:,} messages at a time.")
        rows = self._rpc(principal, "message_feedback", {"targets": wanted}, NO_REPLY)
        return {f.message_id: f for f in map(self._feedback, rows)}

    # --- rate-limit counter --------------------------------------------------------------------------------

    def count_request(self, principal: Principal, window_s: int) -> RequestCount:
        row = self._rpc(principal, "count_request", {"p_window_s": int(window_s)})
        found = _one(row, "The request could not be counted.")
        return RequestCount(hits=int(found["hits"]), resets_in_s=float(found["resets_in_s"]))

    # --- history page: search, filters, export, usage --------------------------------------------------------

    def search_messages(
        self,
        principal: Principal,
        where: MessageFilter,
        limit: int = 20,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """Keyset pages both ways, as postgres.py's search_messages (the same function does the work)."""
        limit = check_limit(limit)
        if before and after:
            raise InvalidCursor("A page link cannot go both ways at once.")
        scope = where.scope()
        cursor = before or after
        ts, rid = self.cursors.decode(principal, scope, cursor) if cursor else (None, None)
        rows = [from_row(HistoryRow, r) for r in self._history_rows(principal, where, limit + 1, ts, rid, bool(after))]
        if after and len(rows) <= limit:
            return self.search_messages(principal, where, limit)
        if after:
            rows = rows[:limit]
            rows.reverse()
            more_older, more_newer = True, True
        else:
            more_older, more_newer = len(rows) > limit, bool(before)
            rows = rows[:limit]

        def position(row: HistoryRow) -> str:
            return self.cursors.encode(principal, scope, row.created_at, row.id)

        return HistoryPage(
            items=rows,
            next_cursor=position(rows[-1]) if rows and more_older else None,
            prev_cursor=position(rows[0]) if rows and more_newer else None,
        )

    def _history_rows(
        self,
        principal: Principal,
        where: MessageFilter,
        page_size: int,
        ts: datetime | None,
        rid: uuid.UUID | None,
        newer: bool,
    ) -> list[dict[str, Any]]:
        """One page of rows for a filter: history_page, or search_messages when there is text to find (it
        picks the index walk or the GIN index per page, 20261126000300)."""
        args = _filter_args(where)
        args.update(p_page_size=page_size, p_cursor_at=ts, p_cursor_id=rid, p_newer=newer)
        query = check_query(where.query)
        if not query.strip():
            return list(self._rpc(principal, "history_page", args))
        named = {_SEARCH_NAMES[k]: v for k, v in args.items()}
        return list(self._rpc(principal, "search_messages", {"search_query": query, **named}))

    def iter_history(
        self, principal: Principal, conversation_id: uuid.UUID | str | None = None, batch_size: int = 1000
    ) -> Iterator[HistoryRow]:
        """Every message of this user (or of one of their conversations), oldest first, in keyset batches
        of one request each (no connection or transaction is held while the caller writes output)."""
        if not 1 <= batch_size <= 10_000:
            raise InvalidInput("Batch size must be between 1 and 10000.")
        cid = None if conversation_id is None else parse_uuid(conversation_id)
        # An export is "my data", also for reviewers: someone else's conversation is NotFound.
        if cid is not None and self.get_conversation(principal, cid).user_id != principal.user_id:
            raise NotFound(NO_CONVERSATION)
        ts: datetime | None = None
        rid: uuid.UUID | None = None
        while True:
            rows = self._rpc(
                principal,
                "history_page",
                {
                    "p_page_size": batch_size,
                    "p_cursor_at": ts,
                    "p_cursor_id": rid,
                    "p_newer": True,
                    "p_conversation": cid,
                },
            )
            batch = [from_row(HistoryRow, r) for r in rows]
            yield from batch
            if len(batch) < batch_size:
                return
            ts, rid = batch[-1].created_at, batch[-1].id

    def usage_by_day(
        self, principal: Principal, since: datetime, until: datetime, timezone: str, all_users: bool = False
    ) -> list[UsageRow]:
        check_instant(since, "start")
        check_instant(until, "end")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"Unknown time zone {timezone!r}.") from None
        rows = self._rpc(
            principal,
            "usage_by_day",
            {"p_since": since, "p_until": until, "p_time_zone": timezone, "p_all_users": all_users},
        )
        return [from_row(UsageRow, r) for r in rows]

    def usage_by_user(
        self, principal: Principal, since: datetime, until: datetime, all_users: bool = False
    ) -> list[UserUsage]:
        check_instant(since, "start")
        check_instant(until, "end")
        rows = self._rpc(principal, "usage_by_user", {"p_since": since, "p_until": until, "p_all_users": all_users})
        return [from_row(UserUsage, r) for r in rows]

    def message_models(self, principal: Principal, all_users: bool = False) -> list[str]:
        rows = self._rpc(principal, "message_models", {"p_all_users": all_users})
        return [str(r["model"]) for r in rows]

    def export_csv(self, principal: Principal) -> Iterator[bytes]:
        """The same CSV as the Postgres backend's COPY export (columns, instants, formula guard), written here
        from keyset batches: the Data API has no COPY."""
        principal.ensure_fresh()  # before the first byte, like the Postgres backend's transaction
        return self._csv(principal)

    def _csv(self, principal: Principal) -> Iterator[bytes]:
        out = io.StringIO()
        out.write(",".join(CSV_COLUMNS) + "\n")
        for row in self.iter_history(principal):
            out.write(_csv_line(_csv_row(row)))
            if out.tell() > 64 * 1024:
                yield out.getvalue().encode()
                out.seek(0)
                out.truncate()
        yield out.getvalue().encode()

    # --- personal API keys -------------------------------------------------------------------------------------

    def create_api_key(
        self,
        principal: Principal,
        *,
        name: str,
        prefix: str,
        secret_hash: str,
        expires_at: datetime | None,
        max_live: int,
    ) -> ApiKey:
        name = clean_key_name(name)
        if expires_at is not None:
            check_instant(expires_at, "expiry")
        row = self._rpc(
            principal,
            "create_api_key",
            {
                "p_name": name,
                "p_prefix": prefix,
                "p_secret_hash": secret_hash,
                "p_expires_at": expires_at,
                "p_max_live": max_live,
            },
            NO_KEY,
        )
        if not row:
            raise InvalidInput(f"You already have {max_live} active API keys: revoke one before creating another.")
        return from_row(ApiKey, _one(row, NO_KEY))

    def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        rows = self._as(
            principal,
            lambda c: (
                c.table("api_keys")
                .select(API_KEY_COLUMNS)
                .order("created_at", desc=True)
                .order("id", desc=True)
                .limit(200)
            ),
        )
        return [from_row(ApiKey, r) for r in rows]

    def revoke_api_key(self, principal: Principal, key_id: uuid.UUID | str) -> ApiKey:
        kid = parse_uuid(key_id, "API key")
        # The table's trigger (20261128001000) keeps the first revocation time when a key is revoked twice.
        rows = self._as(
            principal,
            lambda c: c.table("api_keys").update({"revoked_at": _now()}).eq("id", str(kid)).select(API_KEY_COLUMNS),
            NO_KEY,
        )
        return from_row(ApiKey, _one(rows, NO_KEY))

    def api_key_access_problem(self) -> str | None:
        """Nothing to grant on Supabase: the sign-in token is accepted by the lookup function itself."""
        return None

    def find_api_key(self, secret_hash: str) -> ApiKeyMatch | None:
        result = self._send(self.minter.for_signin, lambda c: c.rpc("api_key_owner", {"key_hash": secret_hash}), NO_KEY)
        rows = result.data
        if not rows:
            return None
        row = rows[0]
        key_id = row.get("key_id")
        return ApiKeyMatch(state=row["state"], user_id=row.get("user_id"), key_id=uuid.UUID(key_id) if key_id else None)


    # --- attachments (the SQL functions of migration 20261128001800; RLS decides) -------------------------

    def add_attachments(
        self, principal: Principal, message_id: uuid.UUID | str, items: Sequence[NewAttachment]
    ) -> list[Attachment]:
        """One request a file (the Data API has no multi-statement transaction); when one fails, the files
        already stored for this call are deleted again, so a message never keeps half its files."""
        mid = parse_uuid(message_id, "message")
        checked = [check_attachment(item) for item in items]
        stored: list[Attachment] = []
        try:
            for item in checked:
                args = {
                    "p_message_id": mid,
                    "p_name": item.name,
                    "p_media_type": item.media_type,
                    "p_data": item.data,
                    "p_thumbnail": item.thumbnail,
                    "p_text": item.text,
                }
                rows = self._rpc(principal, "add_attachment", args, NO_MESSAGE)
                row = from_row(Attachment, _one(rows, NO_MESSAGE))
                stored.append(dataclasses.replace(row, thumbnail=item.thumbnail))
        except Exception:
            if stored:
                ids = [str(a.id) for a in stored]
                try:
                    self._as(principal, lambda c: c.table("attachments").delete().in_("id", ids), NO_MESSAGE)
                except StoreError:
                    log.warning("files of a failed upload could not be removed", extra={"count": len(ids)})
            raise
        return stored

    def copy_attachments(
        self, principal: Principal, from_message: uuid.UUID | str, to_message: uuid.UUID | str
    ) -> int:
        source, target = parse_uuid(from_message, "message"), parse_uuid(to_message, "message")
        return int(self._rpc(principal, "copy_attachments", {"p_from": source, "p_to": target}, NO_MESSAGE) or 0)

    def message_attachments(
        self, principal: Principal, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Sequence[Attachment]]:
        wanted = check_message_ids(message_ids)
        if not wanted:
            return {}
        rows = self._rpc(principal, "message_attachments", {"p_message_ids": wanted}, NO_MESSAGE)
        found: dict[uuid.UUID, list[Attachment]] = {}
        for raw in rows:
            row = from_row(Attachment, raw)
            found.setdefault(row.message_id, []).append(row)
        return found

    def attachment_file(self, principal: Principal, attachment_id: uuid.UUID | str) -> AttachmentFile:
        aid = parse_uuid(attachment_id, "file")
        rows = self._rpc(principal, "attachment_data", {"p_id": aid}, NO_FILE)
        return from_row(AttachmentFile, _one(rows, NO_FILE))

    def attachment_contents(self, principal: Principal, message_ids: Sequence[uuid.UUID]) -> list[AttachmentContent]:
        wanted = check_message_ids(message_ids)
        if not wanted:
            return []
        rows = self._rpc(principal, "attachment_contents", {"p_message_ids": wanted}, NO_MESSAGE)
        return [from_row(AttachmentContent, r) for r in rows]

    def iter_attachments(self, principal: Principal, batch_size: int = 4) -> Iterator[ExportedAttachment]:
        """Keyset batches, one request each: at most `batch_size` originals in memory at once."""
        if not 1 <= batch_size <= 1_000:
            raise InvalidInput("Batch size must be between 1 and 1000.")
        after: tuple[datetime | None, uuid.UUID | None] = (None, None)
        while True:
            args = {"p_after_at": after[0], "p_after_id": after[1], "p_limit": batch_size}
            rows = [from_row(ExportedAttachment, r) for r in self._rpc(principal, "export_attachments", args)]
            yield from rows
            if len(rows) < batch_size:
                return
            after = (rows[-1].created_at, rows[-1].id)

def _now() -> str:
    """The app's clock for the few instants a plain table write must carry (PostgREST cannot send now()):
    a reply's heartbeat and a key's revocation. Clock skew between app and database shifts the stale-reply
    sweep by that much; the database's own clock decides everything else."""
    return datetime.now(UTC).isoformat()


def _one(data: Any, missing: str) -> Mapping[str, Any]:
    """The one row of a function's answer: an object, or a list of one; none is NotFound."""
    if isinstance(data, list):
        data = data[0] if data else None
    if not isinstance(data, dict) or all(v is None for v in data.values()):
        raise NotFound(missing)
    return data


def _filter_args(where: MessageFilter) -> dict[str, Any]:
    """The validated filter (the same checks as postgres.py) as history_page's arguments."""
    return {
        "p_conversation": None if where.conversation_id is None else parse_uuid(where.conversation_id),
        "p_role": None if where.role is None else check_role(where.role),
        "p_model": None if where.model is None else clean_model(where.model),
        "p_status": None if where.status is None else check_status(where.status),
        "p_since": None if where.since is None else check_instant(where.since, "start"),
        "p_until": None if where.until is None else check_instant(where.until, "end"),
        "p_all_users": where.all_users,
        "p_feedback": None if where.feedback is None else check_feedback_filter(where.feedback),
    }


# search_messages (20261126000300, kept by 20261128001700) predates the p_ names: history_page's arguments
# under its own names.
_SEARCH_NAMES = {
    "p_page_size": "page_size", "p_cursor_at": "cursor_at", "p_cursor_id": "cursor_id", "p_newer": "newer",
    "p_conversation": "conversation", "p_role": "message_role", "p_model": "message_model",
    "p_status": "message_status", "p_since": "since", "p_until": "until", "p_all_users": "all_users",
    "p_feedback": "feedback_filter",
}  # fmt: skip


def _guard(text: str) -> str:
    return "'" + text if _FORMULA.match(text) else text


def _csv_row(row: HistoryRow) -> list[str | None]:
    return [
        row.created_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00"),
        str(row.id),
        str(row.conversation_id),
        _guard(row.conversation_title),
        row.role,
        _guard(row.model),
        row.status,
        None if row.input_tokens is None else str(row.input_tokens),
        None if row.output_tokens is None else str(row.output_tokens),
        None if row.latency_ms is None else str(row.latency_ms),
        _guard(row.content),
        None if row.parent_id is None else str(row.parent_id),
        row.feedback,
        None if row.feedback_comment is None else _guard(row.feedback_comment),
    ]


def _csv_line(values: Sequence[str | None]) -> str:
    """One line as PostgreSQL's COPY ... (format csv) writes it, so both backends export the same bytes:
    NULL is an empty field; a text that is empty, or holds a comma, a quote, CR or LF, is quoted, with
    quotes doubled. (Python's csv module leaves an empty string unquoted, indistinguishable from NULL.)"""
    fields: list[str] = []
    for value in values:
        if value is None:
            fields.append("")
        elif value == "" or any(c in value for c in ',"\n\r'):
            fields.append('"' + value.replace('"', '""') + '"')
        else:
            fields.append(value)
    return ",".join(fields) + "\n"


__all__ = ["SupabaseStore", "StoreError", "map_api_error", "from_row"]
