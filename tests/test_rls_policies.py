"""Row-level security as migrated: every table in `public` enabled and forced, every policy's expression
exactly as written, and the policies' behaviour through the store's own transaction helper
(`as_principal` on the store's pool), which is how every app request reaches user rows.

The checks live in tests/rls_checks.py; tests/test_rls_mutations.py proves each of them can fail."""

from __future__ import annotations

import psycopg
import pytest

from services.app_tokens import APP_ISSUER
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from tests import rls_checks
from tests.rls_checks import World, through_store, through_store_with


@pytest.fixture(scope="module")
def world(store: PostgresStore) -> World:
    return rls_checks.store_world(store)


def test_every_public_table_has_row_level_security_enabled_and_forced(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url) as conn:
        assert rls_checks.table_flag_problems(conn) == []
        checked = conn.execute(
            "select count(*) from pg_class where relnamespace = 'public'::regnamespace and relkind in ('r', 'p')"
        ).fetchone()
    assert checked == (len(rls_checks.PUBLIC_TABLES),)


def test_the_trust_functions_are_exactly_as_written(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url) as conn:
        assert rls_checks.trust_function_problems(conn) == []
        issuer = conn.execute("select chat_private.app_issuer()").fetchone()
    assert issuer == (APP_ISSUER,)  # the database and services/app_tokens.py trust the same issuer


def test_tokens_of_other_issuers_and_scopes_read_and_write_nothing(store: PostgresStore, world: World) -> None:
    assert rls_checks.stranger_problems(lambda claims: through_store_with(store, claims), world) == []


def test_sign_in_and_sweep_functions_refuse_user_and_foreign_tokens(store: PostgresStore, world: World) -> None:
    assert rls_checks.scope_problems(lambda claims: through_store_with(store, claims), world) == []


def test_every_policy_has_exactly_the_expected_expressions(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url) as conn:
        assert rls_checks.policy_problems(conn) == []
        count = conn.execute("select count(*) from pg_policies where schemaname = 'public'").fetchone()
    assert count == (len(rls_checks.EXPECTED_POLICIES),)


@pytest.mark.parametrize("table", sorted(rls_checks.MOVES))
def test_moving_my_row_to_another_user_is_refused_by_the_update_policy(
    store: PostgresStore, world: World, table: str
) -> None:
    # No WHERE reads the table and no other constraint would fail: only `with check` can refuse.
    who, statement = rls_checks.MOVES[table]
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=rls_checks.RLS_REFUSAL + f' for table "{table}"'):
        with through_store(store, getattr(world, who)) as conn, conn.transaction(force_rollback=True):
            conn.execute(statement, rls_checks.params_for(world))


@pytest.mark.parametrize("table", sorted(rls_checks.PLANTS))
def test_planting_a_row_for_another_user_is_refused_by_the_insert_policy(
    store: PostgresStore, world: World, table: str
) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=rls_checks.RLS_REFUSAL + f' for table "{table}"'):
        with through_store(store, world.me) as conn, conn.transaction(force_rollback=True):
            conn.execute(rls_checks.PLANTS[table], rls_checks.params_for(world))


def test_the_same_statements_by_a_superuser_succeed(database: EmbeddedDatabase, world: World) -> None:
    """Without the policies nothing else stops the moves and plants above: so the policy is what refuses
    them (not a foreign key, a not-null or a unique constraint)."""
    params = rls_checks.params_for(world)
    with psycopg.connect(database.admin_url) as conn:
        for who, statement in rls_checks.MOVES.values():
            with conn.transaction(force_rollback=True):
                moved = conn.execute(statement + " where user_id = %(who)s", {**params, "who": getattr(world, who)})
                assert moved.rowcount >= 1, statement
        for statement in rls_checks.PLANTS.values():
            with conn.transaction(force_rollback=True):
                assert conn.execute(statement, params).rowcount == 1, statement


def test_other_users_rows_cannot_be_seen_changed_or_removed(store: PostgresStore, world: World) -> None:
    assert rls_checks.reach_problems(lambda sub: through_store(store, sub), world) == []


def test_my_own_rows_stay_usable(store: PostgresStore, world: World) -> None:
    assert rls_checks.own_rows_problems(lambda sub: through_store(store, sub), world) == []


def test_rate_limit_counters_of_others_cannot_be_updated_or_deleted(
    store: PostgresStore, database: EmbeddedDatabase, world: World
) -> None:
    with through_store(store, world.me) as conn:
        hit = conn.execute("update public.rate_limits set hits = 0 where user_id = %s", [world.other]).rowcount
    assert hit == 0
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied for table rate_limits"):
        with through_store(store, world.me) as conn:
            conn.execute("delete from public.rate_limits where user_id = %s", [world.other])
    assert rls_checks.rate_limit_delete_problems(lambda sub: through_store(store, sub), world) == []
    with psycopg.connect(database.admin_url) as admin:
        assert admin.execute("select hits from public.rate_limits where user_id = %s", [world.other]).fetchone() == (1,)


def test_no_parent_or_leaf_can_name_another_users_message(store: PostgresStore, world: World) -> None:
    assert rls_checks.tree_problems(lambda sub: through_store(store, sub), world) == []
