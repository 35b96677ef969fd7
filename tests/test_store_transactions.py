"""The store's transaction helper maps database failures to the store's own errors, with plain messages,
and refuses anything but a verified Principal before any SQL runs."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from services.auth import Principal
from services.store import InvalidInput, NotFound, StoreError
from services.store.postgres import PostgresStore


def test_anything_but_a_principal_is_refused(store: PostgresStore) -> None:
    for caller in ("user_alice", {"sub": "user_alice"}, None):
        with pytest.raises(TypeError, match="database access needs a verified Principal"):
            store.get_conversation(caller, uuid.uuid4())  # type: ignore[arg-type]


def test_a_value_the_table_refuses_is_invalid_input(store: PostgresStore, alice: Principal) -> None:
    conv = store.create_conversation(alice, "checks")
    with pytest.raises(InvalidInput, match="The message could not be stored: a value is out of range."):
        store.add_message(alice, conv.id, "assistant", "x", "demo", input_tokens=-1)


def test_a_value_the_column_cannot_hold_is_invalid_input(store: PostgresStore, alice: Principal) -> None:
    conv = store.create_conversation(alice, "data")
    with pytest.raises(InvalidInput, match="The message could not be stored: it contains invalid data."):
        store.add_message(alice, conv.id, "assistant", "x", "demo", latency_ms=2**40)


def test_a_policy_refusal_is_not_found(store: PostgresStore, alice: Principal, bob: Principal) -> None:
    theirs = store.create_conversation(bob, "bob's")
    with pytest.raises(NotFound, match="That conversation does not exist."):
        store.add_message(alice, theirs.id, "user", "x", "demo")


def test_a_statement_over_its_time_limit_is_a_store_error(store: PostgresStore, alice: Principal) -> None:
    # The timeout is made tiny for this one transaction; pg_sleep(1) is certain to exceed it.
    statement: Any = "select pg_sleep(1)"
    with pytest.raises(StoreError, match="The database took too long to answer. Please try again."):
        with store._tx(alice) as conn:
            conn.execute("set local statement_timeout = '1ms'")
            conn.execute(statement)
