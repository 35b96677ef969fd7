"""Personal API keys on the real embedded PostgreSQL: services/api_keys.py over PostgresStore, what the table
holds (a hash, never the secret), the lookup function's privileges, the last-use throttle, and refusals
for every kind of bad key, a switched-off account included. The protocol-level behaviour is in
tests/test_store_contract.py; the Account page's section in tests/test_api_keys_page.py."""

from __future__ import annotations

import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from services.accounts import AccountStore
from services.api_keys import INVALID_KEY, MAX_EXPIRY_DAYS, ApiKeyService, hash_secret, is_api_key
from services.app_tokens import APP_ISSUER, signin_claims, user_claims
from services.auth import AuthError, Principal
from services.config import load_settings
from services.runtime import StartupError, build_services
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from services.store.types import InvalidInput, NotFound
from tests import rls_checks
from tests.auth_support import ISSUER, SigningKey
from tests.rls_checks import World

PASSWORD = "correct horse battery"


@pytest.fixture
def accounts(tmp_path: Path) -> AccountStore:
    found = AccountStore(tmp_path / "users.yaml")
    found.create("ann", PASSWORD, name="Ann", roles=("reviewer", "admin"))
    found.create("ben", PASSWORD, name="Ben")
    return found


@pytest.fixture
def keys(store: PostgresStore) -> ApiKeyService:
    """Without an account store: the Clerk and single-user modes."""
    return ApiKeyService(store, max_live=3, principal_ttl_s=300)


@pytest.fixture
def local_keys(store: PostgresStore, accounts: AccountStore) -> ApiKeyService:
    return ApiKeyService(store, max_live=3, principal_ttl_s=300, accounts=accounts)


@pytest.fixture
def admin(database: EmbeddedDatabase) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        yield conn


def user(label: str) -> Principal:
    return Principal(user_id=f"user_{label}_{uuid.uuid4().hex[:8]}")


def owner_of(account_store: AccountStore, username: str) -> Principal:
    account = account_store.get(username)
    assert account is not None
    return Principal(user_id=account.user_id, claims={"roles": list(account.roles)})


def refusal(service: ApiKeyService, secret: str) -> str:
    with pytest.raises(AuthError) as caught:
        service.authenticate(secret)
    assert caught.value.message == INVALID_KEY  # one answer for every refusal
    return caught.value.reason


def test_a_new_key_authenticates_as_its_owner_without_roles(keys: ApiKeyService, store: PostgresStore) -> None:
    rita = Principal(user_id=f"user_rita_{uuid.uuid4().hex[:8]}", claims={"roles": ["reviewer", "admin"]})
    key, secret = keys.create(rita, "ci")
    assert re.fullmatch(r"sk-chat-[A-Za-z0-9_-]{43}", secret) and is_api_key(secret)
    assert key.prefix == secret[:14] and key.name == "ci"

    before = datetime.now(UTC)
    principal = keys.authenticate(secret)
    assert principal.user_id == rita.user_id
    assert principal.claims["auth_method"] == "api_key" and principal.claims["key_id"] == str(key.id)
    # A key acts only on its owner's own rows: the owner's reviewer and admin roles do not come with it.
    assert principal.roles == () and not principal.is_reviewer
    assert principal.expires_at is not None
    assert before + timedelta(seconds=290) <= principal.expires_at <= datetime.now(UTC) + timedelta(seconds=300)
    # The principal works with the store, under row-level security, as the owner.
    conversation = store.create_conversation(principal, "from a script")
    assert conversation.user_id == rita.user_id
    assert [c.id for c in store.list_conversations(rita).items] == [conversation.id]


def test_the_database_keeps_the_hash_and_never_the_secret(keys: ApiKeyService, admin: psycopg.Connection) -> None:
    key, secret = keys.create(user("hash"), "laptop")
    row = admin.execute("select secret_hash, row_to_json(k)::text from public.api_keys k where id = %s", [key.id])
    stored = row.fetchone()
    assert stored is not None
    assert stored[0] == hashlib.sha256(secret.encode()).hexdigest() == hash_secret(secret)
    random_part = secret.removeprefix("sk-chat-")
    assert random_part not in stored[1] and random_part[8:] not in stored[1]
    assert key.prefix in stored[1]  # the shown prefix is all that is kept in the clear


def test_every_bad_key_is_refused_with_the_same_message_and_its_own_reason(
    keys: ApiKeyService, admin: psycopg.Connection, caplog: pytest.LogCaptureFixture
) -> None:
    owner = user("refused")
    _, revoked_secret = keys.create(owner, "revoked")
    expired, expired_secret = keys.create(owner, "expired", expires_in_days=1)
    live, live_secret = keys.create(owner, "live")
    keys.revoke(owner, keys.list(owner)[-1].id)  # the oldest: "revoked"
    admin.execute("update public.api_keys set expires_at = now() - interval '1 second' where id = %s", [expired.id])

    caplog.set_level(logging.INFO, logger="services.api_keys")
    assert refusal(keys, revoked_secret) == "api_key_revoked"
    assert refusal(keys, expired_secret) == "api_key_expired"
    assert refusal(keys, "sk-chat-" + "A" * 43) == "api_key_unknown"
    malformed = [
        "",
        "sk-chat-",
        "sk-chat-short",
        live_secret + "x",
        live_secret[:-1] + "!",
        " " + live_secret,
        live_secret.replace("sk-chat-", "sk-live-"),
        "Bearer " + live_secret,
        "sk-chat-" + "é" * 43,
    ]
    for secret in malformed:
        assert refusal(keys, secret) == "api_key_malformed", secret
    assert refusal(keys, None) == "api_key_malformed"  # type: ignore[arg-type]
    # The log tells the reasons apart and never carries a secret.
    assert live_secret not in caplog.text and revoked_secret not in caplog.text
    assert "api_key_revoked" in caplog.text and "api_key_expired" in caplog.text
    # The live key still works.
    assert keys.authenticate(live_secret).claims["key_id"] == str(live.id)


def test_last_use_is_recorded_at_most_once_a_minute(keys: ApiKeyService, admin: psycopg.Connection) -> None:
    owner = user("used")
    key, secret = keys.create(owner, "busy")
    assert keys.list(owner)[0].last_used_at is None
    keys.authenticate(secret)
    first = keys.list(owner)[0].last_used_at
    assert first is not None
    keys.authenticate(secret)
    assert keys.list(owner)[0].last_used_at == first
    # A minute later the next use writes again.
    admin.execute(
        "update public.api_keys set last_used_at = last_used_at - interval '61 seconds' where id = %s", [key.id]
    )
    keys.authenticate(secret)
    latest = keys.list(owner)[0].last_used_at
    assert latest is not None and latest > first - timedelta(seconds=61)


def test_another_user_cannot_list_or_revoke_my_keys(keys: ApiKeyService) -> None:
    mine, other = user("mine"), user("other")
    key, secret = keys.create(mine, "mine")
    assert keys.list(other) == []
    with pytest.raises(NotFound):
        keys.revoke(other, key.id)
    assert keys.authenticate(secret).user_id == mine.user_id


def test_a_switched_off_or_deleted_local_account_has_no_working_keys(
    local_keys: ApiKeyService, accounts: AccountStore
) -> None:
    ben = owner_of(accounts, "ben")
    _, secret = local_keys.create(ben, "script")
    assert local_keys.authenticate(secret).user_id == ben.user_id
    accounts.set_disabled("ben", True)
    assert refusal(local_keys, secret) == "api_key_account_disabled"
    accounts.set_disabled("ben", False)
    assert local_keys.authenticate(secret).user_id == ben.user_id
    accounts.delete("ben")
    assert refusal(local_keys, secret) == "api_key_account_gone"


def test_a_key_cannot_make_keys_but_can_list_and_revoke_its_owners(keys: ApiKeyService) -> None:
    owner = user("owner")
    key, secret = keys.create(owner, "script")
    by_key = keys.authenticate(secret)
    with pytest.raises(AuthError) as caught:
        keys.create(by_key, "another")
    assert caught.value.reason == "api_key_cannot_create"
    assert [k.id for k in keys.list(by_key)] == [key.id]
    keys.revoke(by_key, key.id)
    assert refusal(keys, secret) == "api_key_revoked"


def test_create_checks_its_input_and_the_cap(keys: ApiKeyService) -> None:
    owner = user("cap")
    for days in (0, -1, MAX_EXPIRY_DAYS + 1, True, 1.5):
        with pytest.raises(InvalidInput):
            keys.create(owner, "bad expiry", days)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput):
        keys.create(owner, "   ")
    key, _ = keys.create(owner, "a year", 365)
    assert key.expires_at is not None
    assert abs((key.expires_at - datetime.now(UTC)) - timedelta(days=365)) < timedelta(minutes=1)
    keys.create(owner, "two")
    keys.create(owner, "three")
    with pytest.raises(InvalidInput, match="3 active API keys"):
        keys.create(owner, "four")
    assert len(keys.list(owner)) == 3


# --- privileges around the table and the lookup function ----------------------------------------------


@pytest.fixture(scope="module")
def world(store: PostgresStore) -> World:
    return rls_checks.store_world(store)


def test_the_column_grants_refuse_what_the_policies_would_allow(store: PostgresStore, world: World) -> None:
    assert rls_checks.api_key_privilege_problems(lambda sub: rls_checks.through_store(store, sub), world) == []


# Each grant below reopens one thing api_key_privilege_problems must refuse; the check must notice each.
GRANT_MUTATIONS = {
    "read the hash": "grant select (secret_hash) on public.api_keys to authenticated",
    "move a key": "grant update (user_id) on public.api_keys to authenticated",
    "re-point a key": "grant update (secret_hash) on public.api_keys to authenticated",
    "stretch expiry": "grant update (expires_at) on public.api_keys to authenticated",
    # The lookup is granted to `authenticated` (the Supabase backend calls it with a sign-in token); only
    # its scope check keeps a user's token out.
    "look hashes up": "create or replace function chat_private.require_scope(p_scope text, p_function text)"
    " returns void language plpgsql set search_path = pg_catalog, pg_temp as $$ begin end $$",
}


@pytest.mark.parametrize("ddl", GRANT_MUTATIONS.values(), ids=list(GRANT_MUTATIONS))
def test_each_widened_grant_is_noticed(database: EmbeddedDatabase, world: World, ddl: str) -> None:
    with psycopg.connect(database.admin_url) as conn, conn.transaction(force_rollback=True):
        conn.execute(ddl)
        problems = rls_checks.api_key_privilege_problems(lambda sub: rls_checks.savepoint_as(conn, sub), world)
    assert len(problems) == 1, problems


def _claims(conn: psycopg.Connection, role: str, claims: dict[str, object] | None) -> None:
    conn.execute(f"set local role {role}")
    if claims is not None:
        conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])


def test_only_the_sign_in_token_may_call_the_lookup_and_its_role_cannot_read_the_table(
    database: EmbeddedDatabase, keys: ApiKeyService
) -> None:
    owner = user("lookup")
    _, secret = keys.create(owner, "x")
    digest = hash_secret(secret)
    signin = signin_claims(APP_ISSUER, time.time())
    refused: list[tuple[str, dict[str, object] | None]] = [
        ("anon", None),
        ("authenticated", None),
        ("authenticated", user_claims(owner, APP_ISSUER, time.time())),  # the owner's own user token
        ("authenticated", {**signin, "iss": "https://project-ref.supabase.co/auth/v1"}),  # another issuer
        ("chat_signin", None),  # the role alone is not enough any more
    ]
    with psycopg.connect(database.app_url) as conn:
        for role, claims in refused:
            with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
                _claims(conn, role, claims)
                conn.execute("select * from public.api_key_owner(%s)", [digest])
        with pytest.raises(psycopg.errors.InsufficientPrivilege), conn.transaction():
            _claims(conn, "chat_signin", signin)
            conn.execute("select user_id from public.api_keys")
        found = []
        # The Postgres backend's way (the NOLOGIN role and the claims) and the Supabase backend's (a sign-in
        # token, role `authenticated`) both find the key.
        for role in ("chat_signin", "authenticated"):
            with conn.transaction():
                _claims(conn, role, signin)
                found.append(conn.execute("select state from public.api_key_owner(%s)", [digest]).fetchone())
    assert found == [("live",), ("live",)]


def test_a_revoked_key_stays_revoked_even_for_its_owner(store: PostgresStore, keys: ApiKeyService) -> None:
    owner = user("unrevoke")
    key, secret = keys.create(owner, "leaked")
    keys.revoke(owner, key.id)
    with rls_checks.through_store(store, owner.user_id) as conn:
        assert conn.execute("update public.api_keys set revoked_at = null where id = %s", [key.id]).rowcount == 1
    assert keys.list(owner)[0].revoked_at is not None
    assert refusal(keys, secret) == "api_key_revoked"


def test_the_app_role_can_look_keys_up(store: PostgresStore) -> None:
    assert store.api_key_access_problem() is None


def test_without_chat_signin_the_app_says_what_to_grant_or_switch_off(
    database: EmbeddedDatabase, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    role = f"nokeys_{uuid.uuid4().hex[:8]}"
    name = database.app_url.split("?")[0].rsplit("/", 1)[1]
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute(f"create role {role} login noinherit")
        conn.execute(f"grant authenticated, anon to {role}")
        conn.execute(f"grant connect on database {name} to {role}")
    url = database.app_url.replace("chat_app:", f"{role}:", 1)
    monkeypatch.setenv("CHAT_AUTH", "clerk")
    monkeypatch.setenv("CLERK_ISSUER", ISSUER)
    monkeypatch.setenv("CLERK_JWT_KEY", SigningKey.generate("startup").public_pem)
    monkeypatch.setenv("CHAT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("DATABASE_ADMIN_URL", database.admin_url)
    monkeypatch.delenv("CHAT_API_KEYS", raising=False)
    try:
        with pytest.raises(StartupError, match=f"grant chat_signin to {role};.*CHAT_API_KEYS=false"):
            build_services(load_settings())
        monkeypatch.setenv("CHAT_API_KEYS", "false")
        services = build_services(load_settings())
        assert services.api_keys is None
        services.close()
    finally:
        with psycopg.connect(database.admin_url, autocommit=True) as conn:
            conn.execute(f"drop owned by {role}")
            conn.execute(f"drop role {role}")
