"""The security-definer search function cannot be hijacked through the caller's temporary schema.

A definer function runs as its owner (a superuser on the embedded database). With `search_path = ''`
Postgres still looks up type names in `pg_temp` first, so a session holding the app's credentials could
create `pg_temp.text` (or `jsonb`, ...) as a domain whose check calls its own function, and the search
function would run that function as its owner. Fixed by `search_path = pg_catalog, pg_temp` and
schema-qualified names (migration 20261128000000)."""

from __future__ import annotations

import json

import psycopg
import pytest

from services.app_tokens import APP_ISSUER
from services.store.embedded import EmbeddedDatabase

# `text` alone is the reproduced hijack; the rest are every other type name the function's body and the
# auth.jwt() it calls use.
ALL_TYPES = ["text", "jsonb", "tsquery", "integer", "int4", "bool", "uuid", "timestamptz"]
CALL = "select count(*) from public.search_messages('hello', 20)"


def plant_temporary_types(conn: psycopg.Connection, names: list[str]) -> None:
    """As the app's login role: a pg_temp function that records who ran it, behind pg_temp domains."""
    conn.execute(
        "create function pg_temp.record_hijack(v pg_catalog.text) returns pg_catalog.bool language plpgsql as $f$"
        " begin perform pg_catalog.set_config('hijack.ran_as', current_user::pg_catalog.text, false);"
        " return true; end $f$"
    )
    for name in names:
        conn.execute(
            f"create domain pg_temp.{name} as pg_catalog.text check (pg_temp.record_hijack(value::pg_catalog.text))"
        )


@pytest.mark.parametrize("names", [["text"], ALL_TYPES], ids=["text", "every-type"])
def test_temporary_types_cannot_run_code_as_the_owner(database: EmbeddedDatabase, names: list[str]) -> None:
    with psycopg.connect(database.app_url, autocommit=True) as conn:
        plant_temporary_types(conn, names)
        with conn.transaction():
            conn.execute("set local role authenticated")
            conn.execute(
                "select set_config('request.jwt.claims', %s, true)",
                [json.dumps({"iss": APP_ISSUER, "chat_scope": "user", "sub": "user_mallory", "role": "authenticated"})],
            )
            try:
                conn.execute(CALL).fetchone()
            except psycopg.Error as error:  # a type mismatch from a picked-up domain also shows the hijack
                pytest.fail(f"the function resolved a type from pg_temp: {error}")
        ran_as = conn.execute("select current_setting('hijack.ran_as', true)").fetchone()
        assert ran_as is not None
        assert not ran_as[0], f"code planted in pg_temp ran as {ran_as[0]!r}"


def test_every_function_in_public_pins_its_search_path(database: EmbeddedDatabase) -> None:
    """The same rule for every function the migrations create: pg_catalog first, pg_temp last."""
    with psycopg.connect(database.admin_url) as conn:
        rows = conn.execute(
            "select p.proname, p.proconfig from pg_catalog.pg_proc p"
            " join pg_catalog.pg_namespace n on n.oid = p.pronamespace"
            " where n.nspname = 'public' and p.prokind = 'f' and p.probin is null"
            " and p.prolang <> (select oid from pg_catalog.pg_language where lanname = 'c')"
        ).fetchall()
    assert rows
    for name, config in rows:
        assert config is not None and "search_path=pg_catalog, pg_temp" in config, (name, config)
