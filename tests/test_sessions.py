"""Sessions, sign-in throttling, the first administrator and the audit log, on the real embedded PostgreSQL:
services/sessions.py over services/store/signin.py, and the row-level security of the three new tables."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from services.accounts import AccountStore, LocalIssuer, load_or_create_signing_key
from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.sessions import (
    ACCOUNT_LOCK_AFTER,
    LOCK_S,
    Clock,
    SessionPolicy,
    SessionService,
    SignInRefused,
    account_delay,
    address_delay,
)
from services.store.embedded import EmbeddedDatabase
from services.store.signin import PostgresSigninStore

PASSWORD = "correct horse battery"
SETUP = "setup-code-for-tests"


class MovableClock(Clock):
    """Time that moves only when a test moves it: the wall clock is read once, so a slow machine (bcrypt
    under load takes seconds) cannot turn a 900 s wait into 899."""

    def __init__(self) -> None:
        start = time.time()
        super().__init__(wall=lambda: start)
        self.moved = 0.0

    def offset(self) -> float:
        return self.moved


@pytest.fixture(scope="module")
def signin_store(database: EmbeddedDatabase) -> Iterator[PostgresSigninStore]:
    s = PostgresSigninStore(database.app_url, pool_max=2)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def fresh_tables(database: EmbeddedDatabase) -> None:
    """Each test starts with no sessions and no counts (its clock starts at the wall clock again)."""
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("truncate public.sessions, public.signin_attempts")


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def service(tmp_path: Path, signin_store: PostgresSigninStore, clock: MovableClock) -> SessionService:
    issuer = LocalIssuer(load_or_create_signing_key(tmp_path / "k.pem"), ttl_s=60, clock=clock.now)
    return SessionService(
        signin_store,
        AccountStore(tmp_path / "users.yaml"),
        issuer,
        clock=clock,
        pepper="p" * 40,
        policy=SessionPolicy(lifetime_s=14 * 86_400, idle_s=8 * 3600),
        setup_code_path=tmp_path / "keys" / "setup-code",
        setup_code=SETUP,
    )


def make_admin(service: SessionService, username: str = "root") -> str:
    return service.sign_up(
        username=username, name="", password=PASSWORD, repeat=PASSWORD, setup_code=SETUP, allowed=False,
        address=f"192.0.2.{len(username)}",
    )  # fmt: skip


def refused(call: Any) -> SignInRefused:
    with pytest.raises(SignInRefused) as caught:
        call()
    return caught.value


# --- first administrator and sign-up ------------------------------------------------------------------


def test_the_first_account_needs_the_setup_code_and_becomes_administrator(service: SessionService) -> None:
    wrong = refused(
        lambda: service.sign_up(
            username="eve",
            name="",
            password=PASSWORD,
            repeat=PASSWORD,
            setup_code="guess",
            allowed=True,
            address="192.0.2.1",
        )  # fmt: skip
    )
    assert wrong.code == "setup_code" and not service.accounts.has_accounts()
    secret = make_admin(service)
    resumed = service.resume(secret)
    assert resumed is not None and set(resumed.principal.roles) == {"admin", "reviewer"}
    assert service.setup_code() is None  # used once, gone


def test_later_sign_ups_get_no_role_need_permission_and_are_rate_limited(service: SessionService) -> None:
    make_admin(service)
    closed = refused(
        lambda: service.sign_up(
            username="bob",
            name="",
            password=PASSWORD,
            repeat=PASSWORD,
            setup_code="",
            allowed=False,
            address="192.0.2.50",
        )  # fmt: skip
    )
    assert closed.code == "closed"
    for i in range(5):
        secret = service.sign_up(
            username=f"user{i}", name="", password=PASSWORD, repeat=PASSWORD, setup_code="", allowed=True,
            address="192.0.2.50",
        )  # fmt: skip
        resumed = service.resume(secret)
        assert resumed is not None and resumed.principal.roles == ()
    limited = refused(
        lambda: service.sign_up(
            username="user9",
            name="",
            password=PASSWORD,
            repeat=PASSWORD,
            setup_code="",
            allowed=True,
            address="192.0.2.50",
        )  # fmt: skip
    )
    assert limited.code == "rate_limited" and limited.retry_after_s > 3000


# --- sign-in, throttling ----------------------------------------------------------------------------


def test_delays_grow_then_lock() -> None:
    assert [account_delay(n) for n in range(1, 11)] == [0, 0, 0, 2, 4, 8, 16, 32, 64, LOCK_S]
    assert address_delay(20) == 0 and address_delay(21) == 2 and address_delay(40) == 60
    assert address_delay(100) == LOCK_S


def test_unknown_name_and_wrong_password_get_the_same_answer_and_both_count(
    service: SessionService, clock: MovableClock
) -> None:
    make_admin(service)
    service.accounts.create("ann", PASSWORD)
    answers = []
    for name in ("ann", "nobody"):
        for _ in range(3):
            err = refused(lambda n=name: service.sign_in(n, "wrong password here", address="198.51.100.1"))
            answers.append((err.code, err.message, err.retry_after_s))
    assert set(answers) == {("invalid", "Username or password is incorrect.", 0)}
    fourth = refused(lambda: service.sign_in("nobody", "wrong again", address="198.51.100.1"))
    assert (fourth.code, fourth.retry_after_s) == ("invalid", 2)


def test_lockout_refuses_even_the_right_password_until_it_passes(service: SessionService, clock: MovableClock) -> None:
    make_admin(service)
    service.accounts.create("ann", PASSWORD)
    for n in range(1, ACCOUNT_LOCK_AFTER + 1):
        err = refused(lambda n=n: service.sign_in("ann", "wrong password here", address=f"203.0.113.{n}"))
        assert err.code == "invalid" and err.retry_after_s == account_delay(n)
        if n < ACCOUNT_LOCK_AFTER:
            clock.moved += account_delay(n)
    locked = refused(lambda: service.sign_in("ann", PASSWORD, address="203.0.113.99"))
    assert locked.code == "locked" and locked.retry_after_s == LOCK_S
    assert "Try again in 15 minutes." in locked.message
    clock.moved += LOCK_S - 1
    assert refused(lambda: service.sign_in("ann", PASSWORD, address="203.0.113.99")).code == "locked"
    clock.moved += 1
    assert service.resume(service.sign_in("ann", PASSWORD, address="203.0.113.99")) is not None
    # A success clears the name's count: the next mistake is free again.
    assert refused(lambda: service.sign_in("ann", "wrong password here", address="203.0.113.9")).retry_after_s == 0


def test_a_disabled_account_cannot_sign_in_and_its_sessions_end(service: SessionService) -> None:
    make_admin(service)
    service.accounts.create("ann", PASSWORD)
    secret = service.sign_in("ann", PASSWORD, address="198.51.100.2")
    service.accounts.set_disabled("ann", True)
    assert service.resume(secret) is None
    assert refused(lambda: service.sign_in("ann", PASSWORD, address="198.51.100.2")).code == "disabled"
    service.accounts.set_disabled("ann", False)
    assert service.resume(secret) is None  # revoked for good, not just hidden while disabled


# --- sessions ---------------------------------------------------------------------------------------


def test_session_lasts_while_used_ends_when_idle_or_at_its_end(service: SessionService, clock: MovableClock) -> None:
    make_admin(service)
    secret = service.sign_in("root", PASSWORD, address="198.51.100.3")
    for _ in range(47):  # used every 7 hours (under the 8-hour idle limit) for 13.7 days
        clock.moved += 7 * 3600
        assert service.resume(secret) is not None
    clock.moved += 7 * 3600  # 14 days after sign-in: over, however busy
    assert service.resume(secret) is None
    other = service.sign_in("root", PASSWORD, address="198.51.100.3")
    clock.moved += 8 * 3600 + 1
    assert service.resume(other) is None


def test_tokens_are_short_and_renewed_only_past_half_life(service: SessionService, clock: MovableClock) -> None:
    make_admin(service)
    secret = service.sign_in("root", PASSWORD, address="198.51.100.4")
    first = service.resume(secret)
    assert first is not None and first.principal.claims["exp"] - first.principal.claims["iat"] == 60
    clock.moved += 20
    assert service.resume(secret, first.token).token == first.token  # type: ignore[union-attr]
    clock.moved += 15
    renewed = service.resume(secret, first.token)
    assert renewed is not None and renewed.token != first.token
    assert renewed.principal.claims["sid"] == str(renewed.session.id)


def test_the_database_holds_only_a_keyed_hash_of_the_cookie(
    service: SessionService, database: EmbeddedDatabase
) -> None:
    make_admin(service)
    secret = service.sign_in("root", PASSWORD, address="198.51.100.5")
    with psycopg.connect(database.admin_url) as conn:
        hashes = [r[0] for r in conn.execute("select secret_hash from public.sessions").fetchall()]
    assert secret not in hashes and service.secret_hash(secret) in hashes


# --- row-level security of the new tables ---------------------------------------------------------------


@contextmanager
def as_role(database: EmbeddedDatabase, role: str, claims: dict[str, Any] | None) -> Iterator[psycopg.Connection]:
    with psycopg.connect(database.app_url) as conn, conn.transaction(force_rollback=True):
        conn.execute("select set_config('role', %s, true)", [role])
        if claims is not None:
            conn.execute("select set_config('request.jwt.claims', %s, true)", [json.dumps(claims)])
        yield conn


def test_users_see_and_revoke_only_their_own_sessions(
    service: SessionService, signin_store: PostgresSigninStore, clock: MovableClock, database: EmbeddedDatabase
) -> None:
    make_admin(service)
    service.accounts.create("ann", PASSWORD)
    service.accounts.create("bob", PASSWORD)
    ann_secret = service.sign_in("ann", PASSWORD, address="198.51.100.6")
    bob_secret = service.sign_in("bob", PASSWORD, address="198.51.100.6")
    ann = service.resume(ann_secret)
    bob = service.resume(bob_secret)
    assert ann is not None and bob is not None
    listed = signin_store.list_sessions(ann.principal, now=clock.now())
    assert {s.user_id for s in listed} == {ann.principal.user_id}
    assert signin_store.revoke_own_sessions(ann.principal, now=clock.now(), keep=None) == 1
    assert service.resume(bob_secret) is not None and service.resume(ann_secret) is None
    claims = {"iss": APP_ISSUER, "chat_scope": "user", "sub": ann.principal.user_id, "role": "authenticated"}
    with as_role(database, "authenticated", claims) as conn:
        others = "update public.sessions set revoked_at = now() where user_id <> %s"
        assert conn.execute(others, [claims["sub"]]).rowcount == 0  # bob's rows are invisible to ann
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("update public.sessions set expires_at = now() + interval '1 year'")
    with as_role(database, "authenticated", claims) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(
            "insert into public.sessions (user_id, secret_hash, created_at, last_seen_at, expires_at,"
            " idle_timeout_s) values (%s, repeat('a', 64), now(), now(), now(), 60)",
            [claims["sub"]],
        )


@pytest.mark.parametrize("table", ["sessions", "signin_attempts", "audit_log"])
def test_anon_has_no_access_to_the_sign_in_tables(database: EmbeddedDatabase, table: str) -> None:
    with as_role(database, "anon", {"role": "anon"}) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(f"select * from public.{table}")


def test_signed_in_users_cannot_read_or_reset_attempt_counters(database: EmbeddedDatabase) -> None:
    claims = {"iss": APP_ISSUER, "chat_scope": "user", "sub": "user_alice", "role": "authenticated"}
    for statement in ("select * from public.signin_attempts", "delete from public.signin_attempts"):
        with as_role(database, "authenticated", claims) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_audit_log_is_readable_by_administrators_only_and_editable_by_nobody(
    signin_store: PostgresSigninStore, database: EmbeddedDatabase
) -> None:
    admin = Principal(user_id="acct_admin", claims={"roles": ["admin"]})
    user = Principal(user_id="acct_user", claims={"roles": ["reviewer"]})
    signin_store.audit(admin, "account.disable", "acct_user", {"username": "user"})
    signin_store.audit(user, "account.password_change", "acct_user", {})
    assert {r.action for r in signin_store.read_audit(admin)} >= {"account.disable", "account.password_change"}
    assert signin_store.read_audit(user) == []
    with (
        as_role(database, "authenticated", {"iss": APP_ISSUER, "chat_scope": "user", "sub": "acct_user"}) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute("insert into public.audit_log (actor_id, action) values ('acct_admin', 'account.forged')")
    admin_claims = {"iss": APP_ISSUER, "chat_scope": "user", "sub": "acct_admin", "roles": ["admin"]}
    for statement in ("update public.audit_log set action = 'x'", "delete from public.audit_log"):
        with (
            as_role(database, "authenticated", admin_claims) as conn,
            pytest.raises(psycopg.errors.InsufficientPrivilege),
        ):
            conn.execute(statement)
    # Not even the table's owner (the superuser that ran the migration) can edit or empty it.
    for statement in ("update public.audit_log set action = 'x'", "delete from public.audit_log",
                      "truncate public.audit_log"):  # fmt: skip
        with psycopg.connect(database.admin_url) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_a_login_role_without_chat_signin_is_named_with_the_grant_to_run(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url, autocommit=True) as conn:
        conn.execute("drop role if exists chat_no_signin")
        conn.execute("create role chat_no_signin login")
    try:
        url = database.app_url.replace("chat_app:@", "chat_no_signin:@", 1)
        lacking = PostgresSigninStore(url, pool_max=1)
        try:
            problem = lacking.access_problem()
        finally:
            lacking.close()
        assert problem is not None and "grant chat_signin to chat_no_signin;" in problem
        granted = PostgresSigninStore(database.app_url, pool_max=1)
        try:
            assert granted.access_problem() is None
        finally:
            granted.close()
    finally:
        with psycopg.connect(database.admin_url, autocommit=True) as conn:
            conn.execute("drop role if exists chat_no_signin")
