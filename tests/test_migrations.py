"""The migration runner: once each, recorded like the Supabase CLI does, safe under concurrency."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from services.store import embedded
from services.store.migrate import MIGRATIONS_DIR, discover, migrate

ROOT = Path(__file__).resolve().parents[1]


def fresh_db(pg_server: embedded.EmbeddedDatabase, name: str) -> str:
    embedded.ensure_database(pg_server.admin_url, name)
    return pg_server.url_for(name, admin=True)


def test_migration_files_are_named_for_the_supabase_cli() -> None:
    found = discover(MIGRATIONS_DIR)
    assert found, "no migrations found"
    assert [m.version for m in found] == sorted(m.version for m in found)


def test_applies_each_migration_once_and_records_it(pg_server: embedded.EmbeddedDatabase) -> None:
    url = fresh_db(pg_server, "mig_once")
    first = migrate(url)
    assert first == [m.version for m in discover()]
    assert migrate(url) == []
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select version, name from supabase_migrations.schema_migrations order by version"
        ).fetchall()
        assert [r[0] for r in rows] == first
        policies = conn.execute(
            "select tablename, cmd, roles::text from pg_policies where schemaname = 'public' order by 1, 2"
        ).fetchall()
        forced = conn.execute(
            "select relname, relrowsecurity, relforcerowsecurity from pg_class"
            " where relname in ('messages', 'conversations') order by 1"
        ).fetchall()
    assert forced == [("conversations", True, True), ("messages", True, True)]
    for table in ("conversations", "messages"):
        cmds = {cmd for t, cmd, roles in policies if t == table and roles == "{authenticated}"}
        assert {"SELECT", "INSERT", "UPDATE", "DELETE"} <= cmds


def test_concurrent_runs_from_two_processes_apply_once(pg_server: embedded.EmbeddedDatabase) -> None:
    url = fresh_db(pg_server, "mig_race")
    code = (
        "import sys; sys.path.insert(0, sys.argv[2]);"
        "from services.store.migrate import migrate; print(len(migrate(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, url, str(ROOT)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted(int(o) for o in outputs) == [0, len(discover())]
    with psycopg.connect(url) as conn:
        assert conn.execute("select count(*) from supabase_migrations.schema_migrations").fetchone() == (
            len(discover()),
        )


def test_a_failing_migration_leaves_nothing_half_applied(pg_server: embedded.EmbeddedDatabase, tmp_path: Path) -> None:
    url = fresh_db(pg_server, "mig_fail")
    (tmp_path / "20990101000000_good.sql").write_text("create table public.good_one (id int);")
    (tmp_path / "20990101000001_bad.sql").write_text("create table public.half (id int); select 1/0;")
    with pytest.raises(psycopg.errors.DivisionByZero):
        migrate(url, tmp_path)
    with psycopg.connect(url) as conn:
        assert conn.execute("select to_regclass('public.good_one') is not null").fetchone() == (True,)
        assert conn.execute("select to_regclass('public.half') is null").fetchone() == (True,)
        versions = [r[0] for r in conn.execute("select version from supabase_migrations.schema_migrations")]
    assert versions == ["20990101000000"]


def test_shim_is_not_applied_over_a_supabase_database(pg_server: embedded.EmbeddedDatabase, tmp_path: Path) -> None:
    url = fresh_db(pg_server, "mig_supabase")
    with psycopg.connect(url, autocommit=True) as conn:
        # What a Supabase project has: auth.users and its own auth.jwt().
        conn.execute("create schema auth; create table auth.users (id uuid primary key)")
        conn.execute(
            'create function auth.jwt() returns jsonb language sql stable as $$ select \'{"sub":"supabase"}\'::jsonb $$'
        )
    (tmp_path / "20990101000000_noop.sql").write_text("select 1;")
    migrate(url, tmp_path)
    with psycopg.connect(url) as conn:
        # The shim would have added auth.uid(); Supabase's own jwt() stays as it was.
        assert conn.execute("select to_regprocedure('auth.uid()') is null").fetchone() == (True,)
        assert conn.execute("select auth.jwt()->>'sub'").fetchone() == ("supabase",)


def test_shim_creates_supabase_helpers_on_plain_postgres(pg_server: embedded.EmbeddedDatabase) -> None:
    url = fresh_db(pg_server, "mig_shim")
    migrate(url)
    with psycopg.connect(url) as conn:
        conn.execute("select set_config('request.jwt.claims', %s, true)", ['{"sub":"user_x","role":"authenticated"}'])
        assert conn.execute("select auth.jwt()->>'sub', auth.role()").fetchone() == ("user_x", "authenticated")
        conn.execute(
            "select set_config('request.jwt.claims', %s, true)",
            ['{"sub":"5b0c9ad4-2a7e-4d6c-bf0e-6d6c1c2a1f00"}'],
        )
        assert str(conn.execute("select auth.uid()").fetchone()[0]) == "5b0c9ad4-2a7e-4d6c-bf0e-6d6c1c2a1f00"  # type: ignore[index]


def test_two_migrations_with_one_version_are_refused(tmp_path: Path) -> None:
    # Two branches once added a migration each with the same timestamp: the second would never have run.
    (tmp_path / "20260101000000_first.sql").write_text("select 1;")
    (tmp_path / "20260101000000_second.sql").write_text("select 2;")
    with pytest.raises(RuntimeError, match="share the version 20260101000000"):
        discover(tmp_path)


def test_the_shipped_migrations_have_distinct_versions() -> None:
    versions = [m.version for m in discover()]
    assert len(versions) == len(set(versions))
