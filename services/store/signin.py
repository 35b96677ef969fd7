"""Sessions, sign-in attempt counters and the audit log on PostgreSQL (local accounts).

Two kinds of transaction, both under row-level security:
- as the signed-in user (`as_principal`: role `authenticated` with the user's claims) for what a person
  does to their own sessions and what an administrator writes to or reads from the audit log;
- as `chat_signin` (`set local role`) with this app's sign-in claims for what happens before anyone is
  signed in: opening a session after a password check, finding a session by its cookie, counting
  failures. That work is done only by the `public.signin_*` functions (migration 20261128001710), which
  accept only the sign-in claims; the role itself can touch no table (20261128001700). The Supabase
  backend calls the same functions with a sign-in token.

Every time is passed in by the caller (services/sessions.py owns the clock), so tests can move it.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import class_row
from psycopg_pool import ConnectionPool, PoolTimeout

from services.auth import Principal
from services.store.postgres import as_principal, as_signin
from services.store.types import StoreUnavailable

SIGNIN_ROLE = "chat_signin"
SESSION_COLUMNS = (
    "id, user_id, created_at, last_seen_at, expires_at, idle_timeout_s, revoked_at, user_agent, client_address"
)
# Cut here as in public.signin_open_session, so the values sent are the values stored.
MAX_USER_AGENT = 300
MAX_CLIENT_ADDRESS = 64


@dataclass(frozen=True)
class SessionRow:
    id: uuid.UUID
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    idle_timeout_s: int
    revoked_at: datetime | None
    user_agent: str
    client_address: str

    def ends_at(self) -> datetime:
        """When this session stops working if nobody uses it: its idle limit or its end, whichever is first."""
        return min(self.expires_at, self.last_seen_at + timedelta(seconds=self.idle_timeout_s))

    def is_live(self, now: datetime) -> bool:
        return self.revoked_at is None and now < self.ends_at()


@dataclass(frozen=True)
class Attempts:
    failures: int
    blocked_until: datetime | None


@dataclass(frozen=True)
class AuditRow:
    id: int
    at: datetime
    actor_id: str
    action: str
    target_id: str | None
    detail: dict[str, Any]


def instant(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


class PostgresSigninStore:
    """Its own small pool (sign-in work is short and must not queue behind long chat transactions)."""

    def __init__(self, conninfo: str, *, pool_max: int = 4) -> None:
        self._pool = ConnectionPool(conninfo, min_size=1, max_size=pool_max, open=True, name="chat-signin")
        self._pool.wait(timeout=30)

    def close(self) -> None:
        self._pool.close()

    def pool_stats(self) -> dict[str, int]:
        """The pool's counters (psycopg_pool `get_stats`), for the metrics."""
        return self._pool.get_stats()

    def access_problem(self) -> str | None:
        """Why the app's login role cannot do sign-in work, or None. On the embedded database the migration
        grants `chat_signin` to it; any other database needs that grant once, by hand."""
        with self._pool.connection() as conn:
            row = conn.execute(
                "select current_user, coalesce(pg_has_role(current_user, %s, 'MEMBER'), false)", [SIGNIN_ROLE]
            ).fetchone()
        if row is None or row[1]:
            return None
        return (
            f"The database role {row[0]} cannot do sign-in work: run `grant {SIGNIN_ROLE} to {row[0]};` once "
            "as the role that ran the migrations (DATABASE_ADMIN_URL)."
        )

    @contextmanager
    def _service(self) -> Iterator[psycopg.Connection]:
        try:
            with as_signin(self._pool) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable("The database cannot be reached right now. Please try again.") from exc

    @contextmanager
    def _user(self, principal: Principal) -> Iterator[psycopg.Connection]:
        try:
            with as_principal(self._pool, principal) as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable("The database cannot be reached right now. Please try again.") from exc

    # --- sessions: the sign-in service ----------------------------------------------------------------

    def open_session(
        self,
        *,
        user_id: str,
        secret_hash: str,
        now: float,
        lifetime_s: int,
        idle_timeout_s: int,
        user_agent: str,
        client_address: str,
    ) -> SessionRow:
        with self._service() as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
            cur.execute(
                f"select {SESSION_COLUMNS} from public.signin_open_session(%s, %s, %s, %s, %s, %s, %s)",
                [
                    user_id,
                    secret_hash,
                    instant(now),
                    instant(now + lifetime_s),
                    idle_timeout_s,
                    user_agent[:MAX_USER_AGENT],
                    client_address[:MAX_CLIENT_ADDRESS],
                ],
            )
            row = cur.fetchone()
        assert row is not None
        return row

    def find_session(self, secret_hash: str, *, now: float, touch_after_s: float) -> SessionRow | None:
        """The live session with this cookie hash, its last use moved to `now` (at most once per
        `touch_after_s`, so a busy tab does not write on every click); None if unknown, revoked or over."""
        with self._service() as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
            cur.execute(
                f"select {SESSION_COLUMNS} from public.signin_find_session(%s, %s, %s)",
                [secret_hash, instant(now), float(touch_after_s)],
            )
            return cur.fetchone()

    def revoke_by_hash(self, secret_hash: str, *, now: float) -> str | None:
        """Revoke the session with this cookie hash; returns its user id (None if there was none)."""
        with self._service() as conn:
            found = conn.execute("select public.signin_revoke_session(%s, %s)", [secret_hash, instant(now)]).fetchone()
        return None if found is None or found[0] is None else str(found[0])

    def revoke_user_sessions(self, user_id: str, *, now: float, keep: uuid.UUID | None = None) -> int:
        """Revoke every live session of `user_id` but `keep` (password change, disabled account, deletion)."""
        with self._service() as conn:
            row = conn.execute(
                "select public.signin_revoke_user_sessions(%s, %s, %s)", [user_id, instant(now), keep]
            ).fetchone()
        return 0 if row is None else int(row[0])

    def delete_user_sessions(self, user_id: str) -> None:
        """Forget a deleted account's sessions (their addresses and browsers are its personal data)."""
        with self._service() as conn:
            conn.execute("select public.signin_delete_user_sessions(%s)", [user_id])

    # --- sessions: the signed-in user ----------------------------------------------------------------

    def list_sessions(self, principal: Principal, *, now: float) -> list[SessionRow]:
        """The caller's own live sessions, newest first (RLS shows nobody else's)."""
        with self._user(principal) as conn, conn.cursor(row_factory=class_row(SessionRow)) as cur:
            cur.execute(
                f"select {SESSION_COLUMNS} from public.sessions where revoked_at is null and expires_at > %s"
                " order by last_seen_at desc, id",
                [instant(now)],
            )
            rows = cur.fetchall()
        moment = instant(now)
        return [r for r in rows if r.is_live(moment)]

    def revoke_own_sessions(self, principal: Principal, *, now: float, keep: uuid.UUID | None) -> int:
        with self._user(principal) as conn:
            row = conn.execute("select public.revoke_own_sessions(%s, %s)", [instant(now), keep]).fetchone()
        return 0 if row is None else int(row[0])

    # --- sign-in attempts ----------------------------------------------------------------------------

    def attempts(self, keys: Sequence[str]) -> dict[str, Attempts]:
        with self._service() as conn:
            rows = conn.execute(
                "select key, failures, blocked_until from public.signin_read_attempts(%s)", [list(keys)]
            ).fetchall()
        return {str(k): Attempts(int(f), b) for k, f, b in rows}

    def record_failure(self, key: str, *, now: float, window_s: int, delay_for: Any) -> Attempts:
        """Count one failure for `key` (a count older than `window_s` starts again at one) and block the
        key until now + delay_for(failures). One upsert under the row lock: replicas count exactly."""
        moment = instant(now)
        with self._service() as conn:
            row = conn.execute(
                "select public.signin_record_failure(%s, %s, %s)", [key, moment, int(window_s)]
            ).fetchone()
            failures = int(row[0]) if row else 1
            delay = float(delay_for(failures))
            blocked = moment + timedelta(seconds=delay) if delay > 0 else None
            conn.execute("select public.signin_block(%s, %s)", [key, blocked])
        return Attempts(failures, blocked)

    def clear_attempts(self, key: str) -> None:
        with self._service() as conn:
            conn.execute("select public.signin_clear_attempts(%s)", [key])

    # --- audit log -----------------------------------------------------------------------------------

    def audit(self, principal: Principal | None, action: str, target_id: str | None, detail: dict[str, Any]) -> None:
        """Append one entry: as the acting user (RLS checks actor = caller), or as the sign-in service."""
        params = [action, target_id, json.dumps(detail, separators=(",", ":"), default=str)]
        if principal is None:
            with self._service() as conn:
                conn.execute("select public.signin_audit(%s, %s, %s::jsonb)", params)
            return
        with self._user(principal) as conn:
            conn.execute(
                "insert into public.audit_log (actor_id, action, target_id, detail) values (%s, %s, %s, %s)",
                [principal.user_id, *params],
            )

    def read_audit(self, principal: Principal, *, limit: int = 200) -> list[AuditRow]:
        """Newest first; RLS shows rows only to administrators (everyone else gets an empty list)."""
        with self._user(principal) as conn, conn.cursor(row_factory=class_row(AuditRow)) as cur:
            cur.execute(
                "select id, at, actor_id, action, target_id, detail from public.audit_log order by at desc, id desc"
                " limit %s",
                [max(1, min(limit, 1000))],
            )
            return cur.fetchall()
