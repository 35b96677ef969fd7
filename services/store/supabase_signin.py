"""Sessions, sign-in attempt counters and the audit log over Supabase's Data API (CHAT_AUTH=local, issue 16).

The same operations as services/store/signin.py's PostgresSigninStore, through the same SQL functions
(migration 20261128001710): pre-sign-in work is one `.rpc()` of a `public.signin_*` function with the
app's narrow sign-in token, which no table policy admits; what a signed-in person does to their own
sessions and the audit log goes as that person, through row-level security. Requests, retries and
errors are SupabaseStore's (one request per step, no retries but a re-minted expired token).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from postgrest.types import ReturnMethod

from services.auth import Principal
from services.store.signin import Attempts, AuditRow, SessionRow
from services.store.supabase import SupabaseStore, from_row
from supabase import Client

SESSION_COLUMNS = "id,user_id,created_at,last_seen_at,expires_at,idle_timeout_s,revoked_at,user_agent,client_address"
NO_SESSION = "That session does not exist."
# Cut as public.signin_open_session cuts them, so the values sent are the values stored.
MAX_USER_AGENT = 300
MAX_CLIENT_ADDRESS = 64


def instant(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


class SupabaseSigninStore:
    """Shares the Supabase store's HTTP pool and token minter; holds no state of its own."""

    def __init__(self, store: SupabaseStore) -> None:
        self.store = store

    def close(self) -> None:
        pass  # the store owns the HTTP pool

    def access_problem(self) -> str | None:
        return None  # nothing to grant: the functions accept the app's sign-in token

    def _signin(self, fn: str, args: dict[str, Any]) -> Any:
        def build(c: Client) -> Any:
            return c.rpc(fn, {k: v.isoformat() if isinstance(v, datetime) else v for k, v in args.items()})

        return self.store._send(self.store.minter.for_signin, build, NO_SESSION).data

    def _as(self, principal: Principal, build: Callable[[Client], Any]) -> Any:
        return self.store._as(principal, build, NO_SESSION)

    # --- sessions: the sign-in service ---------------------------------------------------------------

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
        rows = self._signin(
            "signin_open_session",
            {
                "p_user_id": user_id,
                "p_secret_hash": secret_hash,
                "p_now": instant(now),
                "p_expires_at": instant(now + lifetime_s),
                "p_idle_timeout_s": idle_timeout_s,
                "p_user_agent": user_agent[:MAX_USER_AGENT],
                "p_client_address": client_address[:MAX_CLIENT_ADDRESS],
            },
        )
        return from_row(SessionRow, rows[0] if isinstance(rows, list) else rows)

    def find_session(self, secret_hash: str, *, now: float, touch_after_s: float) -> SessionRow | None:
        rows = self._signin(
            "signin_find_session",
            {"p_secret_hash": secret_hash, "p_now": instant(now), "p_touch_after_s": float(touch_after_s)},
        )
        row = rows[0] if isinstance(rows, list) and rows else rows if isinstance(rows, dict) else None
        if not row or row.get("id") is None:
            return None
        return from_row(SessionRow, row)

    def revoke_by_hash(self, secret_hash: str, *, now: float) -> str | None:
        found = self._signin("signin_revoke_session", {"p_secret_hash": secret_hash, "p_now": instant(now)})
        return None if found is None else str(found)

    def revoke_user_sessions(self, user_id: str, *, now: float, keep: uuid.UUID | None = None) -> int:
        count = self._signin(
            "signin_revoke_user_sessions",
            {"p_user_id": user_id, "p_now": instant(now), "p_keep": None if keep is None else str(keep)},
        )
        return int(count or 0)

    def delete_user_sessions(self, user_id: str) -> None:
        self._signin("signin_delete_user_sessions", {"p_user_id": user_id})

    # --- sessions: the signed-in user ----------------------------------------------------------------

    def list_sessions(self, principal: Principal, *, now: float) -> list[SessionRow]:
        moment = instant(now)
        rows = self._as(
            principal,
            lambda c: (
                c.table("sessions")
                .select(SESSION_COLUMNS)
                .is_("revoked_at", "null")
                .gt("expires_at", moment.isoformat())
                .order("last_seen_at", desc=True)
                .order("id")
            ),
        )
        return [s for s in (from_row(SessionRow, r) for r in rows) if s.is_live(moment)]

    def revoke_own_sessions(self, principal: Principal, *, now: float, keep: uuid.UUID | None) -> int:
        args = {"p_now": instant(now).isoformat(), "p_keep": None if keep is None else str(keep)}
        return int(self._as(principal, lambda c: c.rpc("revoke_own_sessions", args)) or 0)

    # --- sign-in attempts ----------------------------------------------------------------------------

    def attempts(self, keys: Sequence[str]) -> dict[str, Attempts]:
        rows = self._signin("signin_read_attempts", {"p_keys": list(keys)})
        return {
            str(r["key"]): Attempts(
                int(r["failures"]), None if r["blocked_until"] is None else datetime.fromisoformat(r["blocked_until"])
            )
            for r in rows
        }

    def record_failure(self, key: str, *, now: float, window_s: int, delay_for: Any) -> Attempts:
        """Count one failure (one upsert under the row lock in the function: replicas count exactly), then
        block the key for delay_for(failures). Two requests where the Postgres backend has one transaction:
        a crash between them leaves the failure counted and the next failure sets the block."""
        moment = instant(now)
        failures = int(
            self._signin("signin_record_failure", {"p_key": key, "p_now": moment, "p_window_s": int(window_s)}) or 1
        )
        delay = float(delay_for(failures))
        blocked = moment + timedelta(seconds=delay) if delay > 0 else None
        self._signin("signin_block", {"p_key": key, "p_blocked_until": blocked})
        return Attempts(failures, blocked)

    def clear_attempts(self, key: str) -> None:
        self._signin("signin_clear_attempts", {"p_key": key})

    # --- audit log -----------------------------------------------------------------------------------

    def audit(self, principal: Principal | None, action: str, target_id: str | None, detail: dict[str, Any]) -> None:
        detail = json.loads(json.dumps(detail, default=str))  # as the Postgres backend stores it
        if principal is None:
            self._signin("signin_audit", {"p_action": action, "p_target_id": target_id, "p_detail": detail})
            return
        row = {"actor_id": principal.user_id, "action": action, "target_id": target_id, "detail": detail}
        self._as(principal, lambda c: c.table("audit_log").insert(row, returning=ReturnMethod.minimal))

    def read_audit(self, principal: Principal, *, limit: int = 200) -> list[AuditRow]:
        n = max(1, min(limit, 1000))
        rows = self._as(
            principal,
            lambda c: (
                c.table("audit_log")
                .select("id,at,actor_id,action,target_id,detail")
                .order("at", desc=True)
                .order("id", desc=True)
                .limit(n)
            ),
        )
        return [from_row(AuditRow, r) for r in rows]
