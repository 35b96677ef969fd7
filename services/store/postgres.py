"""The Store protocol on PostgreSQL with psycopg 3 and one connection pool, scoped by row-level security.

(Over 400 lines on purpose: one file per backend, STYLE.md 3; the SQL of every protocol method sits together.)

Every unit of work is one transaction that first does what PostgREST does for a request:
`set local role authenticated` and `set_config('request.jwt.claims', <claims>, true)`. Both are
transaction-local (`true`), so a pooled connection never carries one user's claims into the next
user's transaction. The policies in supabase/migrations/ then decide what each statement may see.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool, PoolTimeout

from services.app_tokens import APP_ISSUER, signin_claims, sweeper_claims, user_claims
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
    StoreUnavailable,
    UsageRow,
    UserUsage,
    Versions,
)

MESSAGE_COLUMNS = (
    "id, conversation_id, user_id, role, content, model, status, input_tokens, output_tokens, latency_ms,"
    " created_at, parent_id"
)
CONVERSATION_COLUMNS = "id, user_id, title, created_at, updated_at, current_leaf_id, instructions"
API_KEY_COLUMNS = "id, user_id, name, prefix, created_at, last_used_at, expires_at, revoked_at"
# The pre-sign-in role (migration 20261128000600); the key lookup runs as it, before anyone is known.
SIGNIN_ROLE = "chat_signin"
# The sweep's role (migration 20261128001300).
SWEEPER_ROLE = "chat_sweeper"
# public.history_page and public.search_messages return each row's feedback ("up"/"down") and comment
# (migration 20261128001910).
HISTORY_COLUMNS = (
    "m.id, m.conversation_id, m.conversation_title, m.user_id, m.role, m.content, m.model, m.status,"
    " m.input_tokens, m.output_tokens, m.latency_ms, m.created_at, m.parent_id, m.feedback, m.feedback_comment"
)
# The CSV export's COPY: a reply's feedback by primary key (at most one row per message), under RLS.
HISTORY_FROM = (
    "public.messages m join public.conversations c on c.id = m.conversation_id"
    " left join public.feedback f on f.message_id = m.id"
)
# public.history_page (migrations 20261128001710, 20261128001910), with every parameter named.
_HISTORY_PAGE = (
    f"select {HISTORY_COLUMNS} from public.history_page(%(n)s, %(ts)s, %(id)s, %(newer)s, %(cid)s, %(role)s,"
    " %(model)s, %(status)s, %(since)s, %(until)s, %(all)s, %(feedback)s) m"
)
RATING_VALUES: dict[Rating, int] = {"up": 1, "down": -1}
FEEDBACK_ROW = "message_id, user_id, rating, comment, created_at, updated_at"
# The same columns from public.search_messages(...) m, which already carries the title.
SEARCH_COLUMNS = (
    "m.id, m.conversation_id, m.conversation_title, m.user_id, m.role, m.content, m.model, m.status,"
    " m.input_tokens, m.output_tokens, m.latency_ms, m.created_at, m.feedback, m.feedback_comment"
)


# While the database is down (issue 17 drill): a request waits at most POOL_WAIT_S for a connection, then
# fails with a plain "cannot be reached" (psycopg_pool's default is 30 s, half the provider timeout, a
# frozen page). The pool retries a lost connection with a doubling delay; RECONNECT_S caps how long one
# series of retries runs, after which the next request starts a fresh one at once. With the default
# (5 minutes) the delay grows past a minute, and the app stays down that long after the database is back.
POOL_WAIT_S = 10.0
RECONNECT_S = 10.0


def _configure(conn: psycopg.Connection) -> None:
    # A runaway query must not hold a pooled connection (and a browser tab) forever.
    conn.execute("set statement_timeout = '15s'")
    conn.execute("set idle_in_transaction_session_timeout = '60s'")
    conn.commit()


@contextmanager
def as_role(pool: ConnectionPool, role: str, claims: Mapping[str, Any]) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled connection as `role` with `claims` in request.jwt.claims, the way
    PostgREST runs a request. Both settings are transaction-local (`true`), so the connection goes back
    to the pool without them."""
    text = json.dumps(dict(claims), separators=(",", ":"), default=str)
    with pool.connection() as conn, conn.transaction():
        conn.execute("select set_config('role', %s, true), set_config('request.jwt.claims', %s, true)", [role, text])
        yield conn


@contextmanager
def as_principal(pool: ConnectionPool, principal: Principal) -> Iterator[psycopg.Connection]:
    """One transaction as role `authenticated` with this app's user claims for the principal (what the
    Supabase backend signs as a token, services/app_tokens.py), so the same policies hold on both
    backends. The claims come only from a verified Principal; an expired one is refused before any SQL
    runs. Everything that touches user rows goes through here."""
    if not isinstance(principal, Principal):
        raise TypeError("database access needs a verified Principal")
    principal.ensure_fresh()
    with as_role(pool, "authenticated", user_claims(principal, APP_ISSUER, time.time())) as conn:
        yield conn


@contextmanager
def as_signin(pool: ConnectionPool) -> Iterator[psycopg.Connection]:
    """Pre-sign-in work: the NOLOGIN role `chat_signin` (it can only call the sign-in functions) with this
    app's sign-in claims, which those functions check (migration 20261128001700)."""
    with as_role(pool, SIGNIN_ROLE, signin_claims(APP_ISSUER, time.time())) as conn:
        yield conn


# One fixed window per user, advanced by one upsert in public.count_request (migration 20261128001710).
_COUNT_REQUEST = "select hits, resets_in_s from public.count_request(%s)"


class PostgresStore:
    """The `Store` protocol (chat, review, rate-limit counter) over one psycopg pool."""

    def __init__(
        self,
        conninfo: str,
        *,
        max_message_chars: int = Settings.max_message_chars,
        pool_max: int = Settings.db_pool_max,
        cursor_key: bytes | str | None = None,
    ) -> None:
        self.cursors = CursorCodec(cursor_key)
        # The store enforces the user-message limit itself too: another front-end (the HTTP API) may
        # call it, and the database is the last place a too-long message can be stopped.
        self.max_message_chars = max_message_chars
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=pool_max,
            configure=_configure,
            open=True,
            name="chat-store",
            timeout=POOL_WAIT_S,
            reconnect_timeout=RECONNECT_S,
        )
        self._pool.wait(timeout=30)

    def close(self) -> None:
        self._pool.close()

    def ping(self, timeout_s: float = 3.0) -> None:
        """One round trip on a pooled connection (readiness); StoreUnavailable when none answers in time."""
        try:
            with self._pool.connection(timeout=timeout_s) as conn:
                conn.execute("select 1")
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable("The database cannot be reached right now.") from exc

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (psycopg_pool `get_stats`, not reset): read by the metrics on each scrape."""
        return self._pool.get_stats()

    @property
    def conninfo(self) -> str:
        """The app role's connection string (the sign-in store opens its own small pool with it)."""
        return str(self._pool.conninfo)

    # --- plumbing --------------------------------------------------------------------------------

    @contextmanager
    def _tx(self, principal: Principal) -> Iterator[psycopg.Connection]:
        """One transaction as `authenticated` with the principal's claims (see `as_principal`), with the
        database's refusals mapped to the store's errors, whose messages are safe to show."""
        try:
            with as_principal(self._pool, principal) as conn:
                yield conn
        except psycopg.errors.InsufficientPrivilege as exc:
            # RLS `with check` failures land here: the row would belong to someone else.
            raise NotFound("That conversation does not exist.") from exc
        except psycopg.errors.ForeignKeyViolation as exc:
            raise NotFound("That conversation does not exist.") from exc
        except psycopg.errors.CheckViolation as exc:
            raise InvalidInput("The message could not be stored: a value is out of range.") from exc
        except psycopg.errors.DataError as exc:
            raise InvalidInput("The message could not be stored: it contains invalid data.") from exc
        except psycopg.errors.QueryCanceled as exc:
            raise StoreUnavailable("The database took too long to answer. Please try again.") from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable("The database cannot be reached right now. Please try again.") from exc

    def _page(self, principal: Principal, scope: str, rows: list[Any], limit: int, key: Any) -> Page[Any]:
        # We fetched limit + 1 rows: the extra one only tells whether an older page exists.
        if len(rows) > limit:
            rows = rows[:limit]
            created_at, row_id = key(rows[-1])
            return Page(items=rows, next_cursor=self.cursors.encode(principal, scope, created_at, row_id))
        return Page(items=rows, next_cursor=None)

    @staticmethod
    def _one_message(conn: psycopg.Connection, query: str, params: Sequence[Any] | dict[str, Any]) -> Message | None:
        with conn.cursor(row_factory=class_row(Message)) as cur:
            cur.execute(query, params)
            return cur.fetchone()

    # --- conversations ---------------------------------------------------------------------------

    def create_conversation(
        self,
        principal: Principal,
        title: str = "New chat",
        conversation_id: uuid.UUID | None = None,
        *,
        instructions: str = "",
    ) -> Conversation:
        title = clean_title(title)
        instructions = clean_instructions(instructions)
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            if conversation_id is None:
                cur.execute(
                    "insert into public.conversations (user_id, title, instructions) values (%s, %s, %s)"
                    f" returning {CONVERSATION_COLUMNS}",
                    [principal.user_id, title, instructions],
                )
            else:
                # `do nothing` on a taken id: the row is then read below, through RLS like any other read.
                cur.execute(
                    "insert into public.conversations (id, user_id, title, instructions) values (%s, %s, %s, %s)"
                    f" on conflict (id) do nothing returning {CONVERSATION_COLUMNS}",
                    [conversation_id, principal.user_id, title, instructions],
                )
            row = cur.fetchone()
        if row is None and conversation_id is not None:
            return self.get_conversation(principal, conversation_id)
        assert row is not None
        return row

    def get_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> Conversation:
        cid = parse_uuid(conversation_id)
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            cur.execute(f"select {CONVERSATION_COLUMNS} from public.conversations where id = %s", [cid])
            row = cur.fetchone()
        if row is None:
            raise NotFound("That conversation does not exist.")
        return row

    def list_conversations(
        self, principal: Principal, limit: int = 20, before: str | None = None, *, title_filter: str = ""
    ) -> Page[Conversation]:
        """Newest activity first, keyset paged. The title filter is a condition on the same index walk
        (see migration 20261128001200 for why no trigram index), over the lowered title kept beside the
        title (migration 20261128002000); its text is matched literally, case-insensitively."""
        limit = check_limit(limit)
        title_filter = " ".join(check_query(title_filter).split())
        scope = "conversations"
        if title_filter:
            scope = "conversations:" + hashlib.sha256(title_filter.casefold().encode()).hexdigest()[:16]
        ts, cursor_id = self.cursors.decode(principal, scope, before) if before else (None, None)
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            cur.execute(
                f"select {CONVERSATION_COLUMNS} from public.list_conversations(%s, %s, %s, %s)",
                [limit + 1, ts, cursor_id, title_filter or None],
            )
            rows = cur.fetchall()
        return self._page(principal, scope, rows, limit, lambda c: (c.updated_at, c.id))

    def rename_conversation(self, principal: Principal, conversation_id: uuid.UUID | str, title: str) -> Conversation:
        return self._set_conversation_column(principal, conversation_id, "title", clean_title(title))

    def set_instructions(self, principal: Principal, conversation_id: uuid.UUID | str, text: str) -> Conversation:
        return self._set_conversation_column(principal, conversation_id, "instructions", clean_instructions(text))

    def _set_conversation_column(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        column: Literal["title", "instructions"],
        value: str,
    ) -> Conversation:
        """One column of one of the caller's conversations (RLS hides the others: NotFound)."""
        cid = parse_uuid(conversation_id)
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            cur.execute(
                f"update public.conversations set {column} = %s where id = %s returning {CONVERSATION_COLUMNS}",
                [value, cid],
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound("That conversation does not exist.")
        return row

    def delete_conversation(self, principal: Principal, conversation_id: uuid.UUID | str) -> None:
        cid = parse_uuid(conversation_id)
        with self._tx(principal) as conn:
            row = conn.execute("select public.delete_conversation(%s)", [cid]).fetchone()
        if row is None or not row[0]:
            raise NotFound("That conversation does not exist.")

    # --- messages --------------------------------------------------------------------------------

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
        limit = self.max_message_chars if role == "user" else MAX_STORED_CHARS
        check_text(content, max_chars=limit)
        if role == "user" and not content.strip():
            raise InvalidInput("Message is empty.")
        model = clean_model(model)
        with self._tx(principal) as conn:
            # The parent (explicit or the current leaf) must be a message of this conversation and this
            # user: the composite foreign key refuses anything else, whatever RLS lets the caller see.
            row = self._one_message(
                conn,
                f"select {MESSAGE_COLUMNS} from public.add_message("
                "%s::uuid, %s, %s, %s, %s, %s::int4, %s::int4, %s::int4, %s::uuid, %s::bool)",
                [cid, role, content, model, status, input_tokens, output_tokens, latency_ms, parent, at_leaf],
            )
        assert row is not None
        return row

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
        with self._tx(principal) as conn:
            row = self._one_message(
                conn,
                # Every write of a reply is also its heartbeat (migration 20261128001300).
                "update public.messages set content = %s, status = %s, heartbeat_at = now(),"
                " input_tokens = coalesce(%s, input_tokens), output_tokens = coalesce(%s, output_tokens),"
                f" latency_ms = coalesce(%s, latency_ms) where id = %s returning {MESSAGE_COLUMNS}",
                [content, status, input_tokens, output_tokens, latency_ms, mid],
            )
        if row is None:
            raise NotFound("That message does not exist.")
        return row

    def touch_message(self, principal: Principal, message_id: uuid.UUID | str) -> None:
        mid = parse_uuid(message_id, "message")
        with self._tx(principal) as conn:
            touched = conn.execute(
                "update public.messages set heartbeat_at = now(), status = 'streaming'"
                " where id = %s and status in ('streaming', 'interrupted')",
                [mid],
            ).rowcount
        if touched == 0:
            raise NotFound("That message does not exist.")

    def sweep_stale_replies(self, stale_after_s: int) -> int:
        """Finalise as `interrupted` every reply whose heartbeat is older than `stale_after_s` (its process
        died mid-reply); return how many. Runs as `chat_sweeper` through the one function that role may
        call (migration 20261128001300), with this app's sweeper claims, which that function checks
        (migration 20261128001700), so the app still never bypasses row-level security."""
        try:
            with as_role(self._pool, SWEEPER_ROLE, sweeper_claims(APP_ISSUER, time.time())) as conn:
                row = conn.execute("select public.sweep_stale_replies(%s)", [int(stale_after_s)]).fetchone()
        except psycopg.errors.InsufficientPrivilege as exc:
            raise StoreUnavailable(
                "The app's database role may not sweep stale replies: grant chat_sweeper to it."
            ) from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable("The database cannot be reached right now.") from exc
        return int(row[0]) if row else 0

    def recent_messages(self, principal: Principal, conversation_id: uuid.UUID | str, limit: int = 50) -> list[Message]:
        """The last `limit` messages of a conversation, oldest first (what the chat page renders)."""
        cid = parse_uuid(conversation_id)
        limit = check_limit(limit)
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Message)) as cur:
            cur.execute(f"select {MESSAGE_COLUMNS} from public.recent_messages(%s, %s)", [cid, limit])
            return cur.fetchall()

    def page_messages(
        self,
        principal: Principal,
        limit: int = 20,
        before: str | None = None,
        conversation_id: uuid.UUID | str | None = None,
    ) -> Page[Message]:
        """One page of the user's messages, newest first, and the cursor of the next (older) page.

        Keyset paging on (created_at, id): the row comparison uses the (user_id, created_at desc, id desc)
        index, so every page costs the same at any depth, and equal timestamps never skip or repeat a row.
        """
        limit = check_limit(limit)
        cid = None if conversation_id is None else parse_uuid(conversation_id)
        # The scope names the parsed id: the same conversation spelled another way is the same listing.
        scope = "messages" if cid is None else f"messages:{cid}"
        ts, cursor_id = self.cursors.decode(principal, scope, before) if before else (None, None)
        with self._tx(principal) as conn:
            if (
                cid is not None
                and not conn.execute("select 1 from public.conversations where id = %s", [cid]).fetchone()
            ):
                raise NotFound("That conversation does not exist.")
            with conn.cursor(row_factory=class_row(Message)) as cur:
                cur.execute(
                    f"select {MESSAGE_COLUMNS} from public.page_messages(%s, %s, %s, %s)",
                    [limit + 1, ts, cursor_id, cid],
                )
                rows = cur.fetchall()
        return self._page(principal, scope, rows, limit, lambda m: (m.created_at, m.id))

    def get_message(self, principal: Principal, message_id: uuid.UUID | str) -> Message:
        mid = parse_uuid(message_id, "message")
        with self._tx(principal) as conn:
            row = self._one_message(conn, f"select {MESSAGE_COLUMNS} from public.messages where id = %s", [mid])
        if row is None:
            raise NotFound("That message does not exist.")
        return row

    def path_messages(
        self,
        principal: Principal,
        conversation_id: uuid.UUID | str,
        *,
        to: uuid.UUID | str | None = None,
        limit: int = 50,
    ) -> list[Message]:
        """Walks parent links up from `to` (or the current leaf), one primary-key lookup a step
        (public.path_messages), keeping the `limit` messages nearest the leaf."""
        cid = parse_uuid(conversation_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PATH:
            raise InvalidInput(f"A path is read at most {MAX_PATH:,} messages at a time.")
        start = None if to is None else parse_uuid(to, "message")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Message)) as cur:
            # Root first, as public.path_messages returns them.
            cur.execute(f"select {MESSAGE_COLUMNS} from public.path_messages(%s, %s, %s)", [cid, start, limit])
            rows = cur.fetchall()
        if not rows and start is not None:
            raise NotFound("That message does not exist.")
        return rows

    def versions(
        self, principal: Principal, conversation_id: uuid.UUID | str, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Versions]:
        cid = parse_uuid(conversation_id)
        wanted = [parse_uuid(m, "message") for m in message_ids]
        if not wanted:
            return {}
        with self._tx(principal) as conn:
            # Siblings share a parent (roots: no parent, same conversation); one call for the whole window.
            rows = conn.execute(
                "select message_id, sibling_ids from public.message_versions(%s, %s)", [cid, wanted]
            ).fetchall()
        return {mid: Versions(tuple(siblings), list(siblings).index(mid)) for mid, siblings in rows}

    def choose_branch(self, principal: Principal, message_id: uuid.UUID | str) -> Conversation:
        mid = parse_uuid(message_id, "message")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            # The newest message under the chosen one becomes the leaf (see public.choose_branch).
            cur.execute(f"select {CONVERSATION_COLUMNS} from public.choose_branch(%s)", [mid])
            row = cur.fetchone()
        if row is None:
            raise NotFound("That message does not exist.")
        return row

    def current_path_ids(self, principal: Principal, conversation_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        cids = sorted({parse_uuid(c) for c in conversation_ids})
        if not cids:
            return set()
        with self._tx(principal) as conn:
            rows = conn.execute("select message_id from public.current_path_ids(%s)", [cids]).fetchall()
        return {row[0] for row in rows}

    def delete_all_user_data(self, principal: Principal) -> int:
        """Delete every conversation and message of this user (GDPR erasure). Returns messages deleted."""
        with self._tx(principal) as conn:
            row = conn.execute("select public.delete_all_user_data()").fetchone()
        return 0 if row is None else int(row[0])

    # --- display names ----------------------------------------------------------------------------------

    def save_display_name(self, principal: Principal, name: str) -> str:
        name = clean_display_name(name)
        with self._tx(principal) as conn:
            conn.execute("select public.save_display_name(%s)", [name])
        return name

    def display_names(self, principal: Principal, user_ids: Sequence[str]) -> Mapping[str, str]:
        wanted = sorted({u for u in user_ids if isinstance(u, str) and 0 < len(u) <= 255 and "\x00" not in u})
        if not wanted:
            return {}
        if len(wanted) > MAX_NAME_LOOKUP:
            raise InvalidInput(f"At most {MAX_NAME_LOOKUP:,} users can be named at once.")
        with self._tx(principal) as conn:
            rows = conn.execute(
                "select user_id, display_name from public.profiles"
                " where user_id = any(%s) and display_name is not null",
                [wanted],
            ).fetchall()
        return {str(user_id): str(name) for user_id, name in rows}

    # --- the picker's remembered model ------------------------------------------------------------------

    def save_model_choice(self, principal: Principal, model_id: str) -> None:
        model_id = clean_model(model_id)
        with self._tx(principal) as conn:
            conn.execute("select public.save_model_choice(%s)", [model_id])

    def model_choice(self, principal: Principal) -> str | None:
        with self._tx(principal) as conn:
            row = conn.execute(
                "select last_model from public.profiles where user_id = %s", [principal.user_id]
            ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    # --- the per-user default instructions (SQL functions of migration 20261128002000) ---------------

    def default_instructions(self, principal: Principal) -> str | None:
        with self._tx(principal) as conn:
            row = conn.execute("select d from public.my_default_instructions() d").fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def save_default_instructions(self, principal: Principal, text: str) -> str | None:
        text = clean_instructions(text)
        with self._tx(principal) as conn:
            row = conn.execute("select d from public.set_my_default_instructions(%s) d", [text]).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    # --- feedback on replies (SQL in migration 20261128001900, shared with the Supabase backend) -----------

    @staticmethod
    def _feedback(row: tuple[Any, ...]) -> Feedback:
        message_id, user_id, rating, comment, created_at, updated_at = row
        return Feedback(message_id, user_id, "up" if rating > 0 else "down", comment, created_at, updated_at)

    def set_feedback(
        self, principal: Principal, message_id: uuid.UUID | str, rating: Rating, comment: str | None = None
    ) -> Feedback:
        mid = parse_uuid(message_id, "reply")
        value = RATING_VALUES[check_rating(rating)]
        # None keeps the stored comment; "" (or only spaces) removes it.
        note = None if comment is None else (clean_feedback_comment(comment) or "")
        with self._tx(principal) as conn:
            row = conn.execute(
                f"select {FEEDBACK_ROW} from public.set_feedback(%s, %s::smallint, %s)", [mid, value, note]
            ).fetchone()
        if row is None:
            raise NotFound("That reply does not exist, is not yours, or is not finished yet.")
        return self._feedback(row)

    def clear_feedback(self, principal: Principal, message_id: uuid.UUID | str) -> bool:
        mid = parse_uuid(message_id, "reply")
        with self._tx(principal) as conn:
            row = conn.execute("select public.clear_feedback(%s)", [mid]).fetchone()
        return bool(row and row[0])

    def feedback_for(self, principal: Principal, message_ids: Sequence[uuid.UUID]) -> Mapping[uuid.UUID, Feedback]:
        wanted = sorted({parse_uuid(m, "reply") for m in message_ids})
        if not wanted:
            return {}
        if len(wanted) > MAX_PATH:
            raise InvalidInput(f"Feedback is read for at most {MAX_PATH:,} messages at a time.")
        with self._tx(principal) as conn:
            rows = conn.execute(f"select {FEEDBACK_ROW} from public.message_feedback(%s)", [wanted]).fetchall()
        return {row[0]: self._feedback(row) for row in rows}

    # --- rate-limit counter ---------------------------------------------------------------------------

    def count_request(self, principal: Principal, window_s: int) -> RequestCount:
        with self._tx(principal) as conn:
            row = conn.execute(_COUNT_REQUEST, [int(window_s)]).fetchone()
        if row is None:  # an upsert with `returning` always yields its row
            raise StoreUnavailable("The request could not be counted.")
        return RequestCount(hits=int(row[0]), resets_in_s=float(row[1]))

    # --- history page: search, filters, export, usage ------------------------------------------------

    def search_messages(
        self,
        principal: Principal,
        where: MessageFilter,
        limit: int = 20,
        before: str | None = None,
        after: str | None = None,
    ) -> HistoryPage:
        """One page of messages matching `where`, newest first, with cursors both ways.

        Keyset paging on (created_at, id) like page_messages; `after` walks back to newer rows (ascending,
        then reversed), so "Previous" works from a bookmarked URL without a stack of cursors. Filters alone
        are conditions on the newest-first index walk. A text search goes through the SQL function
        public.search_messages (migration 20261126000300): under RLS the GIN index cannot be used from
        here, and a rare term would read the whole history; the function applies the same rules as the
        policies from the same claims and picks the walk or the GIN index per page.
        """
        limit = check_limit(limit)
        if before and after:
            raise InvalidCursor("A page link cannot go both ways at once.")
        scope = where.scope()
        params = _history_params(where)
        params["n"] = limit + 1
        params["newer"] = bool(after)
        cursor = before or after
        if cursor:
            params["ts"], params["id"] = self.cursors.decode(principal, scope, cursor)
        order = "asc" if after else "desc"
        query = _search_call(params) if params["q"] is not None else _HISTORY_PAGE
        query += f" order by m.created_at {order}, m.id {order}"
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(HistoryRow)) as cur:
            cur.execute(query, params)
            rows = cur.fetchall()
        if after and len(rows) <= limit:
            # Fewer than a page newer than the cursor: that is the top of the listing, so show the real
            # first page (full, and its own next cursor) rather than a short page.
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

    def iter_history(
        self, principal: Principal, conversation_id: uuid.UUID | str | None = None, batch_size: int = 1000
    ) -> Iterator[HistoryRow]:
        """Every message of this user (or of one of their conversations), oldest first, for exports.

        Keyset batches of `batch_size`, one short transaction each: memory stays at one batch whatever
        the history size, and no pooled connection is held while the caller writes output. Only the
        caller's own rows, also for reviewers: an export is "my data".
        """
        if not 1 <= batch_size <= 10_000:
            raise InvalidInput("Batch size must be between 1 and 10000.")
        cid = None if conversation_id is None else parse_uuid(conversation_id)
        params = _history_params(MessageFilter(conversation_id=cid))
        params.update(n=batch_size, newer=True)
        if params["cid"] is not None:
            with self._tx(principal) as conn:
                if not conn.execute(
                    "select 1 from public.conversations where id = %s and user_id = %s",
                    [params["cid"], principal.user_id],
                ).fetchone():
                    raise NotFound("That conversation does not exist.")
        while True:
            with self._tx(principal) as conn, conn.cursor(row_factory=class_row(HistoryRow)) as cur:
                # Oldest first from the last row of the previous batch (public.history_page with p_newer).
                cur.execute(_HISTORY_PAGE + " order by m.created_at, m.id", params)
                rows = cur.fetchall()
            yield from rows
            if len(rows) < batch_size:
                return
            params["ts"], params["id"] = rows[-1].created_at, rows[-1].id

    def usage_by_day(
        self, principal: Principal, since: datetime, until: datetime, timezone: str, all_users: bool = False
    ) -> list[UsageRow]:
        """Messages and tokens per day (in `timezone`) and model, for since <= created_at < until."""
        check_instant(since, "start")
        check_instant(until, "end")
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidInput(f"Unknown time zone {timezone!r}.") from None
        # The thumbs per day and model come from the same function (migration 20261128001910).
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(UsageRow)) as cur:
            cur.execute(
                "select day, model, messages, input_tokens, output_tokens, thumbs_up, thumbs_down"
                " from public.usage_by_day(%s, %s, %s, %s)",
                [since, until, timezone, all_users],
            )
            return cur.fetchall()

    def usage_by_user(
        self, principal: Principal, since: datetime, until: datetime, all_users: bool = False
    ) -> list[UserUsage]:
        check_instant(since, "start")
        check_instant(until, "end")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(UserUsage)) as cur:
            cur.execute(
                "select user_id, messages, input_tokens, output_tokens from public.usage_by_user(%s, %s, %s)",
                [since, until, all_users],
            )
            return cur.fetchall()

    def message_models(self, principal: Principal, all_users: bool = False) -> list[str]:
        """Model names in the most recent 5,000 messages: options for the model filter. Bounded on purpose:
        a distinct over a 200k-message history costs ~100 ms per page view; older models stay
        filterable by URL."""
        with self._tx(principal) as conn:
            rows = conn.execute("select model from public.message_models(%s)", [all_users]).fetchall()
        return [row[0] for row in rows]

    def export_csv(self, principal: Principal) -> Iterator[bytes]:
        """All of this user's messages as CSV bytes, oldest first, streamed by Postgres's own COPY.

        Why COPY: formatting 200,000 rows in Python took ~9 s; COPY streams the same CSV in chunks in
        about a second, still under RLS (COPY of a query applies the policies) and in one transaction.
        Formula guard (OWASP's CSV injection rule): a text cell whose first character other than spaces
        is `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading apostrophe, so a spreadsheet shows
        it as text instead of running it (spreadsheets skip leading spaces, so " =1+1" counts too). That
        includes any leading `-`, "-5" and "- item" alike: the CSV is for reading; the JSON export is the
        lossless one.
        """

        def guard(column: str) -> str:
            return f"case when {column} ~ '^ *[-=+@\\t\\r]' then '''' || {column} else {column} end"

        query = (
            "copy (select to_char(m.created_at at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"+00:00\"')"
            " as created_at, m.id, m.conversation_id,"
            f" {guard('c.title')} as conversation_title, m.role, {guard('m.model')} as model, m.status,"
            f" m.input_tokens, m.output_tokens, m.latency_ms, {guard('m.content')} as content,"
            # last, so readers that take the earlier columns by position keep working
            " m.parent_id, case f.rating when 1 then 'up' when -1 then 'down' end as feedback,"
            f" {guard('f.comment')} as feedback_comment"
            f" from {HISTORY_FROM} where m.user_id = %(uid)s order by m.created_at, m.id)"
            " to stdout (format csv, header true)"
        )
        with self._tx(principal) as conn, conn.cursor() as cur, cur.copy(query, {"uid": principal.user_id}) as copy:
            for chunk in copy:
                yield bytes(chunk)

    # --- personal API keys ----------------------------------------------------------------------------

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
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(ApiKey)) as cur:
            # One creation at a time per user, counted and inserted in public.create_api_key; no row
            # means the user already has `max_live` live keys.
            cur.execute(
                f"select {API_KEY_COLUMNS} from public.create_api_key(%s, %s, %s, %s, %s)",
                [name, prefix, secret_hash, expires_at, max_live],
            )
            row = cur.fetchone()
        if row is None:
            raise InvalidInput(f"You already have {max_live} active API keys: revoke one before creating another.")
        return row

    def list_api_keys(self, principal: Principal) -> list[ApiKey]:
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(ApiKey)) as cur:
            # Bounded: live keys are capped by CHAT_API_KEYS_MAX; revoked ones are kept but only so many shown.
            cur.execute(f"select {API_KEY_COLUMNS} from public.api_keys order by created_at desc, id desc limit 200")
            return cur.fetchall()

    def revoke_api_key(self, principal: Principal, key_id: uuid.UUID | str) -> ApiKey:
        kid = parse_uuid(key_id, "API key")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(ApiKey)) as cur:
            cur.execute(
                f"update public.api_keys set revoked_at = coalesce(revoked_at, now()) where id = %s"
                f" returning {API_KEY_COLUMNS}",
                [kid],
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound("That API key does not exist.")
        return row

    def api_key_access_problem(self) -> str | None:
        """Why this login role cannot look keys up, or None. The embedded database's migration grants it
        `chat_signin`; any other database needs that grant once, by hand (as for local sign-in)."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "select current_user, coalesce(pg_has_role(current_user, %s, 'MEMBER'), false)", [SIGNIN_ROLE]
            ).fetchone()
        if row is None or row[1]:
            return None
        return (
            f"The database role {row[0]} cannot check API keys: run `grant {SIGNIN_ROLE} to {row[0]};` once as the "
            "role that ran the migrations (DATABASE_ADMIN_URL), or set CHAT_API_KEYS=false."
        )

    def find_api_key(self, secret_hash: str) -> ApiKeyMatch | None:
        # No principal yet: the pre-sign-in role, with this app's sign-in claims, asks the definer function,
        # which answers for this hash only.
        try:
            with as_signin(self._pool) as conn:
                row = conn.execute(
                    "select state, user_id, key_id from public.api_key_owner(%s)", [secret_hash]
                ).fetchone()
        except psycopg.errors.QueryCanceled as exc:
            raise StoreUnavailable("The database took too long to answer. Please try again.") from exc
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable("The database cannot be reached right now. Please try again.") from exc
        if row is None:
            return None
        return ApiKeyMatch(state=row[0], user_id=row[1], key_id=row[2])

    # --- attachments (SQL functions of migration 20261128001800, security invoker: RLS decides) ----------

    def add_attachments(
        self, principal: Principal, message_id: uuid.UUID | str, items: Sequence[NewAttachment]
    ) -> list[Attachment]:
        mid = parse_uuid(message_id, "message")
        checked = [check_attachment(item) for item in items]
        stored: list[Attachment] = []
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Attachment)) as cur:
            for item in checked:
                cur.execute(
                    "select id, message_id, user_id, name, media_type, size, created_at"
                    " from public.add_attachment(%s, %s, %s, %s, %s, %s)",
                    [mid, item.name, item.media_type, item.data, item.thumbnail, item.text],
                )
                row = cur.fetchone()
                if row is None:  # the function inserts nothing for a message that is not the caller's
                    raise NotFound("That message does not exist.")
                stored.append(dataclasses.replace(row, thumbnail=item.thumbnail))  # as message_attachments lists it
        return stored

    def copy_attachments(self, principal: Principal, from_message: uuid.UUID | str, to_message: uuid.UUID | str) -> int:
        source, target = parse_uuid(from_message, "message"), parse_uuid(to_message, "message")
        with self._tx(principal) as conn:
            row = conn.execute("select public.copy_attachments(%s, %s)", [source, target]).fetchone()
        return int(row[0]) if row else 0

    def message_attachments(
        self, principal: Principal, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Sequence[Attachment]]:
        wanted = check_message_ids(message_ids)
        if not wanted:
            return {}
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Attachment)) as cur:
            cur.execute(
                "select id, message_id, user_id, name, media_type, size, created_at, thumbnail"
                " from public.message_attachments(%s)",
                [wanted],
            )
            rows = cur.fetchall()
        found: dict[uuid.UUID, list[Attachment]] = {}
        for row in rows:
            found.setdefault(row.message_id, []).append(row)
        return found

    def attachment_file(self, principal: Principal, attachment_id: uuid.UUID | str) -> AttachmentFile:
        aid = parse_uuid(attachment_id, "file")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(AttachmentFile)) as cur:
            cur.execute("select name, media_type, data from public.attachment_data(%s)", [aid])
            row = cur.fetchone()
        if row is None:
            raise NotFound("That file does not exist.")
        return row

    def attachment_contents(self, principal: Principal, message_ids: Sequence[uuid.UUID]) -> list[AttachmentContent]:
        wanted = check_message_ids(message_ids)
        if not wanted:
            return []
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(AttachmentContent)) as cur:
            cur.execute(
                "select id, message_id, name, media_type, text, data from public.attachment_contents(%s)", [wanted]
            )
            return cur.fetchall()

    def iter_attachments(self, principal: Principal, batch_size: int = 4) -> Iterator[ExportedAttachment]:
        """Keyset batches, one short transaction each: at most `batch_size` originals in memory at once."""
        if not 1 <= batch_size <= 1_000:
            raise InvalidInput("Batch size must be between 1 and 1000.")
        after: tuple[datetime | None, uuid.UUID | None] = (None, None)
        while True:
            with self._tx(principal) as conn, conn.cursor(row_factory=class_row(ExportedAttachment)) as cur:
                cur.execute(
                    "select id, message_id, name, media_type, size, created_at, data"
                    " from public.export_attachments(%s, %s, %s)",
                    [after[0], after[1], batch_size],
                )
                rows = cur.fetchall()
            yield from rows
            if len(rows) < batch_size:
                return
            after = (rows[-1].created_at, rows[-1].id)


def _history_params(where: MessageFilter) -> dict[str, Any]:
    """The validated filter as the named parameters of public.history_page / public.search_messages (no
    cursor yet). No user id: the functions take the caller from the transaction's claims."""
    query = check_query(where.query)
    return {
        "q": query if query.strip() else None,
        "n": None,
        "ts": None,
        "id": None,
        "newer": False,
        "cid": None if where.conversation_id is None else parse_uuid(where.conversation_id),
        "role": None if where.role is None else check_role(where.role),
        "model": None if where.model is None else clean_model(where.model),
        "status": None if where.status is None else check_status(where.status),
        "since": None if where.since is None else check_instant(where.since, "start"),
        "until": None if where.until is None else check_instant(where.until, "end"),
        "all": where.all_users,
        "feedback": None if where.feedback is None else check_feedback_filter(where.feedback),
    }


def _search_call(params: dict[str, Any]) -> str:
    """The call of public.search_messages (migration 20261126000300, trust rules in 20261128001700, the
    feedback filter and columns in 20261128001910) for validated parameters from _history_params plus the
    cursor."""
    return (
        f"select {SEARCH_COLUMNS} from public.search_messages(%(q)s, %(n)s, %(ts)s, %(id)s,"
        " %(newer)s, %(cid)s, %(role)s, %(model)s, %(status)s, %(since)s, %(until)s, %(all)s, %(feedback)s) m"
    )
