"""History paging benchmark: keyset vs OFFSET, and what row-level security costs.

    python bench/history.py [--data-dir .data/bench] [--reps 200] [--json-only]

Seeds (once; reused by later runs) 1,000,000 messages across 1,000 users into the embedded PostgreSQL,
one heavy user owning 200,000 of them, then prints p50/p95 latency of `PostgresStore.page_messages`
for the heavy user at page depths 1, 100, 1,000 and the last page, beside the same pages fetched with
OFFSET, and the RLS cost: the same keyset query run by the table owner with RLS off.
Targets: keyset p50 < 2 ms at every depth; keyset >= 100x faster than OFFSET at depth 1,000;
RLS overhead < 1.3x.

History page (issue 5), same data: `PostgresStore.search_messages` pages for the heavy user, for a
full-text search and for a filter, at depth 1 and 1,000 (targets p50 < 20 ms search, < 2 ms filter),
plus worst cases (a term in one message; a term with filters just too rare for the bounded walk; the
reviewer's all-users search; a filter nothing matches), and a full CSV export of the
heavy user's 200,000 messages in a child process: seconds and peak RSS (targets < 10 s, < 300 MB).
`--only-history` skips the keyset/OFFSET part.

Feedback (issue 15), same data plus feedback on 2% of every user's replies (a third of them with a
comment): the feedback filter's pages (up, down, comment, none; with a search; the reviewer's all-users
view) beside the unfiltered listing, which now carries each row's feedback through a primary-key join,
and the usage chart's query (feedback counts per day) over the heavy user's year.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import psycopg

from services import export
from services.app_tokens import APP_ISSUER, user_claims
from services.auth import Principal
from services.store import MessageFilter, embedded
from services.store.migrate import migrate
from services.store.postgres import MESSAGE_COLUMNS, PostgresStore

TOTAL = 1_000_000
USERS = 1_000
HEAVY_ROWS = 200_000
PER_CONVERSATION = 50
PAGE = 20
HEAVY = "user_heavy"
SEED_TAG = f"v2:{TOTAL}:{USERS}:{HEAVY_ROWS}"
FEEDBACK_TAG = "feedback:v3"
FEEDBACK_EVERY = 50  # one reply in 50 (2%) has feedback

WORDS = (
    "postgres streamlit python keyset cursor index latency stream token model reply prompt search export "
    "chart delete review history paging anthropic openai ollama vllm llama supabase clerk policy security "
    "session browser render markdown table filter usage budget context window chunk buffer socket replica "
    "invoice travel recipe garden weather football music theatre novel poem physics algebra biology "
    "history river mountain coffee bicycle holiday meeting deadline budget report summary translate"
).split()


def seed(admin_url: str) -> None:
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute("create table if not exists public.bench_seed (tag text primary key)")
        if conn.execute("select 1 from public.bench_seed where tag = %s", [SEED_TAG]).fetchone():
            print("seed: reusing the 1,000,000 seeded messages", file=sys.stderr)
            return
        started = time.perf_counter()
        conn.execute("truncate public.messages, public.conversations cascade")
        conversations = TOTAL // PER_CONVERSATION
        heavy_conversations = HEAVY_ROWS // PER_CONVERSATION
        with conn.transaction():
            # Seeding only: skip per-row triggers and FK checks; the data is consistent by construction.
            conn.execute("set local session_replication_role = replica")
            conn.execute(
                "insert into public.conversations (id, user_id, title, created_at, updated_at)"
                " select md5('c' || c)::uuid,"
                "   case when c < %(hc)s then %(heavy)s else 'user_' || lpad((c %% %(others)s)::text, 4, '0') end,"
                "   'Conversation ' || c, %(t0)s::timestamptz, %(t0)s::timestamptz"
                " from generate_series(0, %(n)s - 1) c",
                {
                    "hc": heavy_conversations,
                    "heavy": HEAVY,
                    "others": USERS - 1,
                    "n": conversations,
                    "t0": "2025-01-01",
                },
            )
            # Timestamps: the heavy user's conversations are spread over the same year as everyone
            # else's, and every third message shares its timestamp with a neighbour (ties on purpose).
            # Rows are inserted in time order, as a live system appends them: the heavy user's messages
            # are interleaved with everyone else's on disk, so reading 20,000 of them touches many pages.
            conn.execute(
                "insert into public.messages (id, conversation_id, user_id, role, content, model, status,"
                "  input_tokens, output_tokens, latency_ms, created_at)"
                " select * from (select md5('m' || g)::uuid, md5('c' || (g / %(per)s))::uuid,"
                "   case when g / %(per)s < %(hc)s then %(heavy)s"
                "        else 'user_' || lpad(((g / %(per)s) %% %(others)s)::text, 4, '0') end,"
                "   case when g %% 2 = 0 then 'user' else 'assistant' end,"
                "   'Message ' || g || ': ' || (%(words)s::text[])[1 + (g * 7) %% %(nw)s] || ' '"
                "     || (%(words)s::text[])[1 + (g * 13) %% %(nw)s] || ' '"
                "     || (%(words)s::text[])[1 + (g * 31) %% %(nw)s] || ' '"
                "     || (%(words)s::text[])[1 + (g * 61) %% %(nw)s] || ' and '"
                "     || (%(words)s::text[])[1 + (g * 97) %% %(nw)s],"
                "   (array['demo/echo-1','openai/gpt-4o-mini','anthropic/claude-haiku-4-5'])[1 + g %% 3],"
                "   'complete', 10 + g %% 50, case when g %% 2 = 0 then null else 20 + g %% 300 end,"
                "   case when g %% 2 = 0 then null else 200 + g %% 900 end,"
                "   timestamptz '2025-01-01' + ((((g / %(per)s) * 7919) %% %(n_conv)s) * interval '31 minutes')"
                "     + ((g %% %(per)s) / 3) * interval '20 seconds' as created_at"
                " from generate_series(0, %(total)s - 1) g) rows order by created_at",
                {
                    "per": PER_CONVERSATION,
                    "hc": heavy_conversations,
                    "heavy": HEAVY,
                    "others": USERS - 1,
                    "words": list(WORDS),
                    "nw": len(WORDS),
                    "n_conv": conversations,
                    "total": TOTAL,
                },
            )
            conn.execute(
                "update public.conversations c set updated_at = m.last, created_at = m.first"
                " from (select conversation_id, min(created_at) first, max(created_at) last"
                "       from public.messages group by conversation_id) m where m.conversation_id = c.id"
            )
            conn.execute("insert into public.bench_seed values (%s)", [SEED_TAG])
        conn.execute("vacuum analyze public.messages")
        conn.execute("vacuum analyze public.conversations")
        print(f"seed: 1,000,000 messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def seed_feedback(admin_url: str) -> None:
    """Feedback on every FEEDBACK_EVERY-th reply, alternately up and down, a comment on every third one
    (seeded once, after the messages; reseeding the messages empties it through the foreign key)."""
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if conn.execute("select 1 from public.bench_seed where tag = %s", [FEEDBACK_TAG]).fetchone():
            return
        conn.execute("delete from public.bench_seed where tag like 'feedback:%'")
        started = time.perf_counter()
        with conn.transaction():
            conn.execute("set local session_replication_role = replica")
            conn.execute("truncate public.feedback")
            conn.execute(
                "insert into public.feedback (message_id, user_id, rating, comment, created_at, updated_at,"
                " message_created_at)"
                f" select id, user_id, case when (n / {FEEDBACK_EVERY}) % 2 = 0 then 1 else -1 end,"
                f"   case when (n / {FEEDBACK_EVERY}) % 3 = 0 then 'comment on ' || left(content, 40) end,"
                "   created_at, created_at, created_at"
                " from (select id, user_id, content, created_at, row_number() over (order by id) as n"
                "       from public.messages where role = 'assistant') r"
                f" where n % {FEEDBACK_EVERY} = 0"
            )
            conn.execute("insert into public.bench_seed values (%s)", [FEEDBACK_TAG])
        conn.execute("vacuum analyze public.feedback")
        print(f"seed: feedback in {time.perf_counter() - started:.1f} s", file=sys.stderr)


def timed(fn: Callable[[], Any]) -> Callable[[], float]:
    """Wall-clock milliseconds of one call of fn, as seen by the client (round trips included)."""

    def run() -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1000

    return run


def sample(entries: dict[str, tuple[Callable[[], float], int]], budget_s: float = 20.0) -> dict[str, dict[str, float]]:
    """Collect up to `reps` samples (ms) per entry, interleaved round-robin so that noise from other
    processes on a shared machine lands on every variant alike; 3 warm-ups each; p50/p95 per entry."""
    for fn, _ in entries.values():
        for _ in range(3):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in entries}
    deadline = time.perf_counter() + budget_s
    while True:
        pending = [n for n, (_, reps) in entries.items() if len(samples[n]) < reps]
        if not pending or (time.perf_counter() > deadline and all(len(samples[n]) >= 5 for n in pending)):
            break
        for name in pending:
            samples[name].append(entries[name][0]())
    out = {}
    for name, values in samples.items():
        values.sort()
        out[name] = {
            "p50_ms": round(statistics.median(values), 4),
            "p95_ms": round(values[min(len(values) - 1, int(len(values) * 0.95))], 4),
            "n": len(values),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=str(ROOT / ".data" / "bench"))
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--json-only", action="store_true")
    parser.add_argument("--only-history", action="store_true", help="only the search/filter/export part")
    parser.add_argument("--export-child", choices=["csv", "json"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_child:
        export_child(Path(args.data_dir), args.export_child)
        return

    db = embedded.start(Path(args.data_dir), database="bench")
    migrate(db.admin_url)
    seed(db.admin_url)
    seed_feedback(db.admin_url)
    if args.only_history:
        history = history_section(db, args)
        print(json.dumps(history, indent=2))
        print_history_table(history)
        return

    principal = Principal(HEAVY)
    # The claims the store sets (services/app_tokens.py): the policies trust only this app's user claims.
    claims = json.dumps(user_claims(principal, APP_ISSUER, time.time(), lifetime=86_400))
    store = PostgresStore(db.app_url, max_message_chars=32_000, pool_max=2)
    app = psycopg.connect(db.app_url)  # the app's login role, as the store uses it
    owner = psycopg.connect(db.admin_url)  # the table owner (superuser): RLS does not apply

    with owner.cursor() as cur:
        heavy_rows = cur.execute("select count(*) from messages where user_id = %s", [HEAVY]).fetchone()[0]  # type: ignore[index]
    last_page = (heavy_rows + PAGE - 1) // PAGE
    depths = [1, 100, 1_000, last_page]

    keyset_sql = (
        f"select {MESSAGE_COLUMNS} from public.messages where user_id = %(uid)s"
        " and (created_at, id) < (%(ts)s, %(id)s) order by created_at desc, id desc limit %(n)s"
    )
    first_sql = (
        f"select {MESSAGE_COLUMNS} from public.messages where user_id = %(uid)s"
        " order by created_at desc, id desc limit %(n)s"
    )
    offset_sql = first_sql + " offset %(off)s"

    def as_user(sql: str, params: dict[str, Any]) -> Callable[[], Any]:
        def run() -> Any:
            with app.transaction():
                app.execute(
                    "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
                    [claims],
                )
                return app.execute(sql, params).fetchall()

        return run

    def app_tx() -> Any:
        app.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            [claims],
        )
        return app

    def owner_tx() -> Any:
        owner.execute("select set_config('request.jwt.claims', %s, true)", [claims])
        return owner

    def server_ms(begin: Callable[[], Any], sql: str, params: dict[str, Any]) -> Callable[[], float]:
        """Server-side execution time (EXPLAIN ANALYZE) of the query, without client round trips."""

        def run() -> float:
            conn = app if begin is app_tx else owner
            with conn.transaction():
                row = begin().execute("explain (analyze, timing off, format json) " + sql, params).fetchone()
            assert row is not None
            return float(row[0][0]["Execution Time"])

        return run

    def as_owner(sql: str, params: dict[str, Any]) -> Callable[[], Any]:
        def run() -> Any:
            with owner.transaction():
                owner.execute("select set_config('request.jwt.claims', %s, true)", [claims])
                return owner.execute(sql, params).fetchall()

        return run

    results: dict[str, Any] = {"rows_total": TOTAL, "rows_heavy_user": heavy_rows, "page_size": PAGE, "depths": {}}
    for depth in depths:
        params: dict[str, Any] = {"uid": HEAVY, "n": PAGE + 1, "off": (depth - 1) * PAGE}
        cursor = None
        sql = first_sql
        if depth > 1:
            row = owner.execute(
                "select created_at, id from messages where user_id = %s order by created_at desc, id desc"
                " limit 1 offset %s",
                [HEAVY, (depth - 1) * PAGE - 1],
            ).fetchone()
            assert row is not None
            params["ts"], params["id"] = row
            cursor = store.cursors.encode(principal, "messages", row[0], row[1])
            sql = keyset_sql
        page = store.page_messages(principal, limit=PAGE, before=cursor)
        offset_rows = as_user(offset_sql, {**params, "n": PAGE})()
        assert [m.id for m in page.items] == [r[0] for r in offset_rows], f"keyset and OFFSET disagree at {depth}"
        offset_reps = args.reps if depth < 1_000 else 30
        results["depths"][depth] = sample(
            {
                "keyset_store": (timed(partial(store.page_messages, principal, limit=PAGE, before=cursor)), args.reps),
                "keyset_sql": (timed(as_user(sql, params)), args.reps),
                "offset_sql": (timed(as_user(offset_sql, {**params, "n": PAGE})), offset_reps),
                "keyset_sql_owner_no_rls": (timed(as_owner(sql, params)), args.reps),
                "keyset_server": (server_ms(app_tx, sql, params), args.reps),
                "offset_server": (server_ms(app_tx, offset_sql, {**params, "n": PAGE}), offset_reps),
                "keyset_server_owner_no_rls": (server_ms(owner_tx, sql, params), args.reps),
            }
        )

    store.close()
    app.close()
    owner.close()
    results["history"] = history_section(db, args)

    d1000 = results["depths"][1_000]
    results["summary"] = {
        "keyset_store_p50_max_ms": max(v["keyset_store"]["p50_ms"] for v in results["depths"].values()),
        "offset_over_keyset_at_1000": round(d1000["offset_sql"]["p50_ms"] / d1000["keyset_sql"]["p50_ms"], 1),
        "offset_over_keyset_at_1000_server": round(
            d1000["offset_server"]["p50_ms"] / d1000["keyset_server"]["p50_ms"], 1
        ),
        "rls_overhead_max": round(
            max(v["keyset_sql"]["p50_ms"] / v["keyset_sql_owner_no_rls"]["p50_ms"] for v in results["depths"].values()),
            2,
        ),
        "rls_overhead_max_server": round(
            max(
                v["keyset_server"]["p50_ms"] / v["keyset_server_owner_no_rls"]["p50_ms"]
                for v in results["depths"].values()
            ),
            2,
        ),
    }
    print(json.dumps(results, indent=2))
    if not args.json_only:
        print_table(results)
        print_history_table(results["history"])


def print_table(results: dict[str, Any]) -> None:
    print()
    print(
        "| page depth | store.page_messages p50 / p95 ms | keyset SQL p50 | OFFSET SQL p50 / p95 | OFFSET / keyset "
        "| server: keyset / OFFSET p50 | server ratio | owner, RLS off p50 (client / server) "
        "| RLS cost (client / server) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for depth, v in results["depths"].items():
        ks, kq, off, own = v["keyset_store"], v["keyset_sql"], v["offset_sql"], v["keyset_sql_owner_no_rls"]
        kserv, oserv, owserv = v["keyset_server"], v["offset_server"], v["keyset_server_owner_no_rls"]
        print(
            f"| {depth:,} | {ks['p50_ms']:.3f} / {ks['p95_ms']:.3f} | {kq['p50_ms']:.3f} "
            f"| {off['p50_ms']:.3f} / {off['p95_ms']:.3f} | {off['p50_ms'] / kq['p50_ms']:.1f}x "
            f"| {kserv['p50_ms']:.4f} / {oserv['p50_ms']:.3f} | {oserv['p50_ms'] / kserv['p50_ms']:.0f}x "
            f"| {own['p50_ms']:.3f} / {owserv['p50_ms']:.4f} "
            f"| {kq['p50_ms'] / own['p50_ms']:.2f}x / {kserv['p50_ms'] / owserv['p50_ms']:.2f}x |"
        )
    s = results["summary"]
    print()
    print("All times in ms. 'client' = wall clock through psycopg over the unix socket (BEGIN, claims, query,")
    print("COMMIT: four round trips); 'server' = EXPLAIN ANALYZE execution time of the query alone.")
    print(f"keyset store p50, worst depth: {s['keyset_store_p50_max_ms']:.3f} ms (target < 2 ms)")
    print(
        f"OFFSET / keyset at depth 1,000: {s['offset_over_keyset_at_1000']}x client, "
        f"{s['offset_over_keyset_at_1000_server']}x server (target >= 100x)"
    )
    print(
        f"RLS overhead, worst depth: {s['rls_overhead_max']}x client, {s['rls_overhead_max_server']}x server (< 1.3x)"
    )


# --- history page (issue 5): search, filters, export ---------------------------------------------------

SEARCHES = {
    # ~20% of messages: deep enough for page 1,000 (20,000 matches) in the heavy user's 200,000
    "search 'postgres or streamlit or python or keyset'": MessageFilter(
        query="postgres or streamlit or python or keyset"
    ),
    "search 'supabase' (one word, ~5%)": MessageFilter(query="supabase"),
    "filter assistant + openai/gpt-4o-mini": MessageFilter(role="assistant", model="openai/gpt-4o-mini"),
}
# Worst cases: a term too rare for the bounded walk (public.search_messages then takes the GIN index),
# a term plus filters just too rare for the walk (it pays both strategies), the reviewer's all-users
# search (1,000,000 rows), and a filter nothing matches.
WORST = {
    "search one message ('Message 1234')": MessageFilter(query='"message 1234"'),
    "search 'supabase budget' + role + model (0.25%)": MessageFilter(
        query="supabase budget", role="user", model="openai/gpt-4o-mini"
    ),
    "reviewer, all users: one message": MessageFilter(query='"message 1234"', all_users=True),
    "reviewer, all users: 'supabase budget' + role + model": MessageFilter(
        query="supabase budget", role="user", model="openai/gpt-4o-mini", all_users=True
    ),
    "filter nothing matches (status error)": MessageFilter(status="error"),
}
# The feedback filter (issue 15): thumbs and comments are driven from the feedback indexes, "none" walks
# the newest-first index with a primary-key anti-join (public.history_page, migration 20261128001910); with a
# search it is one more per-row condition inside public.search_messages.
FEEDBACK = {
    "feedback down (1% of replies)": MessageFilter(feedback="down"),
    "feedback up": MessageFilter(feedback="up"),
    "feedback with a comment": MessageFilter(feedback="comment"),
    "feedback none (replies nobody rated)": MessageFilter(feedback="none"),
    "search 'supabase' + feedback down": MessageFilter(query="supabase", feedback="down"),
    "reviewer, all users: feedback down": MessageFilter(feedback="down", all_users=True),
}
FEEDBACK_DEEP = {"feedback down (1% of replies)", "feedback none (replies nobody rated)"}


def oracle_conditions(principal: Principal, where: MessageFilter) -> tuple[list[str], dict[str, Any]]:
    """The filter as plain SQL for the table owner, written here on purpose rather than taken from the store:
    it is the independent answer each timed page is checked against (the owner bypasses RLS, so the
    caller's scope is spelled out)."""
    conditions = [] if where.all_users else ["m.user_id = %(uid)s"]
    params: dict[str, Any] = {"uid": principal.user_id}
    if where.feedback is not None:
        # Spelled out independently of the store's SQL (migration 20261128001910): the oracle of the timed pages.
        conditions.append(
            {
                "up": "exists (select 1 from public.feedback f where f.message_id = m.id and f.rating = 1)",
                "down": "exists (select 1 from public.feedback f where f.message_id = m.id and f.rating = -1)",
                "comment": "exists (select 1 from public.feedback f where f.message_id = m.id"
                " and f.comment is not null)",
                "none": "m.role = 'assistant' and not exists (select 1 from public.feedback f"
                " where f.message_id = m.id)",
            }[where.feedback]
        )
    if where.query.strip():
        conditions.append("m.search @@ websearch_to_tsquery('simple', %(q)s)")
        params["q"] = where.query
    for column in ("role", "model", "status"):
        value = getattr(where, column)
        if value is not None:
            conditions.append(f"m.{column} = %({column})s")
            params[column] = value
    return conditions, params


def history_section(db: embedded.EmbeddedDatabase, args: argparse.Namespace) -> dict[str, Any]:
    heavy = Principal(HEAVY)
    reviewer = Principal(HEAVY, claims={"roles": ["reviewer"]})
    store = PostgresStore(db.app_url, max_message_chars=32_000, pool_max=2)
    owner = psycopg.connect(db.admin_url)
    out: dict[str, Any] = {"searches": {}}
    try:
        for name, where in {**SEARCHES, **WORST, **FEEDBACK}.items():
            principal = reviewer if where.all_users else heavy
            conditions, params = oracle_conditions(principal, where)
            total = owner.execute(
                f"select count(*) from public.messages m where {' and '.join(conditions)}", params
            ).fetchone()[0]  # type: ignore[index]
            depths = [1, 1_000] if name in SEARCHES else [1, 50] if name in FEEDBACK_DEEP else [1]
            entries: dict[str, tuple[Callable[[], float], int]] = {}
            for depth in depths:
                if depth > 1 and (depth - 1) * PAGE >= total:
                    continue
                cursor = None
                if depth > 1:
                    row = owner.execute(
                        f"select m.created_at, m.id from public.messages m where {' and '.join(conditions)}"
                        " order by m.created_at desc, m.id desc limit 1 offset %(off)s",
                        {**params, "off": (depth - 1) * PAGE - 1},
                    ).fetchone()
                    assert row is not None
                    cursor = store.cursors.encode(principal, where.scope(), row[0], row[1])
                page = store.search_messages(principal, where, PAGE, before=cursor)
                expected = owner.execute(
                    f"select m.id from public.messages m where {' and '.join(conditions)}"
                    " order by m.created_at desc, m.id desc limit %(n)s offset %(off)s",
                    {**params, "n": PAGE, "off": (depth - 1) * PAGE},
                ).fetchall()
                assert [r.id for r in page.items] == [r[0] for r in expected], f"{name}: wrong page at {depth}"
                reps = args.reps if name in SEARCHES or name in FEEDBACK else 10
                entries[f"depth {depth:,}"] = (
                    timed(partial(store.search_messages, principal, where, PAGE, before=cursor)),
                    reps,
                )
            out["searches"][name] = {"matches": total, **sample(entries, budget_s=15.0)}
        # The usage chart's query (now with feedback counts per day): the heavy user's whole year.
        since, until = datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
        usage = partial(store.usage_by_day, heavy, since, until, "UTC")
        out["usage_by_day"] = sample({"heavy user, one year": (timed(usage), 20)}, budget_s=15.0)
        out["export"] = export_in_child(args.data_dir, "csv")
        out["export_json"] = export_in_child(args.data_dir, "json")
    finally:
        store.close()
        owner.close()
    return out


def export_in_child(data_dir: str, fmt: str) -> dict[str, Any]:
    """Peak RSS is per process: run the export alone in a fresh interpreter to measure it cleanly."""
    done = subprocess.run(
        [sys.executable, __file__, "--export-child", fmt, "--data-dir", data_dir],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def export_child(data_dir: Path, fmt: str) -> None:
    """What a download button does: stream the export into a temp file, then Streamlit reads it."""
    db = embedded.start(data_dir, database="bench")
    store = PostgresStore(db.app_url, max_message_chars=32_000, pool_max=1)
    principal = Principal(HEAVY)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    chunks = export.export_csv(store, principal) if fmt == "csv" else export.export_json(store, principal)
    spooled = export.spool(chunks)
    built = time.perf_counter() - started
    rss_built = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data = spooled.read()  # st.download_button reads a file-like into bytes once
    total = time.perf_counter() - started
    rss_with_bytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    store.close()
    if fmt == "csv":  # counted after the RSS readings
        rows = sum(1 for _ in csv.reader(io.StringIO(data.decode()))) - 1
    else:
        rows = len(json.loads(data)["messages"])
    result = {
        "rows": rows,
        "bytes": len(data),
        "build_s": round(built, 2),
        "build_and_read_s": round(total, 2),
        "peak_rss_mb_before": round(rss_before, 1),
        "peak_rss_mb_built": round(rss_built, 1),
        "peak_rss_mb_with_bytes": round(rss_with_bytes, 1),
    }
    print(json.dumps(result))


def print_history_table(history: dict[str, Any]) -> None:
    print()
    print(
        "| history page, heavy user (200,000 messages) | matches | depth 1 p50 / p95 ms"
        " | deep p50 / p95 ms (depth 1,000; feedback: 50) |"
    )
    print("|---|---:|---:|---:|")
    for name, v in history["searches"].items():
        deep = "depth 50" if "depth 50" in v else "depth 1,000"
        cells = [f"{v[d]['p50_ms']:.2f} / {v[d]['p95_ms']:.2f}" if d in v else "-" for d in ("depth 1", deep)]
        print(f"| {name} | {v['matches']:,} | {cells[0]} | {cells[1]} |")
    print()
    for name, u in history.get("usage_by_day", {}).items():
        print(f"usage_by_day ({name}): p50 {u['p50_ms']:.2f} ms, p95 {u['p95_ms']:.2f} ms")
    for label, e in (("CSV", history["export"]), ("JSON", history["export_json"])):
        print_export(label, e)
    print("Targets: search p50 < 20 ms, filter p50 < 2 ms (depth 1 and 1,000); export < 10 s and < 300 MB RSS.")


def print_export(label: str, e: dict[str, Any]) -> None:
    print(
        f"{label} export: {e['rows']:,} rows, {e['bytes'] / 1e6:.1f} MB in {e['build_s']} s "
        f"({e['build_and_read_s']} s with the read into bytes); peak RSS {e['peak_rss_mb_built']} MB built, "
        f"{e['peak_rss_mb_with_bytes']} MB holding the bytes (interpreter + imports: {e['peak_rss_mb_before']} MB)."
    )


if __name__ == "__main__":
    main()
