"""Mutation testing of the code where a silent regression costs most: prints, per target, the share of
mutants the tests kill and the surviving mutants (as diffs), so they can be killed or explained.

Not part of the test command (minutes per target). Run from the repository root:

    .venv/bin/python bench/mutation.py                 # every target
    .venv/bin/python bench/mutation.py auth tx         # some targets, by name
    .venv/bin/python bench/mutation.py --max-children 2 auth

Tool: mutmut 3 (requirements-dev.txt). It needs a copy of the project to write its `mutants/` tree in,
so each target runs in its own temporary copy of the tracked files; nothing here is changed. Each
target mutates one file (optionally only some functions of it, by mutmut's mutant-name patterns) and
runs only the test files that cover it, which is what keeps a run in minutes.

mutmut 3 does not mutate decorated functions, and the transaction helper is two @contextmanager
functions; so that target lists its mutants by hand (HAND_MUTANTS: the operators mutmut would apply
there, plus the ones that matter for it), applied one at a time to the copy, with the same test run.

Survivors that cannot change any output (equivalent mutants) are explained in docs/mutation-triage.md;
any survivor not listed there is a gap in the tests.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
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
        ("tests/test_chat_service.py", "tests/test_chat_service_paths.py"),
    ),
    Target(
        "markdown",
        "components/markdown.py",
        ("tests/test_markdown.py", "tests/test_markdown_fidelity.py", "tests/test_markdown_property.py"),
        timeout_multiplier=2.0,
    ),
)

# Copied beside the mutated file so the tests can import everything they need.
PROJECT_PARTS = ("services", "components", "pages", "api", "app.py", "supabase", ".streamlit", "tests")


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
        # The database fixtures start a PostgreSQL per run: give slow mutants room before calling them hung.
        "timeout_constant = 60\n"
        f"timeout_multiplier = {target.timeout_multiplier}\n"
    )


RESULT_LINE = re.compile(r"^\s*(?P<name>\S+__mutmut_\d+): (?P<status>.+)$")


def run_hand_mutants(target: Target) -> tuple[int, int, list[str]]:
    with tempfile.TemporaryDirectory(prefix=f"mutation-{target.name}-") as tmp:
        work = Path(tmp)
        tracked_copy(work)
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
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            print(f"  {'killed  ' if done.returncode else 'SURVIVED'} {what}", flush=True)
            if done.returncode == 0:
                survivors.append(f"{what}:\n- {old}\n+ {new}\n")
        path.write_text(original)
        return len(target.hand_mutants) - len(survivors), len(target.hand_mutants), survivors


def run_target(target: Target, max_children: int | None) -> tuple[int, int, list[str]]:
    if target.hand_mutants:
        return run_hand_mutants(target)
    with tempfile.TemporaryDirectory(prefix=f"mutation-{target.name}-") as tmp:
        work = Path(tmp)
        tracked_copy(work)
        (work / "setup.cfg").write_text(setup_cfg(target))
        mutmut = [sys.executable, "-c", "from mutmut.__main__ import cli; cli()"]
        run = [*mutmut, "run", *(["--max-children", str(max_children)] if max_children else []), *target.functions]
        subprocess.run(run, cwd=work, check=False, stdout=subprocess.DEVNULL)
        listing = subprocess.run(
            [*mutmut, "results", "--all", "true"], cwd=work, check=True, capture_output=True, text=True
        ).stdout
        statuses: dict[str, str] = {}
        for line in listing.splitlines():
            match = RESULT_LINE.match(line)
            if match:
                statuses[match["name"]] = match["status"].strip()
        if target.functions:
            patterns = [re.compile(re.escape(p).replace(r"\*", ".*") + "$") for p in target.functions]
            statuses = {n: s for n, s in statuses.items() if any(p.match(n) for p in patterns)}
        killed = sum(1 for s in statuses.values() if s in ("killed", "timeout", "caught by type check"))
        survivors = sorted(n for n, s in statuses.items() if s in ("survived", "no tests"))
        diffs = [
            subprocess.run([*mutmut, "show", name], cwd=work, capture_output=True, text=True).stdout
            for name in survivors
        ]
        return killed, len(statuses), diffs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", nargs="*", help=f"target names: {', '.join(t.name for t in TARGETS)}")
    parser.add_argument("--max-children", type=int, default=None)
    args = parser.parse_args()
    chosen = [t for t in TARGETS if not args.targets or t.name in args.targets]
    table: list[tuple[str, int, int]] = []
    for target in chosen:
        killed, total, diffs = run_target(target, args.max_children)
        table.append((target.name, killed, total))
        print(f"\n=== {target.name} ({target.source}): {killed}/{total} killed, {len(diffs)} survived")
        for diff in diffs:
            print(diff)
    print("\ntarget      killed  total  score")
    for name, killed, total in table:
        score = f"{100 * killed / total:.0f}%" if total else "n/a"
        print(f"{name:<10} {killed:>7} {total:>6} {score:>6}")


if __name__ == "__main__":
    main()
