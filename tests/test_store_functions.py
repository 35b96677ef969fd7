"""The SQL functions both backends call (migrations 20261128001700 and 20261128001710): who they run as,
what they are planned like, and who may call them. What they return is the store contract's business
(tests/test_store_contract.py runs every one through PostgresStore)."""

from __future__ import annotations

import psycopg
import pytest

from services.store.embedded import EmbeddedDatabase

# Row-level security decides for these: they run as the caller.
INVOKER = (
    "list_conversations",
    "delete_conversation",
    "delete_all_user_data",
    "add_message",
    "recent_messages",
    "page_messages",
    "path_messages",
    "message_versions",
    "choose_branch",
    "current_path_ids",
    "history_page",
    "usage_by_day",
    "usage_by_user",
    "message_models",
    "count_request",
    "save_display_name",
    "save_model_choice",
    "create_api_key",
    "revoke_own_sessions",
    "set_feedback",
    "clear_feedback",
    "message_feedback",
)
# These bypass row-level security, so each checks the token's scope itself (tests/rls_checks.py).
DEFINER = (
    "api_key_owner",
    "search_messages",
    "sweep_stale_replies",
    "signin_open_session",
    "signin_find_session",
    "signin_revoke_session",
    "signin_revoke_user_sessions",
    "signin_delete_user_sessions",
    "signin_read_attempts",
    "signin_record_failure",
    "signin_block",
    "signin_clear_attempts",
    "signin_audit",
)
# Filtered by the caller's id: planned per call, so the planner knows whose rows (see the migration).
PLANNED_PER_CALL = (
    "list_conversations",
    "recent_messages",
    "page_messages",
    "path_messages",
    "usage_by_day",
    "usage_by_user",
    "message_models",
)


def _functions(conn: psycopg.Connection) -> dict[str, tuple[bool, list[str]]]:
    rows = conn.execute(
        "select p.proname, p.prosecdef, coalesce(p.proconfig, '{}') from pg_proc p"
        " where p.pronamespace = 'public'::regnamespace and p.prorettype <> 'trigger'::regtype"
    ).fetchall()
    return {name: (definer, list(config)) for name, definer, config in rows}


def test_each_function_runs_as_stated_with_a_fixed_search_path(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url) as conn:
        found = _functions(conn)
    assert set(INVOKER) | set(DEFINER) <= set(found)
    assert [name for name in INVOKER if found[name][0]] == []
    assert [name for name in DEFINER if not found[name][0]] == []
    unfixed = [name for name, (_, config) in found.items() if "search_path=pg_catalog, pg_temp" not in config]
    assert unfixed == []


def test_functions_that_filter_by_the_caller_are_planned_per_call(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url) as conn:
        found = _functions(conn)
    assert [name for name in PLANNED_PER_CALL if "plan_cache_mode=force_custom_plan" not in found[name][1]] == []


@pytest.mark.parametrize("role", ["anon", "chat_sweeper"])
def test_only_authenticated_and_the_pre_sign_in_role_may_call_them(database: EmbeddedDatabase, role: str) -> None:
    with psycopg.connect(database.admin_url) as conn:
        callable_by = conn.execute(
            "select p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace"
            " and p.proname = any(%s) and has_function_privilege(%s, p.oid, 'execute')",
            [list(INVOKER + DEFINER), role],
        ).fetchall()
        signin = conn.execute(
            "select p.proname from pg_proc p where p.pronamespace = 'public'::regnamespace"
            " and p.proname = any(%s) and has_function_privilege('chat_signin', p.oid, 'execute') order by 1",
            [list(INVOKER + DEFINER)],
        ).fetchall()
        authenticated = conn.execute(
            "select count(*) from pg_proc p where p.pronamespace = 'public'::regnamespace"
            " and p.proname = any(%s) and has_function_privilege('authenticated', p.oid, 'execute')",
            [list(INVOKER + DEFINER)],
        ).fetchone()
    expected = [] if role == "anon" else [("sweep_stale_replies",)]
    assert callable_by == expected
    assert signin == sorted([(name,) for name in DEFINER if name.startswith("signin_")] + [("api_key_owner",)])
    assert authenticated == (len(INVOKER) + len(DEFINER),)
