"""Schemathesis against the served OpenAPI document (/api/openapi.json) of a real server, with a valid
personal API key: for every operation, bounded generated requests (valid and not), and every answer must be
one the document describes (status, content type, body schema, headers) and never a 5xx."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.accounts import Account, AccountStore
from services.api_keys import ApiKeyService
from services.auth import Principal
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from tests.e2e.server import app_server

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


@dataclass
class Api:
    url: str
    key: str


@pytest.fixture(scope="module")
def api(database: EmbeddedDatabase) -> Iterator[Api]:
    made: dict[str, Account] = {}

    def setup(data_dir: Path) -> None:
        made["ann"] = AccountStore(data_dir / "users.yaml").create("ann", None, name="Ann")

    env = {
        "CHAT_AUTH": "local",
        "DATABASE_URL": database.app_url,
        "DATABASE_ADMIN_URL": database.admin_url,
        "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        "CHAT_DEMO_CHARS_PER_S": "1000000",
        "CHAT_METRICS": "on",
    }
    with app_server(env, setup=setup) as server:
        store = PostgresStore(database.app_url, pool_max=1)
        try:
            _, secret = ApiKeyService(store, max_live=5, principal_ttl_s=300).create(
                Principal(user_id=made["ann"].user_id), "schemathesis"
            )
            yield Api(server.url, secret)
        finally:
            store.close()


def test_every_answer_is_one_the_document_describes(api: Api) -> None:
    # The schema is loaded from the running server, so operations are walked here rather than by
    # `schema.parametrize()` (its fixture-based loader does not work with this pytest).
    schema = schemathesis.openapi.from_url(f"{api.url}/api/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result  # the served document must load whole
        operations.append(result.ok())
    assert len(operations) >= 10  # every documented route, /v1 included
    answered: dict[str, set[int]] = {}
    for operation in operations:
        exercise(operation, api, answered.setdefault(operation.label, set()))
    # Every operation was called, and the key was accepted (some answer other than 401) by each that needs it.
    assert set(answered) == {operation.label for operation in operations}
    assert all(codes - {401} for codes in answered.values()), answered


def exercise(operation: APIOperation, api: Api, statuses: set[int]) -> None:
    """Bounded generated requests (valid and not) against one operation, each answer checked."""

    @given(case=operation.as_strategy())
    @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    def answers_as_documented(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=api.url, headers={"Authorization": f"Bearer {api.key}"}, checks=CHECKS
        )
        statuses.add(response.status_code)

    answers_as_documented()
