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

from services.auth import Principal
from services.store.postgres import PostgresStore, as_principal

AsUser = Callable[[str], AbstractContextManager[psycopg.Connection]]

# Tables the migrations create; a new table in `public` must be added here (and get policies) or the
# flag check reports it.
PUBLIC_TABLES = (
    "api_keys",
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
# are written by the `chat_signin` role before anyone is signed in; tests/test_sessions.py checks their
# isolation through the sign-in service, and the catalogue checks here pin their flags and policies.
BEHAVIOUR_TABLES = ("api_keys", "conversations", "feedback", "messages", "profiles", "rate_limits")

_OWN = "(( SELECT (auth.jwt() ->> 'sub'::text)) = user_id)"
_REVIEWER = (
    '( SELECT COALESCE((auth.jwt() @? \'$?(@."roles" == "reviewer" || @."metadata"."roles" == "reviewer")\''
    '::jsonpath), false) AS "coalesce")'
)
_ADMIN = (
    '( SELECT COALESCE((auth.jwt() @? \'$?(@."roles" == "admin" || @."metadata"."roles" == "admin")\''
    '::jsonpath), false) AS "coalesce")'
)
_MESSAGE_INSERT = (
    "((( SELECT (auth.jwt() ->> 'sub'::text)) = user_id) AND (EXISTS ( SELECT 1 FROM conversations c"
    " WHERE ((c.id = messages.conversation_id) AND (c.user_id = ( SELECT (auth.jwt() ->> 'sub'::text)))))))"
)

# Feedback may be written only by the owner of the message it is about, with that message's own created_at
# (History's keyset order walks the copy; migration 20261128001900).
_FEEDBACK_WRITE = (
    "((( SELECT (auth.jwt() ->> 'sub'::text)) = user_id) AND (EXISTS ( SELECT 1 FROM messages m"
    " WHERE ((m.id = feedback.message_id) AND (m.user_id = ( SELECT (auth.jwt() ->> 'sub'::text)))"
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
    "sessions_signin_all": Policy("sessions", "ALL", "true", "true", "{chat_signin}", behaviour=False),
    "signin_attempts_service": Policy("signin_attempts", "ALL", "true", "true", "{chat_signin}", behaviour=False),
    "audit_log_insert_own": Policy(
        "audit_log", "INSERT", None, "(( SELECT (auth.jwt() ->> 'sub'::text)) = actor_id)", behaviour=False
    ),
    "audit_log_insert_signin": Policy(
        "audit_log", "INSERT", None, "(actor_id = 'signin'::text)", "{chat_signin}", behaviour=False
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
}


def _normalise(expression: str | None) -> str | None:
    return None if expression is None else re.sub(r"\s+", " ", expression).strip()


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
            " (select count(*) from public.api_keys)"
        ).fetchone()
        if counts != (1, 2, 1, 1, 1):
            problems.append(
                f"my rows (messages, conversations, counters, profiles, keys) seen as {counts},"
                " expected (1, 2, 1, 1, 1)"
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


def behaviour_problems(as_user: AsUser, world: World) -> list[str]:
    return (
        move_problems(as_user, world)
        + reach_problems(as_user, world)
        + own_rows_problems(as_user, world)
        + rate_limit_delete_problems(as_user, world)
        + api_key_privilege_problems(as_user, world)
        + tree_problems(as_user, world)
    )


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
            conn.execute(
                "insert into public.feedback (message_id, rating, message_created_at)"
                " select id, 1, created_at from public.messages where id = %s",
                [message[0]],
            )
            ids[sub] = {"conversation": conversation[0], "empty": empty[0], "message": message[0], "key": key[0]}
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
    )


@contextmanager
def savepoint_as(conn: psycopg.Connection, sub: str) -> Iterator[psycopg.Connection]:
    """`as_user` on one connection already inside a transaction: a savepoint as `authenticated` with
    `sub`'s claims, undone afterwards (role and claims included, as `set_config(..., true)` inside a
    savepoint is reverted with it)."""
    with conn.transaction(force_rollback=True):
        conn.execute(
            "select set_config('role', 'authenticated', true), set_config('request.jwt.claims', %s, true)",
            [json.dumps({"sub": sub, "role": "authenticated"})],
        )
        yield conn


@contextmanager
def through_store(store: PostgresStore, sub: str) -> Iterator[psycopg.Connection]:
    """The store's own pool and transaction helper: role, claims and transaction exactly as the app has them."""
    with as_principal(store._pool, Principal(user_id=sub)) as conn:
        yield conn


def store_world(store: PostgresStore) -> World:
    """A fresh World built through the store (unique users per call)."""
    suffix = uuid.uuid4().hex[:8]
    return build_world(
        lambda sub: through_store(store, sub), f"user_me_{suffix}", f"user_other_{suffix}", f"user_mover_{suffix}"
    )
