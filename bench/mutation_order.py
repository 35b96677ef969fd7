"""pytest plugin for bench/mutation.py (loaded with `-p bench.mutation_order` in every mutmut test run).

mutmut hands pytest a mutant's tests as node ids in set order, so the test modules come interleaved, and
pytest tears a module's fixtures down (its database: drop, create, migrate; its wire servers) each time the
next test belongs to another module, and sets them up again when the module comes back. A run of 150 tests
then rebuilt a database a hundred times. Here the tests are put back together by module: modules whose
chosen tests ran fastest in mutmut's stats run come first (a mutant is then more often killed early, and
`-x` stops the run), each module's tests in the order they are written.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

STATS = Path("mutmut-stats.json")  # mutmut runs pytest inside its mutants/ directory


def _durations() -> dict[str, float]:
    try:
        found = json.loads(STATS.read_text())["duration_by_test"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}  # the stats run itself: nothing measured yet
    return {str(k): float(v) for k, v in found.items()}


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    durations = _durations()
    cost: dict[str, float] = {}
    first_seen: dict[str, int] = {}
    for index, item in enumerate(items):
        module = item.nodeid.split("::", 1)[0]
        cost[module] = cost.get(module, 0.0) + durations.get(item.nodeid, 0.0)
        first_seen.setdefault(module, index)

    def key(item: pytest.Item) -> tuple[float, int, int]:
        module = item.nodeid.split("::", 1)[0]
        return cost[module], first_seen[module], item.location[1] or 0

    items.sort(key=key)  # stable: a function's parametrized cases keep their order
