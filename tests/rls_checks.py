"""The suite's row-level-security checks, as functions that return what they found wrong (empty = sound).

tests/test_rls_policies.py runs them against the migrated schema and asserts they find nothing;
tests/test_rls_mutations.py breaks one policy or table flag at a time and asserts they find it. Keeping
them in one place is what makes the second test meaningful: it proves the first one can fail.

Two kinds of check:
- catalogue checks read pg_class and pg_policies (as any role: both are world-readable) and compare
  every table flag and every policy expression with the text written here;
- behaviour checks run statements as a user and look at what the database does. They take `as_user`,
  a context manager factory giving a connection inside a transaction as role `authenticated` with the
  given `sub` (the store's own `as_principal` in the normal tests, a savepoint on a mutated schema in
  the mutation test). They never leave changes behind: every statement runs in a savepoint that is
  rolled back.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field

import psycopg

from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.store.postgres import PostgresStore, as_principal, as_role

AsUser = Callable[[str], AbstractContextManager[psycopg.Connection]]
# Like AsUser, with the whole claims set instead of a sub: tokens of other issuers and scopes.
AsClaims = Callable[[dict[str, object]], AbstractContextManager[psycopg.Connection]]

# Tables the migrations create; a new table in `public` must be added here (and get policies) or the
# flag check reports it.
PUBLIC_TABLES = (
    "api_keys",
    "attachments",
    "audit_log",
    "conversations",
    "feedback",
    "messages",
    "profiles",
    "rate_limits",
    "sessions",
    "signin_attempts",
)
# Tables the behaviour checks below act on as `authenticated`. The sign-in tables (sessions, attempts, audit)
# are written before anyone is signed in only through the definer functions `public.signin_*` (migration
# 20261128001710); tests/test_sessions.py checks their isolation through the sign-in service, and the
# catalogue checks here pin their flags and policies.
BEHAVIOUR_TABLES = ("api_keys", "attachments", "conversations", "feedback", "messages", "profiles", "rate_limits")
# Behaviour tables users may not update at all (no grant, no update policy): checked by never_updated_problems.
NEVER_UPDATED_TABLES = ("attachments",)

# Since migration 20261128001700 every policy trusts only this app's tokens: chat_private.user_sub() is the
# caller's id only for an app user token (iss = the app, chat_scope = 'user'), has_app_role() only for one.
_OWN = "(( SELECT chat_private.user_sub() AS user_sub) = user_id)"
_REVIEWER = "( SELECT chat_private.has_app_role('reviewer'::text) AS has_app_role)"
_ADMIN = "( SELECT chat_private.has_app_role('admin'::text) AS has_app_role)"
_MESSAGE_INSERT = (
    "((( SELECT chat_private.user_sub() AS user_sub) = user_id) AND (EXISTS ( SELECT 1 FROM conversations c"
    " WHERE ((c.id = messages.conversation_id) AND (c.user_id = ( SELECT chat_private.user_sub() AS user_sub))))))"
)
# The caller as the own-rows policies name it (`_OWN` without its comparison): the attachments migration writes
# its policies in the same form as the messages policies, whichever that is.
_CALLER = _OWN.removeprefix("(").removesuffix(" = user_id)")
_ATTACHMENT_INSERT = (
    f"(({_CALLER} = user_id) AND (EXISTS ( SELECT 1 FROM messages m"
    f" WHERE ((m.id = attachments.message_id) AND (m.user_id = {_CALLER})))))"
)

# Feedback may be written only by the owner of the message it is about, with that message's own created_at
# (History's keyset order walks the copy; migration 20261128001900).
_FEEDBACK_WRITE = (
    f"(({_CALLER} = user_id) AND (EXISTS ( SELECT 1 FROM messages m"
    f" WHERE ((m.id = feedback.message_id) AND (m.user_id = {_CALLER})"
    " AND (m.created_at = feedback.message_created_at)))))"
)


@dataclass(frozen=True)
class Policy:
    table: str
    command: str  # SELECT, INSERT, UPDATE, DELETE (ALL is never used here)
    using: str | None  # pg_policies.qual, as PostgreSQL prints it (whitespace normalised)
    with_check: str | None
    roles: str = "{authenticated}"
    permissive: str = "PERMISSIVE"
    # Whether the behaviour checks can see a widening of this policy (see BEHAVIOUR_TABLES).
    behaviour: bool = field(default=True, compare=False)


# Every policy in `public`, by name, with the exact expression PostgreSQL 18 prints for it.
EXPECTED_POLICIES: dict[str, Policy] = {
    "conversations_select_own": Policy("conversations", "SELECT", _OWN, None),
    "conversations_insert_own": Policy("conversations", "INSERT", None, _OWN),
    "conversations_update_own": Policy("conversations", "UPDATE", _OWN, _OWN),
    "conversations_delete_own": Policy("conversations", "DELETE", _OWN, None),
    "conversations_select_reviewer": Policy("conversations", "SELECT", _REVIEWER, None),
    "messages_select_own": Policy("messages", "SELECT", _OWN, None),
    "messages_insert_own": Policy("messages", "INSERT", None, _MESSAGE_INSERT),
    "messages_update_own": Policy("messages", "UPDATE", _OWN, _OWN),
    "messages_delete_own": Policy("messages", "DELETE", _OWN, None),
    "messages_select_reviewer": Policy("messages", "SELECT", _REVIEWER, None),
    "rate_limits_select_own": Policy("rate_limits", "SELECT", _OWN, None),
    "rate_limits_insert_own": Policy("rate_limits", "INSERT", None, _OWN),
    "rate_limits_update_own": Policy("rate_limits", "UPDATE", _OWN, _OWN),
    "profiles_select_own": Policy("profiles", "SELECT", _OWN, None),
    "profiles_select_reviewer": Policy("profiles", "SELECT", _REVIEWER, None),
    "profiles_insert_own": Policy("profiles", "INSERT", None, _OWN),
    "profiles_update_own": Policy("profiles", "UPDATE", _OWN, _OWN),
    "profiles_delete_own": Policy("profiles", "DELETE", _OWN, None),
    "sessions_select_own": Policy("sessions", "SELECT", _OWN, None, behaviour=False),
    "sessions_update_own": Policy("sessions", "UPDATE", _OWN, _OWN, behaviour=False),
    "audit_log_insert_own": Policy(
        "audit_log", "INSERT", None, "(( SELECT chat_private.user_sub() AS user_sub) = actor_id)", behaviour=False
    ),
    "audit_log_select_admin": Policy("audit_log", "SELECT", _ADMIN, None, behaviour=False),
    "api_keys_select_own": Policy("api_keys", "SELECT", _OWN, None),
    "api_keys_insert_own": Policy("api_keys", "INSERT", None, _OWN),
    # `user_id` is not updatable (column grants, see api_key_privilege_problems): a widened `with check`
    # cannot move a key, so only the catalogue check can see it. A widened `using` is seen (REACH).
    "api_keys_update_own": Policy("api_keys", "UPDATE", _OWN, _OWN, behaviour=False),
    "api_keys_delete_own": Policy("api_keys", "DELETE", _OWN, None),
    "feedback_select_own": Policy("feedback", "SELECT", _OWN, None),
    "feedback_select_reviewer": Policy("feedback", "SELECT", _REVIEWER, None),
    "feedback_insert_own": Policy("feedback", "INSERT", None, _FEEDBACK_WRITE),
    "feedback_update_own": Policy("feedback", "UPDATE", _OWN, _FEEDBACK_WRITE),
    "feedback_delete_own": Policy("feedback", "DELETE", _OWN, None),
    # No update policy (and no update grant): an attachment is never edited, so it can never be moved.
    "attachments_select_own": Policy("attachments", "SELECT", _OWN, None),
    "attachments_select_reviewer": Policy("attachments", "SELECT", _REVIEWER, None),
    "attachments_insert_own": Policy("attachments", "INSERT", None, _ATTACHMENT_INSERT),
    "attachments_delete_own": Policy("attachments", "DELETE", _OWN, None),
}


# The functions every policy and definer function trusts (migration 20261128001700), body by body: a policy
# that reads `(select chat_private.user_sub()) = user_id` is only as narrow as user_sub() is.
TRUST_FUNCTIONS: dict[str, str] = {
    "chat_private.app_issuer()": "select 'streamlit-chat'::pg_catalog.text",
    "chat_private.user_sub()": (
        "select case when c ->> 'iss' = chat_private.app_issuer() and c ->> 'chat_scope' = 'user'"
        " then nullif(c ->> 'sub', '') end from (select auth.jwt() as c) claims"
    ),
    "chat_private.token_scope()": (
        "select case when c ->> 'iss' = chat_private.app_issuer() then c ->> 'chat_scope' end"
        " from (select auth.jwt() as c) claims"
    ),
    "chat_private.has_app_role(text)": (
        "select chat_private.user_sub() is not null and coalesce("
        " pg_catalog.jsonb_path_exists(auth.jwt(), '$ ? (@.roles == $r)', pg_catalog.jsonb_build_object('r', p_role)),"
        " false )"
    ),
    "chat_private.require_scope(text,text)": (
        "begin if chat_private.token_scope() is distinct from p_scope then raise exception"
        " 'permission denied for function %: it accepts only this app''s % token', p_function, p_scope"
        " using errcode = '42501'; end if; end"
    ),
}


def _normalise(expression: str | None) -> str | None:
    return None if expression is None else re.sub(r"\s+", " ", expression).strip()


def trust_function_problems(conn: psycopg.Connection) -> list[str]:
    """Each trust function exists with exactly the body written in TRUST_FUNCTIONS, runs as its caller (not
    a definer) and has a fixed search_path."""
    problems: list[str] = []
    for signature, body in TRUST_FUNCTIONS.items():
        row = conn.execute(
            "select p.prosrc, p.prosecdef, p.proconfig from pg_proc p where p.oid = to_regprocedure(%s)",
            [signature],
        ).fetchone()
        if row is None:
            problems.append(f"{signature}: function missing")
            continue
        source, definer, config = row
        if _normalise(source) != body:
            problems.append(f"{signature}: body is {_normalise(source)!r}, expected {body!r}")
        if definer or config != ["search_path=pg_catalog, pg_temp"]:
            problems.append(f"{signature}: security definer or search_path changed ({definer}, {config})")
    return problems


# --- catalogue checks ------------------------------------------------------------------------------


def table_flag_problems(conn: psycopg.Connection) -> list[str]:
    """Every ordinary (or partitioned) table in `public` must have RLS enabled AND forced, and the set of
    tables must be the one this file knows (so a new table cannot slip in without policies)."""
    rows = conn.execute(
        "select relname, relrowsecurity, relforcerowsecurity from pg_class"
        " where relnamespace = 'public'::regnamespace and relkind in ('r', 'p') order by relname"
    ).fetchall()
    problems = [f"{name}: row level security not enabled" for name, enabled, _ in rows if not enabled]
    problems += [f"{name}: row level security not forced" for name, _, forced in rows if not forced]
    found = {name for name, _, _ in rows}
    problems += [f"{name}: table missing" for name in PUBLIC_TABLES if name not in found]
    problems += [f"{name}: table not known to tests/rls_checks.py" for name in sorted(found - set(PUBLIC_TABLES))]
    return problems


def policy_problems(conn: psycopg.Connection) -> list[str]:
    """Every policy in `public` compared field by field (table, command, roles, permissive, using and
    with check expressions) with EXPECTED_POLICIES; missing and unexpected policies are reported too."""
    rows = conn.execute(
        "select policyname, tablename, cmd, qual, with_check, roles::text, permissive"
        " from pg_policies where schemaname = 'public'"
    ).fetchall()
    found = {
        name: Policy(table, cmd, _normalise(qual), _normalise(check), roles, permissive)
        for name, table, cmd, qual, check, roles, permissive in rows
    }
    problems = [f"{name}: policy missing" for name in EXPECTED_POLICIES if name not in found]
    problems += [f"{name}: unexpected policy {found[name]}" for name in sorted(set(found) - set(EXPECTED_POLICIES))]
    for name, expected in EXPECTED_POLICIES.items():
        actual = found.get(name)
        if actual is not None and actual != expected:
            problems.append(f"{name}: is {actual}, expected {expected}")
    return problems


# --- behaviour checks ------------------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """Rows the behaviour checks act on: `me` and `other` each own a conversation with one message (with
    feedback), an empty conversation and a rate-limit counter; `other` also has a spare reply nobody rated;
    `mover` owns one empty conversation and nothing else; `nobody` owns nothing."""

    me: str
    other: str
    mover: str
    nobody: str
    my_conversation: uuid.UUID
    my_empty_conversation: uuid.UUID
    my_message: uuid.UUID
    other_conversation: uuid.UUID
    other_message: uuid.UUID
    my_key: uuid.UUID
    other_spare_message: uuid.UUID
    my_attachment: uuid.UUID


RLS_REFUSAL = "new row violates row-level security policy"


def params_for(world: World) -> dict[str, object]:
    return {
        "me": world.me,
        "other": world.other,
        "nobody": world.nobody,
        "my_message": world.my_message,
        "my_conversation": world.my_conversation,
        "my_empty_conversation": world.my_empty_conversation,
        "other_conversation": world.other_conversation,
        "other_message": world.other_message,
        "my_key": world.my_key,
        "other_spare_message": world.other_spare_message,
        "my_attachment": world.my_attachment,
        "planted_hash": "f" * 64,
    }


def _refused_by_policy(as_user: AsUser, sub: str, statement: str, params: dict[str, object]) -> str | None:
    """None when the statement fails with the RLS `with check` refusal; otherwise what happened."""
    try:
        with as_user(sub) as conn, conn.transaction(force_rollback=True):
            rowcount = conn.execute(statement, params).rowcount
    except psycopg.errors.InsufficientPrivilege as exc:
        if RLS_REFUSAL in str(exc):
            return None
        return f"refused, but not by a policy: {exc}"
    except psycopg.Error as exc:
        return f"failed with {type(exc).__name__} instead of a policy refusal: {exc}"
    return f"succeeded ({rowcount} rows)"


# Give my rows to someone else. None of these statements reads a column of the table (no WHERE, no
# RETURNING, no column in SET): PostgreSQL then applies the SELECT policies to neither the old nor the
# new row, so the UPDATE policy's `with check` is the only thing that can refuse them. (With a WHERE on
# `id`, the SELECT policy is checked against the new row too and hides a broken `with check`.) Each
# is chosen so that no other constraint fails first or at all: the message moves together with into a
# conversation the other user owns (the composite foreign key holds), `mover` owns one empty
# conversation, and the counter moves to a user who has none.
MOVES: dict[str, tuple[str, str]] = {
    "messages": ("me", "update public.messages set user_id = %(other)s, conversation_id = %(other_conversation)s"),
    "conversations": ("mover", "update public.conversations set user_id = %(other)s"),
    "rate_limits": ("me", "update public.rate_limits set user_id = %(nobody)s"),
    "profiles": ("me", "update public.profiles set user_id = %(nobody)s"),
    "feedback": ("me", "update public.feedback set user_id = %(other)s"),
}
# Plant rows owned by someone else (no RETURNING, for the same reason): only `with check` refuses.
PLANTS: dict[str, str] = {
    "messages": "insert into public.messages (conversation_id, user_id, role, content, model)"
    " values (%(other_conversation)s, %(other)s, 'user', 'planted', 'demo')",
    "conversations": "insert into public.conversations (user_id, title) values (%(other)s, 'planted')",
    "rate_limits": "insert into public.rate_limits (user_id, hits) values (%(nobody)s, 0)",
    "profiles": "insert into public.profiles (user_id, display_name) values (%(nobody)s, 'planted')",
    "api_keys": "insert into public.api_keys (user_id, name, prefix, secret_hash)"
    " values (%(nobody)s, 'planted', 'sk-chat-', %(planted_hash)s)",
    # A thumb on another user's reply, in their name: the feedback they never gave.
    "feedback": "insert into public.feedback (message_id, user_id, rating, message_created_at)"
    " values (%(other_spare_message)s, %(other)s, -1, now())",
    # On the other user's own message, so the composite foreign key holds and only the policy can refuse.
    "attachments": "insert into public.attachments (message_id, conversation_id, user_id, name, media_type, size,"
    " data) values (%(other_message)s, %(other_conversation)s, %(other)s, 'planted', 'text/plain', 1, '\\x41')",
}


def move_problems(as_user: AsUser, world: World) -> list[str]:
    """Moving each of my rows to another user, or planting one for them, must be refused by the policy."""
    problems: list[str] = []
    for table, (who, statement) in MOVES.items():
        outcome = _refused_by_policy(as_user, getattr(world, who), statement, params_for(world))
        if outcome is not None:
            problems.append(f"{table}: moving my row to another user {outcome}")
    for table, statement in PLANTS.items():
        outcome = _refused_by_policy(as_user, world.me, statement, params_for(world))
        if outcome is not None:
            problems.append(f"{table}: planting a row for another user {outcome}")
    return problems


# Statements that reach for other users' rows, with how many rows of mine each may touch. The filtered
# ones read columns (SELECT policies apply); the unfiltered ones read nothing, so only the UPDATE or
# DELETE policy's `using` limits them. An error counts too: with a widened `using`, an UPDATE reaches
# another user's row and is stopped only by its `with check`.
REACH: list[tuple[str, str, int]] = [
    ("messages", "select id from public.messages where user_id <> %(me)s", 0),
    ("messages", "update public.messages set content = 'overwritten' where user_id <> %(me)s", 0),
    ("messages", "delete from public.messages where user_id <> %(me)s", 0),
    ("messages", "update public.messages set content = 'overwritten'", 1),
    ("messages", "delete from public.messages", 1),
    ("conversations", "select id from public.conversations where user_id <> %(me)s", 0),
    ("conversations", "update public.conversations set title = 'pwned' where user_id <> %(me)s", 0),
    ("conversations", "delete from public.conversations where user_id <> %(me)s", 0),
    ("conversations", "update public.conversations set title = 'pwned'", 2),
    ("conversations", "delete from public.conversations", 2),
    ("rate_limits", "select user_id from public.rate_limits where user_id <> %(me)s", 0),
    ("rate_limits", "update public.rate_limits set hits = 0 where user_id <> %(me)s", 0),
    ("rate_limits", "update public.rate_limits set hits = 0", 1),
    ("profiles", "select user_id from public.profiles where user_id <> %(me)s", 0),
    ("profiles", "update public.profiles set display_name = 'pwned' where user_id <> %(me)s", 0),
    ("profiles", "delete from public.profiles where user_id <> %(me)s", 0),
    ("profiles", "update public.profiles set display_name = 'pwned'", 1),
    ("profiles", "update public.profiles set default_instructions = 'pwned' where user_id <> %(me)s", 0),
    ("profiles", "update public.profiles set default_instructions = 'mine'", 1),
    # the store's function for it takes no user id and runs as the caller (security invoker): own row only
    ("profiles", "select from public.set_my_default_instructions('mine') d where d = 'mine'", 1),
    ("profiles", "delete from public.profiles", 1),
    ("api_keys", "select id from public.api_keys where user_id <> %(me)s", 0),
    ("api_keys", "update public.api_keys set name = 'pwned' where user_id <> %(me)s", 0),
    ("api_keys", "update public.api_keys set revoked_at = now() where user_id <> %(me)s", 0),
    ("api_keys", "delete from public.api_keys where user_id <> %(me)s", 0),
    ("api_keys", "update public.api_keys set name = 'pwned'", 1),
    ("api_keys", "delete from public.api_keys", 1),
    ("feedback", "select message_id from public.feedback where user_id <> %(me)s", 0),
    ("feedback", "update public.feedback set comment = 'pwned' where user_id <> %(me)s", 0),
    ("feedback", "delete from public.feedback where user_id <> %(me)s", 0),
    ("feedback", "update public.feedback set comment = 'pwned'", 1),
    ("feedback", "delete from public.feedback", 1),
    ("attachments", "select id from public.attachments where user_id <> %(me)s", 0),
    ("attachments", "select data from public.attachment_data((select id from public.attachments"
     " where user_id <> %(me)s limit 1))", 0),
    ("attachments", "delete from public.attachments where user_id <> %(me)s", 0),
    ("attachments", "delete from public.attachments", 1),
]


def reach_problems(as_user: AsUser, world: World) -> list[str]:
    problems: list[str] = []
    for table, statement, mine in REACH:
        try:
            with as_user(world.me) as conn, conn.transaction(force_rollback=True):
                cur = conn.execute(statement, params_for(world))
                touched = len(cur.fetchall()) if statement.startswith("select") else cur.rowcount
        except psycopg.Error as exc:
            problems.append(f"{table}: `{statement}` failed on other users' rows: {exc}")
            continue
        if touched != mine:
            problems.append(f"{table}: `{statement}` touched {touched} rows, expected {mine} (mine)")
    return problems


def own_rows_problems(as_user: AsUser, world: World) -> list[str]:
    """The other side of the coin: my own rows stay fully usable (a policy narrowed to `false` is as
    broken as one widened to `true`)."""
    problems: list[str] = []
    with as_user(world.me) as conn, conn.transaction(force_rollback=True):
        counts = conn.execute(
            "select (select count(*) from public.messages), (select count(*) from public.conversations),"
            " (select count(*) from public.rate_limits), (select count(*) from public.profiles),"
            " (select count(*) from public.api_keys), (select count(*) from public.attachments)"
        ).fetchone()
        if counts != (1, 2, 1, 1, 1, 1):
            problems.append(
                f"my rows (messages, conversations, counters, profiles, keys, attachments) seen as {counts},"
                " expected (1, 2, 1, 1, 1, 1)"
            )
        updated = conn.execute(
            "update public.messages set content = 'mine' where id = %(my_message)s", params_for(world)
        )
        if updated.rowcount != 1:
            problems.append("I cannot update my own message")
        renamed = conn.execute("update public.api_keys set name = 'mine' where id = %(my_key)s", params_for(world))
        if renamed.rowcount != 1:
            problems.append("I cannot rename my own API key")
        commented = conn.execute(
            "update public.feedback set comment = 'mine' where message_id = %(my_message)s", params_for(world)
        )
        if commented.rowcount != 1:
            problems.append("I cannot change my own feedback")
    return problems


# What the column grants on api_keys refuse even on my own key: reading the stored hash back, moving the
# key to another user, pointing it at another secret, stretching its expiry; and the lookup function is
# not callable by a signed-in user (only the pre-sign-in role may turn a hash into an owner).
KEY_PRIVILEGE_REFUSALS: list[str] = [
    "select secret_hash from public.api_keys",
    "update public.api_keys set user_id = %(nobody)s",
    "update public.api_keys set secret_hash = %(planted_hash)s",
    "update public.api_keys set expires_at = null",
    "select * from public.api_key_owner(%(planted_hash)s)",
]


def api_key_privilege_problems(as_user: AsUser, world: World) -> list[str]:
    problems: list[str] = []
    for statement in KEY_PRIVILEGE_REFUSALS:
        try:
            with as_user(world.me) as conn, conn.transaction(force_rollback=True):
                conn.execute(statement, params_for(world))
        except psycopg.errors.InsufficientPrivilege as exc:
            # An RLS refusal has the same error code: only "permission denied" is the grant's doing.
            if "permission denied" not in str(exc):
                problems.append(f"api_keys: `{statement}` was refused, but not by a grant: {exc}")
            continue
        except psycopg.Error as exc:
            problems.append(f"api_keys: `{statement}` failed with {type(exc).__name__}, not a privilege refusal")
            continue
        problems.append(f"api_keys: `{statement}` was allowed")
    return problems


def rate_limit_delete_problems(as_user: AsUser, world: World) -> list[str]:
    """Counters cannot be deleted by users at all (no grant, no policy): not theirs, not their own."""
    problems: list[str] = []
    for who in (world.other, world.me):
        try:
            with as_user(world.me) as conn, conn.transaction(force_rollback=True):
                n = conn.execute("delete from public.rate_limits where user_id = %s", [who]).rowcount
        except psycopg.errors.InsufficientPrivilege:
            continue
        problems.append(f"rate_limits: deleting the counter of {who} was allowed ({n} rows)")
    return problems


# The message tree (migration 20261128001100): a parent or a current leaf may only name a message of the
# same conversation and user. The policies pin each row's user_id to the caller; the composite foreign
# keys do the rest, and foreign-key checks see every row whatever RLS hides. Each statement, as `me`,
# with what must happen: "refused" (an error), or the number of rows it may touch.
TREE: list[tuple[str, str | int]] = [
    (  # branch from another user's message in my own conversation
        "insert into public.messages (conversation_id, role, content, model, parent_id)"
        " values (%(my_conversation)s, 'user', 'branching', 'demo', %(other_message)s)",
        "refused",
    ),
    ("update public.conversations set current_leaf_id = %(other_message)s where id = %(my_conversation)s", "refused"),
    ("update public.conversations set current_leaf_id = null where id = %(other_conversation)s", 0),
    (  # my message as the leaf of another user's conversation
        "update public.conversations set current_leaf_id = %(my_message)s where id = %(other_conversation)s",
        0,
    ),
    (  # my message as the leaf of my other conversation
        "update public.conversations set current_leaf_id = %(my_message)s where id = %(my_empty_conversation)s",
        "refused",
    ),
    ("update public.messages set parent_id = %(my_message)s where id = %(my_message)s", "refused"),
    ("update public.conversations set current_leaf_id = %(my_message)s where id = %(my_conversation)s", 1),
    (  # my attachment on another user's message (the composite foreign key refuses it)
        "insert into public.attachments (message_id, conversation_id, user_id, name, media_type, size, data)"
        " values (%(other_message)s, %(other_conversation)s, %(me)s, 'mine', 'text/plain', 1, '\\x41')",
        "refused",
    ),
    (  # the store's own function attaches only to the caller's messages
        "select * from public.add_attachment(%(other_message)s, 'mine', 'text/plain', '\\x41', null, null)",
        0,
    ),
]


def tree_problems(as_user: AsUser, world: World) -> list[str]:
    problems: list[str] = []
    for statement, expected in TREE:
        try:
            with as_user(world.me) as conn, conn.transaction(force_rollback=True):
                outcome: str | int = conn.execute(statement, params_for(world)).rowcount
        except psycopg.Error:
            outcome = "refused"
        if outcome != expected:
            problems.append(f"message tree: `{statement}` gave {outcome!r}, expected {expected!r}")
    return problems


def app_user(sub: str, **extra: object) -> dict[str, object]:
    """This app's user claims for `sub` (the shape of services/app_tokens.user_claims), plus `extra`."""
    return {"iss": APP_ISSUER, "chat_scope": "user", "sub": sub, "role": "authenticated", **extra}


SUPABASE_AUTH_ISSUER = "https://project-ref.supabase.co/auth/v1"


def stranger_tokens(world: World) -> dict[str, dict[str, object]]:
    """Claims that name `me` (and claim every app role) but are not this app's user token: another issuer
    (Supabase Auth's own, or a Clerk token someone registered), no issuer, no scope, the sign-in and sweeper
    scopes. Decision (migration 20261128001700): none of them may read or write anything."""
    me = world.me
    roles = ["reviewer", "admin"]
    return {
        "Supabase Auth token": {"iss": SUPABASE_AUTH_ISSUER, "sub": me, "role": "authenticated", "roles": roles},
        "another issuer with the user scope": {**app_user(me, roles=roles), "iss": "https://clerk.example.test"},
        "no issuer": {"sub": me, "role": "authenticated", "chat_scope": "user", "roles": roles},
        "app token without a scope": {"iss": APP_ISSUER, "sub": me, "role": "authenticated", "roles": roles},
        "sign-in token": {"iss": APP_ISSUER, "role": "authenticated", "chat_scope": "signin"},
        "sign-in token naming a user": {**app_user(me, roles=roles), "chat_scope": "signin"},
        "sweeper token naming a user": {**app_user(me, roles=roles), "chat_scope": "sweeper"},
    }


# Reads that must find nothing for a stranger token (the world has rows of `me` in every table).
STRANGER_READS: list[str] = [
    "select id from public.messages",
    "select id from public.conversations",
    "select user_id from public.profiles",
    "select user_id from public.rate_limits",
    "select id from public.api_keys",
    "select id from public.sessions",
    "select id from public.audit_log",
    "select id from public.page_messages(100)",
    "select id from public.list_conversations(100)",
    "select id from public.recent_messages(%(my_conversation)s, 100)",
    "select id from public.path_messages(%(my_conversation)s, %(my_message)s)",
    "select id from public.history_page(100, p_all_users => true)",
    "select id from public.search_messages('hello', 100, all_users => true)",
    "select model from public.message_models(true)",
    "select user_id from public.usage_by_user('-infinity', 'infinity', true)",
    "select id from public.attachments",
    "select message_id from public.feedback",
    "select message_id from public.message_feedback(array[%(my_message)s, %(other_spare_message)s]::uuid[])",
    "select id from public.history_page(100, p_all_users => true, p_feedback => 'up')",
    "select id from public.search_messages('hello', 100, all_users => true, feedback_filter => 'up')",
    "select day from public.usage_by_day('-infinity', 'infinity', 'UTC', true) where thumbs_up + thumbs_down > 0",
]
# Writes that must be refused or touch nothing for a stranger token.
STRANGER_WRITES: list[str] = [
    "insert into public.conversations (user_id, title) values (%(me)s, 'planted')",
    "insert into public.messages (conversation_id, user_id, role, content, model)"
    " values (%(my_conversation)s, %(me)s, 'assistant', 'planted', 'demo')",
    "update public.messages set content = 'overwritten'",
    "delete from public.conversations",
    "insert into public.profiles (user_id, display_name) values (%(me)s, 'planted')",
    "update public.profiles set display_name = 'planted'",
    "insert into public.rate_limits (user_id, hits) values (%(me)s, 0)",
    "update public.api_keys set revoked_at = now()",
    "insert into public.audit_log (actor_id, action) values (%(me)s, 'planted')",
    "select id from public.add_message(%(my_conversation)s, 'assistant', 'planted', 'demo')",
    "select 1 where public.delete_conversation(%(my_conversation)s)",
    "select public.delete_all_user_data()",
    "select hits from public.count_request(60)",
    "select id from public.choose_branch(%(my_message)s)",
    # `me` has feedback on my_message (build_world): a stranger naming `me` must not change or remove it.
    "update public.feedback set comment = 'planted'",
    "delete from public.feedback",
    "select 1 where public.clear_feedback(%(my_message)s) > 0",
]


def _touched(conn: psycopg.Connection, statement: str, params: dict[str, object]) -> int:
    cur = conn.execute(statement, params)
    return len(cur.fetchall()) if statement.startswith("select") else cur.rowcount


def stranger_problems(as_claims: AsClaims, world: World) -> list[str]:
    """No token but this app's user token reads or writes a row: not another issuer's (whatever roles it
    claims), not a sign-in or sweeper token, not one without a scope."""
    problems: list[str] = []
    params = params_for(world)
    for label, claims in stranger_tokens(world).items():
        for statement in STRANGER_READS:
            try:
                with as_claims(claims) as conn, conn.transaction(force_rollback=True):
                    seen = _touched(conn, statement, params)
            except psycopg.Error as exc:
                problems.append(f"{label}: `{statement}` failed instead of finding nothing: {exc}")
                continue
            if seen:
                problems.append(f"{label}: `{statement}` found {seen} rows")
        for statement in STRANGER_WRITES:
            try:
                with as_claims(claims) as conn, conn.transaction(force_rollback=True):
                    touched = _touched(conn, statement, params)
            except psycopg.Error:
                continue
            if touched:
                problems.append(f"{label}: `{statement}` wrote {touched} rows")
    return problems


# Functions for pre-sign-in work and the sweep (definer: they bypass row-level security). Only this app's
# sign-in (or sweeper) token may call them; a user token, or any other issuer's, gets "permission denied".
SIGNIN_FUNCTIONS: list[str] = [
    "select * from public.api_key_owner(%(planted_hash)s)",
    "select * from public.signin_open_session(%(me)s, %(planted_hash)s, now(), now() + interval '1 hour', 600, '', '')",
    "select * from public.signin_find_session(%(planted_hash)s, now(), 60)",
    "select public.signin_revoke_session(%(planted_hash)s, now())",
    "select public.signin_revoke_user_sessions(%(other)s, now())",
    "select public.signin_delete_user_sessions(%(other)s)",
    "select * from public.signin_read_attempts(array['account:x'])",
    "select public.signin_record_failure('account:x', now(), 60)",
    "select public.signin_block('account:x', now() + interval '1 hour')",
    "select public.signin_clear_attempts('account:x')",
    "select public.signin_audit('signin.planted', null, '{}')",
]
SWEEPER_FUNCTIONS: list[str] = ["select public.sweep_stale_replies(30)"]


def scope_problems(as_claims: AsClaims, world: World) -> list[str]:
    """The sign-in functions refuse every token but the app's sign-in token; the sweep every token but the
    app's sweeper token (a user token naming any user included)."""
    me = world.me
    refused_for: dict[str, list[dict[str, object]]] = {
        "sign-in": [
            app_user(me, roles=["reviewer", "admin"]),
            {"iss": SUPABASE_AUTH_ISSUER, "role": "authenticated", "chat_scope": "signin"},
            {"iss": APP_ISSUER, "role": "authenticated", "chat_scope": "sweeper"},
        ],
        "sweeper": [
            app_user(me, roles=["reviewer", "admin"]),
            {"iss": SUPABASE_AUTH_ISSUER, "role": "authenticated", "chat_scope": "sweeper"},
            {"iss": APP_ISSUER, "role": "authenticated", "chat_scope": "signin"},
        ],
    }
    problems: list[str] = []
    for kind, statements in (("sign-in", SIGNIN_FUNCTIONS), ("sweeper", SWEEPER_FUNCTIONS)):
        for claims in refused_for[kind]:
            for statement in statements:
                try:
                    with as_claims(claims) as conn, conn.transaction(force_rollback=True):
                        conn.execute(statement, params_for(world))
                except psycopg.errors.InsufficientPrivilege as exc:
                    if "permission denied" not in str(exc):
                        problems.append(f"`{statement}` was refused, but not as a privilege: {exc}")
                    continue
                except psycopg.Error as exc:
                    problems.append(f"`{statement}` with {claims} failed with {type(exc).__name__}: {exc}")
                    continue
                problems.append(f"{kind} function `{statement}` accepted {claims}")
    return problems


def never_updated_problems(as_user: AsUser, world: World) -> list[str]:
    """Rows of NEVER_UPDATED_TABLES cannot be changed by their owner either: the grant refuses it."""
    problems: list[str] = []
    for table in NEVER_UPDATED_TABLES:
        try:
            with as_user(world.me) as conn, conn.transaction(force_rollback=True):
                n = conn.execute(f"update public.{table} set user_id = %(nobody)s", params_for(world)).rowcount
        except psycopg.errors.InsufficientPrivilege as exc:
            if "permission denied" not in str(exc):
                problems.append(f"{table}: an update was refused, but not by a grant: {exc}")
            continue
        problems.append(f"{table}: an update was allowed ({n} rows)")
    return problems


def behaviour_problems(as_user: AsUser, world: World, as_claims: AsClaims | None = None) -> list[str]:
    problems = (
        move_problems(as_user, world)
        + reach_problems(as_user, world)
        + own_rows_problems(as_user, world)
        + rate_limit_delete_problems(as_user, world)
        + api_key_privilege_problems(as_user, world)
        + tree_problems(as_user, world)
        + never_updated_problems(as_user, world)
    )
    if as_claims is not None:
        problems += stranger_problems(as_claims, world) + scope_problems(as_claims, world)
    return problems


def build_world(as_user: AsUser, me: str, other: str, mover: str) -> World:
    """Create the rows the behaviour checks need, as each user through `as_user` (committed)."""
    ids: dict[str, dict[str, uuid.UUID]] = {}
    for sub in (me, other):
        with as_user(sub) as conn:
            conversation = conn.execute(
                "insert into public.conversations (title) values ('checked') returning id"
            ).fetchone()
            empty = conn.execute("insert into public.conversations (title) values ('empty') returning id").fetchone()
            assert conversation is not None and empty is not None
            message = conn.execute(
                "insert into public.messages (conversation_id, role, content, model)"
                " values (%s, 'user', 'hello', 'demo') returning id",
                [conversation[0]],
            ).fetchone()
            assert message is not None
            conn.execute("insert into public.rate_limits (user_id, hits) values (%s, 1)", [sub])
            conn.execute("insert into public.profiles (display_name) values ('checked')")
            key = conn.execute(
                "insert into public.api_keys (name, prefix, secret_hash)"
                " values ('checked', 'sk-chat-', %s) returning id",
                [uuid.uuid4().hex * 2],
            ).fetchone()
            assert key is not None
            attachment = conn.execute(
                "insert into public.attachments (message_id, conversation_id, name, media_type, size, data)"
                " values (%s, %s, 'checked.txt', 'text/plain', 5, 'hello'::bytea) returning id",
                [message[0], conversation[0]],
            ).fetchone()
            assert attachment is not None
            conn.execute(
                "insert into public.feedback (message_id, rating, message_created_at)"
                " select id, 1, created_at from public.messages where id = %s",
                [message[0]],
            )
            ids[sub] = {
                "conversation": conversation[0],
                "empty": empty[0],
                "message": message[0],
                "key": key[0],
                "attachment": attachment[0],
            }
    with as_user(other) as conn:
        # Only `other` has it: my own rows stay exactly one message per table for the counts above.
        spare = conn.execute(
            "insert into public.messages (conversation_id, role, content, model)"
            " values (%s, 'assistant', 'unrated', 'demo') returning id",
            [ids[other]["conversation"]],
        ).fetchone()
        assert spare is not None
    with as_user(mover) as conn:
        conn.execute("insert into public.conversations (title) values ('to be moved')")
    return World(
        me=me,
        other=other,
        mover=mover,
        nobody=f"{me}_nobody",
        my_conversation=ids[me]["conversation"],
        my_empty_conversation=ids[me]["empty"],
        my_message=ids[me]["message"],
        other_conversation=ids[other]["conversation"],
        other_message=ids[other]["message"],
        my_key=ids[me]["key"],
        other_spare_message=spare[0],
        my_attachment=ids[me]["attachment"],
    )


@contextmanager
def savepoint_with(conn: psycopg.Connection, claims: dict[str, object]) -> Iterator[psycopg.Connection]:
    """`as_claims` on one connection already inside a transaction: a savepoint as `authenticated` with
    `claims`, undone afterwards (role and claims included, as `set_config(..., true)` inside a savepoint
    is reverted with it)."""
    with conn.transaction(force_rollback=True):
        conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            [json.dumps(claims)],
        )
        yield conn


def savepoint_as(conn: psycopg.Connection, sub: str) -> AbstractContextManager[psycopg.Connection]:
    """`as_user` on one connection already inside a transaction: this app's user claims for `sub`."""
    return savepoint_with(conn, app_user(sub))


@contextmanager
def through_store(store: PostgresStore, sub: str) -> Iterator[psycopg.Connection]:
    """The store's own pool and transaction helper: role, claims and transaction exactly as the app has them."""
    with as_principal(store._pool, Principal(user_id=sub)) as conn:
        yield conn


@contextmanager
def through_store_with(store: PostgresStore, claims: dict[str, object]) -> Iterator[psycopg.Connection]:
    """The store's pool as `authenticated` with any claims (as a request with someone else's token would be)."""
    with as_role(store._pool, "authenticated", claims) as conn:
        yield conn


def store_world(store: PostgresStore) -> World:
    """A fresh World built through the store (unique users per call)."""
    suffix = uuid.uuid4().hex[:8]
    return build_world(
        lambda sub: through_store(store, sub), f"user_me_{suffix}", f"user_other_{suffix}", f"user_mover_{suffix}"
    )
