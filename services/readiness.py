"""Is this process ready to serve: the database answers, and the schema the code expects is in place.

Migrations are applied before the services exist (services/runtime.py `connect_store` runs them and
refuses to start when one fails), and the app's login role cannot read the migration table, so "applied"
is what start-up established; the live check is the database round trip. A new migration arrives with new
code, which means a new process.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from services.store import StoreUnavailable
from services.store.migrate import discover


class Pingable(Protocol):
    def ping(self, timeout_s: float = 3.0) -> None: ...


@dataclass(frozen=True)
class Readiness:
    ready: bool
    database: str  # "ok" or why not
    schema_version: str  # the newest migration this code ships (applied at start-up)


def check_ready(store: Pingable) -> Readiness:
    migrations = discover()
    version = migrations[-1].version if migrations else ""
    try:
        store.ping()
    except StoreUnavailable as exc:
        return Readiness(False, exc.message, version)
    return Readiness(True, "ok", version)
