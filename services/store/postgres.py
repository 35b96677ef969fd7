"""The Store protocol on PostgreSQL with psycopg 3 and one connection pool, scoped by row-level security.

(Over 400 lines on purpose: one file per backend, STYLE.md 3; the SQL of every protocol method sits together.)

Every unit of work is one transaction that first does what PostgREST does for a request:
`set local role authenticated` and `set_config('request.jwt.claims', <claims>, true)`. Both are
transaction-local (`true`), so a pooled connection never carries one user's claims into the next
user's transaction. The policies in supabase/migrations/ then decide what each statement may see.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import psycopg
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool, PoolTimeout

from services.auth import Principal
from services.config import Settings
from services.store.checks import (
    MAX_NAME_LOOKUP,
    MAX_PATH,
    MAX_STORED_CHARS,
    check_feedback_filter,
    check_instant,
    check_limit,
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
    Conversation,
    Feedback,
    HistoryPage,
    HistoryRow,
    InvalidCursor,
    InvalidInput,
    Message,
    MessageFilter,
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
# The same columns qualified by a table alias, for joins and recursive walks.
M_MESSAGE_COLUMNS = ", ".join("m." + c.strip() for c in MESSAGE_COLUMNS.split(","))
C_CONVERSATION_COLUMNS = ", ".join("c." + c.strip() for c in CONVERSATION_COLUMNS.split(","))
API_KEY_COLUMNS = "id, user_id, name, prefix, created_at, last_used_at, expires_at, revoked_at"
# The pre-sign-in role (migration 20261128000600); the key lookup runs as it, before anyone is known.
SIGNIN_ROLE = "chat_signin"
# A reply's feedback rides along by primary key (at most one row per message); RLS on public.feedback shows
# the owner theirs and a reviewer everyone's, like the messages themselves.
FEEDBACK_COLUMNS = (
    "case f.rating when 1 then 'up' when -1 then 'down' end as feedback, f.comment as feedback_comment"
)
HISTORY_COLUMNS = (
    "m.id, m.conversation_id, c.title as conversation_title, m.user_id, m.role, m.content, m.model, m.status,"
    f" m.input_tokens, m.output_tokens, m.latency_ms, m.created_at, m.parent_id, {FEEDBACK_COLUMNS}"
)
HISTORY_FROM = (
    "public.messages m join public.conversations c on c.id = m.conversation_id"
    " left join public.feedback f on f.message_id = m.id"
)
# History's feedback filter as a condition on the join above. A thumb or a comment turns the left join into
# an inner one that Postgres can drive from the feedback indexes; "none" is an anti-join on the primary key
# during the newest-first walk (most replies have no feedback, so the walk fills a page quickly).
FEEDBACK_CONDITIONS = {
    "up": "f.rating = 1",
    "down": "f.rating = -1",
    "comment": "f.comment is not null",
    "none": "f.message_id is null and m.role = 'assistant'",
}
FEEDBACK_WALKS = frozenset({"up", "down", "comment"})  # filters served by walking a feedback index
RATING_VALUES: dict[Rating, int] = {"up": 1, "down": -1}
FEEDBACK_ROW = "message_id, user_id, rating, comment, created_at, updated_at"
# The same columns from public.search_messages(...) m, which already carries the title.
SEARCH_COLUMNS = (
    "m.id, m.conversation_id, m.conversation_title, m.user_id, m.role, m.content, m.model, m.status,"
    f" m.input_tokens, m.output_tokens, m.latency_ms, m.created_at, {FEEDBACK_COLUMNS}"
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
def as_principal(pool: ConnectionPool, principal: Principal) -> Iterator[psycopg.Connection]:
    """One transaction on a pooled connection as role `authenticated` with the principal's claims, the way
    PostgREST runs a request. Both settings are transaction-local (`true`), so the connection goes back
    to the pool without them. The claims come only from a verified Principal; an expired one is refused
    before any SQL runs. Everything that touches user rows goes through here."""
    if not isinstance(principal, Principal):
        raise TypeError("database access needs a verified Principal")
    principal.ensure_fresh()
    claims = json.dumps(principal.db_claims(), separators=(",", ":"), default=str)
    with pool.connection() as conn, conn.transaction():
        conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            [claims],
        )
        yield conn


# One fixed window per user, advanced by one upsert: `insert ... on conflict do update` takes the row lock,
# so concurrent requests from several replicas are each counted exactly once. Runs as the user, so RLS
# keeps the counters private.
_COUNT_REQUEST = """
insert into public.rate_limits as r (user_id, window_start, hits) values (%(uid)s, now(), 1)
on conflict (user_id) do update set
  window_start = case when r.window_start <= now() - %(window)s::interval then now() else r.window_start end,
  hits = case when r.window_start <= now() - %(window)s::interval then 1 else r.hits + 1 end
returning hits, extract(epoch from (window_start + %(window)s::interval - now()))::float8
"""


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
        (see migration 20261128001200 for why no trigram index); its text is matched literally."""
        limit = check_limit(limit)
        title_filter = " ".join(check_query(title_filter).split())
        params: dict[str, Any] = {"uid": principal.user_id, "n": limit + 1}
        where = "user_id = %(uid)s"
        scope = "conversations"
        if title_filter:
            # LIKE's own metacharacters are escaped: "50%" finds titles with "50%", not every title with "50".
            params["pattern"] = "%" + re.sub(r"([\\%_])", r"\\\1", title_filter) + "%"
            where += " and title ilike %(pattern)s"
            scope = "conversations:" + hashlib.sha256(title_filter.casefold().encode()).hexdigest()[:16]
        if before:
            params["ts"], params["id"] = self.cursors.decode(principal, scope, before)
            where += " and (updated_at, id) < (%(ts)s, %(id)s)"
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            cur.execute(
                f"select {CONVERSATION_COLUMNS} from public.conversations where {where}"
                " order by updated_at desc, id desc limit %(n)s",
                params,
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
            deleted = conn.execute("delete from public.conversations where id = %s", [cid]).rowcount
        if deleted == 0:
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
        values = {
            "cid": cid,
            "uid": principal.user_id,
            "role": role,
            "content": content,
            "model": model,
            "status": status,
            "inp": input_tokens,
            "out": output_tokens,
            "lat": latency_ms,
            "parent": parent,
            "at_leaf": at_leaf,
        }
        with self._tx(principal) as conn:
            # The parent (explicit or the current leaf) must be a message of this conversation and this
            # user: the composite foreign key refuses anything else, whatever RLS lets the caller see.
            row = self._one_message(
                conn,
                "insert into public.messages (conversation_id, user_id, role, content, model, status,"
                " input_tokens, output_tokens, latency_ms, parent_id)"
                " values (%(cid)s, %(uid)s, %(role)s, %(content)s, %(model)s, %(status)s, %(inp)s, %(out)s, %(lat)s,"
                " case when %(at_leaf)s then (select current_leaf_id from public.conversations where id = %(cid)s)"
                f" else %(parent)s::uuid end) returning {MESSAGE_COLUMNS}",
                values,
            )
            assert row is not None
            conn.execute("update public.conversations set current_leaf_id = %s where id = %s", [row.id, cid])
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
        call (migration 20261128001300), so the app still never bypasses row-level security."""
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute("select set_config('role', 'chat_sweeper', true)")
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
            cur.execute(
                f"select {MESSAGE_COLUMNS} from public.messages where conversation_id = %s"
                " order by created_at desc, id desc limit %s",
                [cid, limit],
            )
            rows = cur.fetchall()
        rows.reverse()
        return rows

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
        params: dict[str, Any] = {"uid": principal.user_id, "n": limit + 1}
        where = ["user_id = %(uid)s"]
        if cid is not None:
            params["cid"] = cid
            where.append("conversation_id = %(cid)s")
        if before:
            params["ts"], params["id"] = self.cursors.decode(principal, scope, before)
            where.append("(created_at, id) < (%(ts)s, %(id)s)")
        with self._tx(principal) as conn:
            if cid is not None and not conn.execute(
                "select 1 from public.conversations where id = %(cid)s", params
            ).fetchone():
                raise NotFound("That conversation does not exist.")
            with conn.cursor(row_factory=class_row(Message)) as cur:
                cur.execute(
                    f"select {MESSAGE_COLUMNS} from public.messages where {' and '.join(where)}"
                    " order by created_at desc, id desc limit %(n)s",
                    params,
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
        """Walks parent links up from `to` (or the current leaf), one primary-key lookup a step; the LIMIT
        stops the recursive walk early, so a long conversation costs the window, not its length."""
        cid = parse_uuid(conversation_id)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PATH:
            raise InvalidInput(f"A path is read at most {MAX_PATH:,} messages at a time.")
        start = None if to is None else parse_uuid(to, "message")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Message)) as cur:
            cur.execute(
                "with recursive path as ("
                f" select {MESSAGE_COLUMNS}, 0 as depth from public.messages"
                " where conversation_id = %(cid)s and id = coalesce(%(start)s::uuid,"
                " (select current_leaf_id from public.conversations where id = %(cid)s))"
                " union all"
                f" select {M_MESSAGE_COLUMNS}, p.depth + 1"
                " from public.messages m join path p on m.id = p.parent_id"
                f") select {MESSAGE_COLUMNS} from path order by depth limit %(n)s",
                {"cid": cid, "start": start, "n": limit},
            )
            rows = cur.fetchall()
            if not rows and start is not None:
                raise NotFound("That message does not exist.")
        rows.reverse()
        return rows

    def versions(
        self, principal: Principal, conversation_id: uuid.UUID | str, message_ids: Sequence[uuid.UUID]
    ) -> Mapping[uuid.UUID, Versions]:
        cid = parse_uuid(conversation_id)
        wanted = [parse_uuid(m, "message") for m in message_ids]
        if not wanted:
            return {}
        with self._tx(principal) as conn:
            # Siblings share a parent (roots: no parent, same conversation); one query for the whole window.
            rows = conn.execute(
                "select w.id, array_agg(s.id order by s.created_at, s.id)"
                " from public.messages w join public.messages s on s.conversation_id = w.conversation_id"
                " and s.parent_id is not distinct from w.parent_id"
                " where w.conversation_id = %s and w.id = any(%s) group by w.id having count(*) > 1",
                [cid, wanted],
            ).fetchall()
        return {mid: Versions(tuple(siblings), list(siblings).index(mid)) for mid, siblings in rows}

    def choose_branch(self, principal: Principal, message_id: uuid.UUID | str) -> Conversation:
        mid = parse_uuid(message_id, "message")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(Conversation)) as cur:
            # The newest message under the chosen one is a leaf (a reply is always newer than what it
            # answers), so "the newest leaf of the branch" is the newest message of the subtree.
            cur.execute(
                "with recursive subtree as ("
                " select id, conversation_id, created_at from public.messages where id = %(mid)s"
                " union all select m.id, m.conversation_id, m.created_at"
                " from public.messages m join subtree s on m.parent_id = s.id)"
                " update public.conversations c set current_leaf_id = leaf.id"
                " from (select id, conversation_id from subtree order by created_at desc, id desc limit 1) leaf"
                f" where c.id = leaf.conversation_id returning {C_CONVERSATION_COLUMNS}",
                {"mid": mid},
            )
            row = cur.fetchone()
        if row is None:
            raise NotFound("That message does not exist.")
        return row

    def current_path_ids(self, principal: Principal, conversation_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        cids = sorted({parse_uuid(c) for c in conversation_ids})
        if not cids:
            return set()
        with self._tx(principal) as conn:
            rows = conn.execute(
                "with recursive path as ("
                " select m.id, m.parent_id from public.conversations c"
                " join public.messages m on m.id = c.current_leaf_id where c.id = any(%s)"
                " union all select m.id, m.parent_id from public.messages m join path p on m.id = p.parent_id)"
                " select id from path",
                [cids],
            ).fetchall()
        return {row[0] for row in rows}

    def delete_all_user_data(self, principal: Principal) -> int:
        """Delete every conversation and message of this user (GDPR erasure). Returns messages deleted."""
        with self._tx(principal) as conn:
            count = conn.execute("delete from public.messages where user_id = %s", [principal.user_id]).rowcount
            conn.execute("delete from public.conversations where user_id = %s", [principal.user_id])
            conn.execute("delete from public.profiles where user_id = %s", [principal.user_id])
        return count

    # --- display names ----------------------------------------------------------------------------------

    def save_display_name(self, principal: Principal, name: str) -> str:
        name = clean_display_name(name)
        with self._tx(principal) as conn:
            conn.execute(
                "insert into public.profiles (user_id, display_name) values (%s, %s) on conflict (user_id) do update"
                " set display_name = excluded.display_name, updated_at = now()"
                " where profiles.display_name is distinct from excluded.display_name",
                [principal.user_id, name],
            )
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
            conn.execute(
                "insert into public.profiles (user_id, last_model) values (%s, %s) on conflict (user_id) do update"
                " set last_model = excluded.last_model, updated_at = now()"
                " where profiles.last_model is distinct from excluded.last_model",
                [principal.user_id, model_id],
            )

    def model_choice(self, principal: Principal) -> str | None:
        with self._tx(principal) as conn:
            row = conn.execute(
                "select last_model from public.profiles where user_id = %s", [principal.user_id]
            ).fetchone()
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
            row = conn.execute(_COUNT_REQUEST, {"uid": principal.user_id, "window": f"{window_s} seconds"}).fetchone()
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
        conditions, params = _history_conditions(principal, where)
        params["n"] = limit + 1
        cursor = before or after
        # A thumb or comment filter walks a feedback index, whose copy of the reply's created_at (equal to
        # it, the write policies check) orders the same rows the same way as the messages' own columns.
        walk_feedback = where.feedback in FEEDBACK_WALKS
        at, row_id = ("f.message_created_at", "f.message_id") if walk_feedback else ("m.created_at", "m.id")
        if cursor:
            params["ts"], params["id"] = self.cursors.decode(principal, scope, cursor)
            conditions.append(f"({at}, {row_id}) " + ("<" if before else ">") + " (%(ts)s, %(id)s)")
        order = "asc" if after else "desc"
        if "q" in params and where.feedback is None:
            query, params = _search_call(where, params, newer=bool(after))
        else:
            query = f"select {HISTORY_COLUMNS} from {HISTORY_FROM} where {' and '.join(conditions) or 'true'}"
        query += f" order by {at} {order}, {row_id} {order} limit %(n)s"
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
        params: dict[str, Any] = {"uid": principal.user_id, "n": batch_size}
        conditions = ["m.user_id = %(uid)s"]
        if conversation_id is not None:
            params["cid"] = parse_uuid(conversation_id)
            conditions.append("m.conversation_id = %(cid)s")
            with self._tx(principal) as conn:
                if not conn.execute(
                    "select 1 from public.conversations where id = %(cid)s and user_id = %(uid)s", params
                ).fetchone():
                    raise NotFound("That conversation does not exist.")
        while True:
            keyset = " and (m.created_at, m.id) > (%(ts)s, %(id)s)" if "ts" in params else ""
            with self._tx(principal) as conn, conn.cursor(row_factory=class_row(HistoryRow)) as cur:
                cur.execute(
                    f"select {HISTORY_COLUMNS} from {HISTORY_FROM} where {' and '.join(conditions)}{keyset}"
                    " order by m.created_at, m.id limit %(n)s",
                    params,
                )
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
        params: dict[str, Any] = {"uid": principal.user_id, "since": since, "until": until, "tz": timezone}
        conditions = ["m.created_at >= %(since)s", "m.created_at < %(until)s"]
        if not all_users:
            conditions.insert(0, "m.user_id = %(uid)s")
        where = " and ".join(conditions)
        # Thumbs are counted from the feedback side (a few per hundred replies, found by the owner index and
        # the row's copy of its reply's created_at), each row's model read by primary key. `offset 0` keeps
        # that lookup a per-row index probe and `materialized` computes the counts once: the generic plan
        # psycopg's prepared statement settles on after a few calls otherwise compared every feedback row
        # with every message of the range (over 15 s for the heavy user, bench/history.py).
        mine = "" if all_users else " and f.user_id = %(uid)s"
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(UsageRow)) as cur:
            cur.execute(
                "with counts as (select (m.created_at at time zone %(tz)s)::date as day, m.model,"
                " count(*)::int as messages, coalesce(sum(m.input_tokens), 0)::bigint as input_tokens,"
                " coalesce(sum(m.output_tokens), 0)::bigint as output_tokens"
                f" from public.messages m where {where} group by 1, 2),"
                " thumbs as materialized (select (f.message_created_at at time zone %(tz)s)::date as day, r.model,"
                " (count(*) filter (where f.rating = 1))::int as up,"
                " (count(*) filter (where f.rating = -1))::int as down"
                " from public.feedback f cross join lateral"
                " (select m.model from public.messages m where m.id = f.message_id offset 0) r"
                f" where f.message_created_at >= %(since)s and f.message_created_at < %(until)s{mine}"
                " group by 1, 2)"
                " select c.day, c.model, c.messages, c.input_tokens, c.output_tokens,"
                " coalesce(t.up, 0) as thumbs_up, coalesce(t.down, 0) as thumbs_down"
                " from counts c left join thumbs t on t.day = c.day and t.model = c.model order by 1, 2",
                params,
            )
            return cur.fetchall()

    def usage_by_user(
        self, principal: Principal, since: datetime, until: datetime, all_users: bool = False
    ) -> list[UserUsage]:
        check_instant(since, "start")
        check_instant(until, "end")
        conditions = ["created_at >= %(since)s", "created_at < %(until)s"]
        if not all_users:
            conditions.insert(0, "user_id = %(uid)s")
        with self._tx(principal) as conn, conn.cursor(row_factory=class_row(UserUsage)) as cur:
            cur.execute(
                "select user_id, count(*)::int as messages, coalesce(sum(input_tokens), 0)::bigint as input_tokens,"
                " coalesce(sum(output_tokens), 0)::bigint as output_tokens"
                f" from public.messages where {' and '.join(conditions)} group by 1 order by 2 desc, 1",
                {"uid": principal.user_id, "since": since, "until": until},
            )
            return cur.fetchall()

    def message_models(self, principal: Principal, all_users: bool = False) -> list[str]:
        """Model names in the most recent 5,000 messages: options for the model filter. Bounded on purpose:
        a distinct over a 200k-message history costs ~100 ms per page view; older models stay
        filterable by URL."""
        where = "true" if all_users else "user_id = %(uid)s"
        with self._tx(principal) as conn:
            rows = conn.execute(
                f"select distinct model from (select model from public.messages where {where}"
                " order by created_at desc, id desc limit 5000) recent order by model",
                {"uid": principal.user_id},
            ).fetchall()
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
            # One creation at a time per user (a transaction lock on the user id), so two clicks cannot
            # both pass the count and end one over the limit.
            conn.execute("select pg_advisory_xact_lock(hashtextextended('api_keys:' || %s, 0))", [principal.user_id])
            live = conn.execute(
                "select count(*) from public.api_keys where revoked_at is null"
                " and (expires_at is null or expires_at > now())"
            ).fetchone()
            if live is not None and int(live[0]) >= max_live:
                raise InvalidInput(f"You already have {max_live} active API keys: revoke one before creating another.")
            cur.execute(
                "insert into public.api_keys (user_id, name, prefix, secret_hash, expires_at)"
                f" values (%s, %s, %s, %s, %s) returning {API_KEY_COLUMNS}",
                [principal.user_id, name, prefix, secret_hash, expires_at],
            )
            row = cur.fetchone()
        assert row is not None
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
        # No principal yet: the pre-sign-in role asks the definer function, which answers for this hash only.
        try:
            with self._pool.connection() as conn, conn.transaction():
                conn.execute(f"set local role {SIGNIN_ROLE}")
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


def _history_conditions(principal: Principal, where: MessageFilter) -> tuple[list[str], dict[str, Any]]:
    """SQL conditions (on alias m) and parameters for a MessageFilter, validated."""
    conditions: list[str] = []
    params: dict[str, Any] = {"uid": principal.user_id}
    if not where.all_users:
        conditions.append("m.user_id = %(uid)s")
    query = check_query(where.query)
    if query.strip():
        params["q"] = query
        conditions.append("m.search @@ websearch_to_tsquery('simple', %(q)s)")
    if where.conversation_id is not None:
        params["cid"] = parse_uuid(where.conversation_id)
        conditions.append("m.conversation_id = %(cid)s")
    if where.role is not None:
        params["role"] = check_role(where.role)
        conditions.append("m.role = %(role)s")
    if where.model is not None:
        params["model"] = clean_model(where.model)
        conditions.append("m.model = %(model)s")
    if where.status is not None:
        params["status"] = check_status(where.status)
        conditions.append("m.status = %(status)s")
    if where.since is not None:
        params["since"] = check_instant(where.since, "start")
        conditions.append("m.created_at >= %(since)s")
    if where.until is not None:
        params["until"] = check_instant(where.until, "end")
        conditions.append("m.created_at < %(until)s")
    if where.feedback is not None:
        choice = check_feedback_filter(where.feedback)
        conditions.append(FEEDBACK_CONDITIONS[choice])
        if choice != "none" and not where.all_users:
            # Feedback's owner is always its message's (the write policies see to it). Said again on the
            # feedback side so Postgres can walk the (user_id, rating, ...) index: the policies' OR of
            # "own" and "reviewer" cannot use it, and without this it read all 200,000 of a heavy
            # user's messages to find their 2,000 thumbs up (~180 ms, bench/history.py).
            conditions.append("f.user_id = %(uid)s")
    return conditions, params


def _search_call(where: MessageFilter, params: dict[str, Any], *, newer: bool) -> tuple[str, dict[str, Any]]:
    """The call of public.search_messages for a validated filter (params from _history_conditions plus
    the cursor). No user id is passed: the function takes the caller from the transaction's claims."""
    args = {
        "q": params["q"],
        "n": params["n"],
        "ts": params.get("ts"),
        "id": params.get("id"),
        "newer": newer,
        "cid": params.get("cid"),
        "role": params.get("role"),
        "model": params.get("model"),
        "status": params.get("status"),
        "since": params.get("since"),
        "until": params.get("until"),
        "all": where.all_users,
    }
    query = (
        f"select {SEARCH_COLUMNS} from public.search_messages(%(q)s, %(n)s, %(ts)s, %(id)s,"
        " %(newer)s, %(cid)s, %(role)s, %(model)s, %(status)s, %(since)s, %(until)s, %(all)s) m"
        # one page of rows: their feedback by primary key, under the feedback table's own policies
        " left join public.feedback f on f.message_id = m.id"
    )
    return query, args
