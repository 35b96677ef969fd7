"""The RLS checks of tests/test_rls_policies.py can fail: each policy mutation below, applied to a freshly
migrated database, must be reported by them.

SQL policies are out of reach of Python mutation tools (bench/mutation.py), so this is their mutation
test. Each mutation is DDL inside one transaction on the admin connection that is rolled back at the
end; the behaviour checks run on that same connection in savepoints as role `authenticated`, so they
see the mutated schema and nothing is ever committed. One database, well under a second per mutation.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass

import psycopg
import pytest

from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from tests import rls_checks
from tests.rls_checks import World


@dataclass(frozen=True)
class Mutation:
    name: str
    ddl: str
    must_mention: str  # the table or policy a check has to name
    behaviour: bool  # whether the behaviour checks (not only the catalogue) must notice it


def _mutations() -> list[Mutation]:
    found: list[Mutation] = []
    for name, policy in rls_checks.EXPECTED_POLICIES.items():
        # A policy that is already `true` (the sign-in role's) cannot be widened.
        if policy.with_check not in (None, "true"):
            found.append(
                Mutation(
                    f"{name}: with check (true)",
                    f"alter policy {name} on public.{policy.table} with check (true)",
                    name,
                    behaviour=policy.behaviour,
                )
            )
        if policy.using not in (None, "true"):
            found.append(
                Mutation(
                    f"{name}: using (true)",
                    f"alter policy {name} on public.{policy.table} using (true)",
                    name,
                    # A SELECT policy's `using` is the one place where widening can hide behind another
                    # policy: none does here, so every widening must be seen in behaviour too.
                    behaviour=policy.behaviour,
                )
            )
    for table in rls_checks.PUBLIC_TABLES:
        found.append(
            Mutation(f"{table}: no force", f"alter table public.{table} no force row level security", table, False)
        )
        found.append(
            Mutation(
                f"{table}: rls disabled",
                f"alter table public.{table} disable row level security",
                table,
                table in rls_checks.BEHAVIOUR_TABLES,
            )
        )
    return found


def _function_mutations() -> list[Mutation]:
    """The trust functions every policy calls (migration 20261128001700), each loosened the way a careless
    edit would: the behaviour checks with other issuers' and scopes' tokens must notice every one."""

    def replace(signature: str, language: str, body: str) -> str:
        name, _, args = signature.partition("(")
        returns = {"chat_private.has_app_role(text)": "bool", "chat_private.require_scope(text,text)": "void"}.get(
            signature, "text"
        )
        params = {
            "chat_private.has_app_role(text)": "p_role text",
            "chat_private.require_scope(text,text)": "p_scope text, p_function text",
        }.get(signature, "")
        return (
            f"create or replace function {name}({params}) returns {returns} language {language} stable"
            f" set search_path = pg_catalog, pg_temp as $$ {body} $$"
        )

    return [
        Mutation(
            "user_sub ignores the issuer",
            replace(
                "chat_private.user_sub()",
                "sql",
                "select case when c ->> 'chat_scope' = 'user' then c ->> 'sub' end from (select auth.jwt() as c) j",
            ),
            "chat_private.user_sub()",
            True,
        ),
        Mutation(
            "user_sub ignores the scope",
            replace(
                "chat_private.user_sub()",
                "sql",
                "select case when c ->> 'iss' = chat_private.app_issuer() then c ->> 'sub' end"
                " from (select auth.jwt() as c) j",
            ),
            "chat_private.user_sub()",
            True,
        ),
        Mutation(
            "has_app_role for any token",
            replace(
                "chat_private.has_app_role(text)",
                "sql",
                "select coalesce(pg_catalog.jsonb_path_exists(auth.jwt(), '$ ? (@.roles == $r)',"
                " pg_catalog.jsonb_build_object('r', p_role)), false)",
            ),
            "chat_private.has_app_role(text)",
            True,
        ),
        Mutation(
            "token_scope ignores the issuer",
            replace("chat_private.token_scope()", "sql", "select auth.jwt() ->> 'chat_scope'"),
            "chat_private.token_scope()",
            True,
        ),
        Mutation(
            "require_scope checks nothing",
            replace("chat_private.require_scope(text,text)", "plpgsql", "begin end"),
            "chat_private.require_scope(text,text)",
            True,
        ),
    ]


MUTATIONS = _mutations()
FUNCTION_MUTATIONS = _function_mutations()


@pytest.fixture(scope="module")
def world(store: PostgresStore) -> World:
    return rls_checks.store_world(store)


@pytest.fixture(scope="module")
def admin(database: EmbeddedDatabase) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database.admin_url) as conn:
        yield conn


def all_problems(conn: psycopg.Connection, world: World) -> tuple[list[str], list[str]]:
    def as_user(sub: str) -> AbstractContextManager[psycopg.Connection]:
        return rls_checks.savepoint_as(conn, sub)

    def as_claims(claims: dict[str, object]) -> AbstractContextManager[psycopg.Connection]:
        return rls_checks.savepoint_with(conn, claims)

    catalogue = (
        rls_checks.table_flag_problems(conn)
        + rls_checks.policy_problems(conn)
        + rls_checks.trust_function_problems(conn)
    )
    return catalogue, rls_checks.behaviour_problems(as_user, world, as_claims)


def test_the_checks_find_nothing_on_the_schema_as_migrated(admin: psycopg.Connection, world: World) -> None:
    # The same harness as the mutations below, without a mutation: what they report is the mutation's doing.
    with admin.transaction(force_rollback=True):
        assert all_problems(admin, world) == ([], [])


def test_every_table_and_policy_is_mutated() -> None:
    names = {m.name for m in MUTATIONS}
    for table in rls_checks.PUBLIC_TABLES:
        assert f"{table}: no force" in names and f"{table}: rls disabled" in names
    for table in set(rls_checks.BEHAVIOUR_TABLES) - set(rls_checks.NEVER_UPDATED_TABLES):
        assert f"{table}_update_own: with check (true)" in names
    policies = rls_checks.EXPECTED_POLICIES.values()
    usings = sum(p.using not in (None, "true") for p in policies)
    checks = sum(p.with_check not in (None, "true") for p in policies)
    assert len(MUTATIONS) == usings + checks + 2 * len(rls_checks.PUBLIC_TABLES)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_each_policy_mutation_is_detected(admin: psycopg.Connection, world: World, mutation: Mutation) -> None:
    with admin.transaction(force_rollback=True):
        admin.execute(mutation.ddl)
        catalogue, behaviour = all_problems(admin, world)
    assert any(mutation.must_mention in p for p in catalogue), catalogue
    if mutation.behaviour:
        assert behaviour, f"{mutation.name} went unnoticed by the behaviour checks"


@pytest.mark.parametrize("mutation", FUNCTION_MUTATIONS, ids=[m.name for m in FUNCTION_MUTATIONS])
def test_each_trust_function_mutation_is_detected(admin: psycopg.Connection, world: World, mutation: Mutation) -> None:
    with admin.transaction(force_rollback=True):
        admin.execute(mutation.ddl)
        catalogue, behaviour = all_problems(admin, world)
    assert any(mutation.must_mention in p for p in catalogue), catalogue
    assert behaviour, f"{mutation.name} went unnoticed by the behaviour checks"
