"""Per-user request limits, counted by the store so every app replica shares one count.

The policy (how many per minute, what to tell the user, what to do when the count cannot be kept) lives
here; the counting (`RateLimitCounter.count_request`) lives in the store backend, on its one pool.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from services.auth import Principal
from services.errors import UserError
from services.store import RateLimitCounter, StoreError

log = logging.getLogger(__name__)

WINDOW_S = 60


class RateLimited(UserError):
    """Too many requests in the current window. The message is safe to show."""

    def __init__(self, retry_after_s: int, limit: int) -> None:
        self.retry_after_s = retry_after_s
        self.limit = limit
        super().__init__(
            f"You have sent {limit} messages in the last minute, the limit. "
            f"Please wait {retry_after_s} s and send again; your message is kept."
        )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    hits: int
    retry_after_s: int


class RateLimiter:
    """`limit_per_minute` 0 turns limiting off (no database work at all). `on_refused` is called for each
    refusal (the metrics count them)."""

    def __init__(
        self,
        counter: RateLimitCounter | None,
        limit_per_minute: int,
        on_refused: Callable[[], None] | None = None,
    ) -> None:
        if limit_per_minute > 0 and counter is None:
            raise ValueError("a request counter is needed for rate limiting")
        self.limit = limit_per_minute
        self._counter = counter if limit_per_minute > 0 else None
        self._on_refused = on_refused

    def hit(self, principal: Principal) -> Decision:
        """Count one request for the principal and say whether it is within the limit."""
        if self._counter is None:
            return Decision(True, 0, 0)
        count = self._counter.count_request(principal, WINDOW_S)
        return Decision(count.hits <= self.limit, count.hits, max(1, math.ceil(count.resets_in_s)))

    def check(self, principal: Principal) -> None:
        """Count one request; raise RateLimited when over the limit."""
        try:
            decision = self.hit(principal)
        except StoreError as exc:
            # The limiter guards cost, not correctness: if the count cannot be kept, let the message through
            # rather than lose it, and let the store (same database) report a real outage.
            log.warning("rate limiter unavailable, allowing the request: %s", type(exc).__name__)
            return
        if not decision.allowed:
            if self._on_refused is not None:
                self._on_refused()
            raise RateLimited(decision.retry_after_s, self.limit)
