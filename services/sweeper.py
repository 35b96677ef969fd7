"""Finalises replies whose server died mid-reply: `streaming` rows with a stale heartbeat become `interrupted`.

One background thread per process sweeps at start-up and then every `interval_s` (a minute, or half the
stale limit when that is shorter). Replicas sweeping at the same time is harmless: the sweep is one
idempotent update in the database (migration 20261128001300, which explains who may run it and why).
A sweep that fails (database down, role not granted) is logged and tried again at the next interval.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from services.store import StoreError

log = logging.getLogger(__name__)

SWEEP_EVERY_S = 60.0


class Sweepable(Protocol):
    def sweep_stale_replies(self, stale_after_s: int) -> int: ...


class Sweeper:
    def __init__(self, store: Sweepable, stale_after_s: int, interval_s: float | None = None) -> None:
        self.store = store
        self.stale_after_s = stale_after_s
        self.interval_s = interval_s if interval_s is not None else min(SWEEP_EVERY_S, max(1.0, stale_after_s / 2))
        self.swept = 0  # replies finalised by this process, for logs and tests
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chat-sweeper", daemon=True)

    def start(self) -> Sweeper:
        self._thread.start()
        return self

    def sweep_once(self) -> int:
        try:
            n = self.store.sweep_stale_replies(self.stale_after_s)
        except StoreError as exc:
            log.warning("could not sweep stale replies: %s", exc)
            return 0
        if n:
            log.info("finalised %d reply(ies) left streaming by a server that stopped", n)
        self.swept += n
        return n

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sweep_once()
            except Exception:  # noqa: BLE001 - the thread must outlive one bad sweep
                log.exception("sweeping stale replies failed")
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)
