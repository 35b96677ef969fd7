"""CHAT_AUTH=local on the Supabase backend: services/sessions.py over services/store/supabase_signin.py,
through supabase-py and the local PostgREST stand-in on the real embedded database (issue 16). The
sign-in rules themselves are tests/test_sessions.py's; these check that the same flows work over the Data
API with the narrow sign-in token, and that this token reads nothing else."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from services.accounts import AccountStore, LocalIssuer, load_or_create_signing_key
from services.auth import Principal
from services.sessions import (
    ACCOUNT_LOCK_AFTER,
    LOCK_S,
    Clock,
    SessionPolicy,
    SessionService,
    SignInRefused,
    account_delay,
)
from services.store.embedded import EmbeddedDatabase
from services.store.supabase_signin import SupabaseSigninStore
from services.store.types import NotFound
from tests.supabase_support import LocalSupabase, local_supabase

PASSWORD = "correct horse battery"
SETUP = "setup-code-for-tests"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class MovableClock(Clock):
    def __init__(self) -> None:
        start = time.time()
        super().__init__(wall=lambda: start)
        self.moved = 0.0

    def offset(self) -> float:
        return self.moved


@pytest.fixture(scope="module")
def local(database: EmbeddedDatabase) -> Iterator[LocalSupabase]:
    world = local_supabase(database)
    yield world
    world.close()


@pytest.fixture(autouse=True)
def fresh_tables(database: EmbeddedDatabase) -> None:
    with psycopg.connect(database.admin_url) as conn:
        conn.execute("truncate public.sessions, public.signin_attempts")


@pytest.fixture
def clock() -> MovableClock:
    return MovableClock()


@pytest.fixture
def service(tmp_path: Path, local: LocalSupabase, clock: MovableClock) -> SessionService:
    issuer = LocalIssuer(load_or_create_signing_key(tmp_path / "k.pem"), ttl_s=60, clock=clock.now)
    return SessionService(
        SupabaseSigninStore(local.store),
        AccountStore(tmp_path / "users.yaml"),
        issuer,
        clock=clock,
        pepper="p" * 40,
        policy=SessionPolicy(lifetime_s=14 * 86_400, idle_s=8 * 3600),
        setup_code_path=tmp_path / "keys" / "setup-code",
        setup_code=SETUP,
    )


def make_admin(service: SessionService) -> str:
    return service.sign_up(
        username="root", name="", password=PASSWORD, repeat=PASSWORD, setup_code=SETUP, allowed=False,
        address="192.0.2.4",
    )  # fmt: skip


def test_sign_up_sign_in_resume_and_sign_out_go_through_the_signin_functions(
    service: SessionService, local: LocalSupabase
) -> None:
    before = len(local.server.requests)
    secret = make_admin(service)
    resumed = service.resume(secret)
    assert resumed is not None and set(resumed.principal.roles) == {"admin", "reviewer"}
    called = {r.path for r in local.server.requests[before:]}
    assert "/rest/v1/rpc/signin_open_session" in called and "/rest/v1/rpc/signin_find_session" in called
    service.sign_out(secret)
    assert service.resume(secret) is None


def test_lockout_counts_over_the_data_api(service: SessionService, clock: MovableClock) -> None:
    make_admin(service)
    service.accounts.create("ann", PASSWORD)
    for n in range(1, ACCOUNT_LOCK_AFTER + 1):
        with pytest.raises(SignInRefused):
            service.sign_in("ann", "wrong password here", address=f"203.0.113.{n}")
        if n < ACCOUNT_LOCK_AFTER:
            clock.moved += account_delay(n)
    with pytest.raises(SignInRefused) as caught:
        service.sign_in("ann", PASSWORD, address="203.0.113.99")
    assert caught.value.code == "locked" and caught.value.retry_after_s == LOCK_S


def test_users_list_and_revoke_only_their_own_sessions(service: SessionService, clock: MovableClock) -> None:
    make_admin(service)
    service.accounts.create("ann", PASSWORD)
    service.accounts.create("bob", PASSWORD)
    ann = service.resume(service.sign_in("ann", PASSWORD, address="198.51.100.6"))
    bob_secret = service.sign_in("bob", PASSWORD, address="198.51.100.6")
    assert ann is not None
    store = service.store
    assert {s.user_id for s in store.list_sessions(ann.principal, now=clock.now())} == {ann.principal.user_id}
    assert store.revoke_own_sessions(ann.principal, now=clock.now(), keep=None) == 1
    assert service.resume(bob_secret) is not None


def test_the_audit_log_over_the_data_api_is_for_administrators(local: LocalSupabase) -> None:
    store = SupabaseSigninStore(local.store)
    admin = Principal(user_id="acct_admin", claims={"roles": ["admin"]})
    user = Principal(user_id="acct_user")
    store.audit(admin, "account.disable", "acct_user", {"at": time.time()})
    store.audit(None, "account.first_admin", "acct_admin", {"username": "root"})
    actions = {r.action for r in store.read_audit(admin)}
    assert {"account.disable", "account.first_admin"} <= actions
    assert store.read_audit(user) == []


def test_the_signin_token_reads_no_table_and_a_user_token_calls_no_signin_function(local: LocalSupabase) -> None:
    signin = local.minter.for_signin()
    client = local.store.client(signin)
    assert client.table("messages").select("id").execute().data == []  # no policy admits it
    user_store = SupabaseSigninStore(local.store)
    with pytest.raises(NotFound):  # 403 42501 from the function's scope check
        local.store._as(Principal("user_x"), lambda c: c.rpc("signin_clear_attempts", {"p_key": "k"}))
    assert user_store.access_problem() is None
