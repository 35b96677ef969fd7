"""Per-user request limits kept in Postgres, so every app replica shares one count.

A fixed one-minute window per user, advanced by one upsert: `insert ... on conflict do update` takes the
row lock, so concurrent requests from several replicas are counted exactly once each. The statement runs
as the user (role `authenticated` + their claims), so row-level security keeps the counters private.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import psycopg
from psycopg_pool import ConnectionPool

from services.auth import Principal
from services.store.postgres import as_principal

log = logging.getLogger(__name__)

WINDOW_S = 60

_HIT = """
insert into public.rate_limits as r (user_id, window_start, hits) values (%(uid)s, now(), 1)
on conflict (user_id) do update set
  window_start = case when r.window_start <= now() - %(window)s::interval then now() else r.window_start end,
  hits = case when r.window_start <= now() - %(window)s::interval then 1 else r.hits + 1 end
returning hits, extract(epoch from (window_start + %(window)s::interval - now()))::float8
"""


class RateLimited(Exception):
    """Too many requests in the current window. The message is safe to show."""

    def __init__(self, retry_after_s: int, limit: int) -> None:
        self.retry_after_s = retry_after_s
        self.limit = limit
        self.message = (
            f"You have sent {limit} messages in the last minute, the limit. "
            f"Please wait {retry_after_s} s and send again; your message is kept."
        )
        super().__init__(self.message)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    hits: int
    retry_after_s: int


class RateLimiter:
    """`limit_per_minute` 0 turns limiting off (no database work at all)."""

    def __init__(self, conninfo: str | None, limit_per_minute: int, *, pool_max: int = 4) -> None:
        self.limit = limit_per_minute
        self._pool: ConnectionPool | None = None
        if limit_per_minute > 0:
            if conninfo is None:
                raise ValueError("a database is needed for rate limiting")
            self._pool = ConnectionPool(conninfo, min_size=1, max_size=pool_max, open=True, name="chat-ratelimit")

    def hit(self, principal: Principal) -> Decision:
        """Count one request for the principal and say whether it is within the limit."""
        if self._pool is None:
            return Decision(True, 0, 0)
        with as_principal(self._pool, principal) as conn:
            row = conn.execute(_HIT, {"uid": principal.user_id, "window": f"{WINDOW_S} seconds"}).fetchone()
        assert row is not None
        hits, remaining = int(row[0]), float(row[1])
        return Decision(hits <= self.limit, hits, max(1, math.ceil(remaining)))

    def check(self, principal: Principal) -> None:
        """Count one request; raise RateLimited when over the limit."""
        try:
            decision = self.hit(principal)
        except psycopg.Error as exc:
            # The limiter guards cost, not correctness: if its table cannot be reached, let the message through
            # rather than lose it, and let the store (same database) report a real outage.
            log.warning("rate limiter unavailable, allowing the request: %s", type(exc).__name__)
            return
        if not decision.allowed:
            raise RateLimited(decision.retry_after_s, self.limit)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
