"""The Supabase backend's HTTP side: the exact requests supabase-py sends for the store, the tokens they
carry, and how failures come back (issue 16). The behaviour every backend shares is in
tests/test_store_contract.py (which runs this backend too); these are the Data API specifics, against the
local PostgREST stand-in (devtools/postgrest_server.py) on the real embedded database."""

from __future__ import annotations

import json
import socket
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
from postgrest.exceptions import APIError

from devtools.postgrest_server import Fault, PostgrestServer, Recorded
from services.app_tokens import APP_ISSUER
from services.auth import Principal
from services.store import embedded
from services.store.supabase import TOO_SLOW, UNREACHABLE, SupabaseStore, map_api_error
from services.store.types import InvalidInput, NewAttachment, NotFound, StoreUnavailable
from services.token_minter import AppSigner, TokenMinter
from tests.supabase_support import ANON_KEY, LocalSupabase, local_supabase, shared_signer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def local(database: embedded.EmbeddedDatabase) -> Iterator[LocalSupabase]:
    world = local_supabase(database)
    yield world
    world.close()


def user(label: str = "u", **claims: Any) -> Principal:
    return Principal(user_id=f"user_{label}_{uuid.uuid4().hex[:8]}", claims=claims)


def claims_of(recorded: Recorded, signer: AppSigner) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bearer's header and verified claims."""
    scheme, _, token = recorded.headers["authorization"].partition(" ")
    assert scheme == "Bearer"
    key = jwt.PyJWK(signer.jwk()).key
    claims = jwt.decode(token, key, algorithms=["RS256"], options={"verify_aud": False})
    return jwt.get_unverified_header(token), claims


def last(server: PostgrestServer, n: int = 1) -> list[Recorded]:
    return server.requests[-n:]


# --- the exact requests ----------------------------------------------------------------------------------


def test_creating_a_conversation_is_one_insert_with_the_key_and_an_app_token(local: LocalSupabase) -> None:
    alice = user("alice")
    before = len(local.server.requests)
    made = local.store.create_conversation(alice, "  Plans  ", instructions="Be brief.")
    assert len(local.server.requests) == before + 1
    (sent,) = last(local.server)
    assert (sent.method, sent.path) == ("POST", "/rest/v1/conversations")
    assert dict(sent.params) == {"select": "id,user_id,title,created_at,updated_at,current_leaf_id,instructions"}
    assert sent.headers["apikey"] == ANON_KEY
    assert sent.headers["prefer"] == "return=representation"
    assert sent.headers["accept-profile"] == sent.headers["content-profile"] == "public"
    assert sent.body == {"user_id": alice.user_id, "title": "Plans", "instructions": "Be brief."}
    assert sent.status == 201
    header, claims = claims_of(sent, local.signer)
    assert header["alg"] == "RS256" and header["kid"] == local.signer.kid
    assert claims["iss"] == APP_ISSUER and claims["sub"] == alice.user_id
    assert claims["role"] == "authenticated" and claims["chat_scope"] == "user" and claims["roles"] == []
    assert made.title == "Plans" and made.user_id == alice.user_id


def test_reading_one_conversation_asks_for_an_object_and_a_missing_one_is_pgrst116(local: LocalSupabase) -> None:
    alice = user("alice")
    conv = local.store.create_conversation(alice, "mine")
    assert local.store.get_conversation(alice, str(conv.id).upper()) == conv
    (sent,) = last(local.server)
    assert (sent.method, sent.path) == ("GET", "/rest/v1/conversations")
    assert ("id", f"eq.{conv.id}") in sent.params
    assert sent.headers["accept"] == "application/vnd.pgrst.object+json"
    with pytest.raises(NotFound, match="That conversation does not exist."):
        local.store.get_conversation(user("bob"), conv.id)  # RLS hides it: zero rows
    (refused,) = last(local.server)
    assert refused.status == 406 and refused.answer["code"] == "PGRST116"


def test_a_message_is_added_by_one_rpc_with_named_arguments(local: LocalSupabase) -> None:
    alice = user("alice")
    conv = local.store.create_conversation(alice, "rpc")
    added = local.store.add_message(alice, conv.id, "user", "hello", "demo")
    (sent,) = last(local.server)
    assert (sent.method, sent.path, sent.query) == ("POST", "/rest/v1/rpc/add_message", "")
    assert sent.body == {
        "p_conversation": str(conv.id),
        "p_role": "user",
        "p_content": "hello",
        "p_model": "demo",
        "p_status": "complete",
        "p_input_tokens": None,
        "p_output_tokens": None,
        "p_latency_ms": None,
        "p_parent": None,
        "p_at_leaf": True,
    }
    assert added.content == "hello" and local.store.get_conversation(alice, conv.id).current_leaf_id == added.id


FILES = [NewAttachment(f"{n}.txt", "text/plain", n.encode() * 10, text=n * 10) for n in ("one", "two", "three")]
ADD_FILE = "/rest/v1/rpc/add_attachment"


def test_an_upload_that_fails_at_its_second_file_leaves_the_message_without_files(local: LocalSupabase) -> None:
    """The Data API has no transaction across requests: the store deletes the files it already stored."""
    alice = user("alice")
    conv = local.store.create_conversation(alice, "files")
    message = local.store.add_message(alice, conv.id, "user", "see files", "demo")
    local.server.fail_next(
        Fault(503, {"code": "PGRST002", "message": "Could not query the database"}, path=ADD_FILE, skip=1)
    )
    with pytest.raises(StoreUnavailable) as caught:
        local.store.add_attachments(alice, message.id, FILES)
    assert caught.value.message == UNREACHABLE
    first_add, failed_add, cleanup = last(local.server, 3)
    assert (first_add.path, first_add.status) == (ADD_FILE, 200)
    assert (failed_add.path, failed_add.status, failed_add.body["p_name"]) == (ADD_FILE, 503, "two.txt")
    assert (cleanup.method, cleanup.path, cleanup.status) == ("DELETE", "/rest/v1/attachments", 200)
    stored_id = first_add.answer[0]["id"]
    assert cleanup.params == [("id", f"in.({stored_id})")]  # that one file, nothing else
    assert [row["id"] for row in cleanup.answer] == [stored_id]  # and row-level security let it go
    assert local.store.message_attachments(alice, [message.id]) == {}
    # A later upload to the same message stores all of its files.
    assert [a.name for a in local.store.add_attachments(alice, message.id, FILES)] == [
        "one.txt",
        "two.txt",
        "three.txt",
    ]


def test_when_the_clean_up_fails_too_the_upload_error_is_raised_and_the_leftover_logged(
    local: LocalSupabase, caplog: pytest.LogCaptureFixture
) -> None:
    alice = user("alice")
    conv = local.store.create_conversation(alice, "files")
    message = local.store.add_message(alice, conv.id, "user", "see files", "demo")
    local.server.fail_next(
        Fault(504, "<html>gateway timeout</html>", content_type="text/html", path=ADD_FILE, skip=2),
        Fault(503, "<html>down</html>", content_type="text/html", path="/rest/v1/attachments"),
    )
    with caplog.at_level("WARNING", logger="services.store.supabase"), pytest.raises(StoreUnavailable):
        local.store.add_attachments(alice, message.id, FILES)
    assert [r.getMessage() for r in caplog.records] == ["files of a failed upload could not be removed"]
    assert caplog.records[0].count == 2  # type: ignore[attr-defined]
    # What could not be removed stays visible to its owner (the message shows two of its three files).
    assert [a.name for a in local.store.message_attachments(alice, [message.id])[message.id]] == ["one.txt", "two.txt"]


def test_a_checkpoint_patches_only_the_known_usage(local: LocalSupabase) -> None:
    alice = user("alice")
    conv = local.store.create_conversation(alice, "stream")
    reply = local.store.add_message(alice, conv.id, "assistant", "", "demo", "streaming", input_tokens=7)
    local.store.update_message(alice, reply.id, content="partial", status="streaming")
    (sent,) = last(local.server)
    assert (sent.method, sent.path) == ("PATCH", "/rest/v1/messages")
    assert ("id", f"eq.{reply.id}") in sent.params
    assert set(sent.body) == {"content", "status", "heartbeat_at"}  # no nulls over the stored usage
    assert local.store.get_message(alice, reply.id).input_tokens == 7


def test_a_policy_refusal_is_a_403_42501_and_not_found_for_the_user(local: LocalSupabase) -> None:
    alice, mallory = user("alice"), user("mallory")
    conv = local.store.create_conversation(alice, "private")
    with pytest.raises(NotFound, match="That conversation does not exist."):
        local.store.add_message(mallory, conv.id, "user", "sneaking in", "demo")
    (refused,) = last(local.server)
    assert refused.status == 403 and refused.answer["code"] == "42501"
    assert local.store.recent_messages(alice, conv.id) == []


# --- tokens: minted here, never Clerk's, reused, minted again when Supabase says expired ---------------------


def test_a_clerk_principal_is_sent_as_an_app_token_with_only_sub_and_app_roles(local: LocalSupabase) -> None:
    clerk_claims = {
        "iss": "https://clerk.example.test",
        "azp": "https://app.example.test",
        "sid": "sess_123",
        "email": "alice@example.test",
        "metadata": {"roles": ["reviewer", "owner"]},
    }
    alice = user("alice", **clerk_claims)
    local.store.list_api_keys(alice)
    _, claims = claims_of(last(local.server)[0], local.signer)
    assert claims["iss"] == APP_ISSUER and claims["sub"] == alice.user_id
    assert claims["roles"] == ["reviewer"]
    assert not {"azp", "sid", "email", "metadata"} & set(claims)


def test_one_token_per_principal_is_reused_until_shortly_before_it_expires(database: embedded.EmbeddedDatabase) -> None:
    clock = Clock(1_900_000_000.0)
    minter = TokenMinter(shared_signer(), clock=clock)
    world = local_supabase(database, minter=minter)
    world.server.clock = clock
    try:
        alice, bob = user("alice"), user("bob")
        world.store.list_api_keys(alice)
        world.store.list_api_keys(alice)
        world.store.list_api_keys(bob)
        first, second, bobs = (r.headers["authorization"] for r in world.server.requests)
        assert first == second != bobs and minter.minted == 2
        clock.now += 300 - minter.refresh_before_s - 1  # still comfortably valid: reused
        world.store.list_api_keys(alice)
        assert world.server.requests[-1].headers["authorization"] == first and minter.minted == 2
        clock.now += 2  # inside the refresh margin: a new one
        world.store.list_api_keys(alice)
        assert world.server.requests[-1].headers["authorization"] != first and minter.minted == 3
    finally:
        world.close()


def test_a_token_supabase_calls_expired_is_minted_again_and_the_request_repeated(
    database: embedded.EmbeddedDatabase,
) -> None:
    app_clock, server_clock = Clock(1_900_000_000.0), Clock(1_900_000_000.0)
    minter = TokenMinter(shared_signer(), clock=app_clock)
    world = local_supabase(database, minter=minter)
    world.server.clock = server_clock
    try:
        alice = user("alice")
        conv = world.store.create_conversation(alice, "before")  # token minted at t, expires t + 300
        app_clock.now += 200  # the app still reuses it ...
        server_clock.now += 301  # ... but Supabase's clock is past its expiry
        page = world.store.list_conversations(alice)
        assert [c.id for c in page.items] == [conv.id]  # the page, never an empty one
        expired, retried = world.server.requests[-2:]
        assert expired.status == 401 and expired.answer["code"] == "PGRST303"
        assert retried.status == 200 and retried.path == expired.path and retried.body == expired.body
        assert retried.headers["authorization"] != expired.headers["authorization"]
        assert minter.minted == 2
    finally:
        world.close()


def test_tokens_that_are_always_expired_fail_once_retried_with_a_clock_message(
    database: embedded.EmbeddedDatabase,
) -> None:
    world = local_supabase(database)
    world.server.clock = lambda: 4_000_000_000.0  # Supabase's clock decades ahead
    try:
        before = len(world.server.requests)
        with pytest.raises(StoreUnavailable, match="clock"):
            world.store.list_api_keys(user("alice"))
        assert len(world.server.requests) == before + 2
    finally:
        world.close()


def test_a_signin_lookup_carries_the_narrow_signin_token(local: LocalSupabase) -> None:
    assert local.store.find_api_key("0" * 64) is None
    (sent,) = last(local.server)
    assert (sent.path, sent.body) == ("/rest/v1/rpc/api_key_owner", {"key_hash": "0" * 64})
    _, claims = claims_of(sent, local.signer)
    assert claims["chat_scope"] == "signin" and "sub" not in claims and claims["iss"] == APP_ISSUER


# --- failing fast -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        Fault(503, {"code": "PGRST002", "details": None, "hint": None, "message": "Could not query the database"}),
        Fault(503, "<html>upstream unavailable</html>", content_type="text/html"),
        Fault(520, "<html>origin error</html>", content_type="text/html"),
        Fault(502, "<html>bad gateway</html>", content_type="text/html"),
    ],
    ids=["pgrst002", "html-503", "html-520", "html-502"],
)
def test_an_outage_answer_is_store_unavailable_after_one_request(local: LocalSupabase, fault: Fault) -> None:
    """postgrest-py would retry a GET answered 503/520 three times, sleeping 1, 2 and 4 s; the store turns that
    off, so the outage is reported at once."""
    local.server.fail_next(fault)
    before = len(local.server.requests)
    with pytest.raises(StoreUnavailable) as caught:
        local.store.list_api_keys(user("alice"))
    assert caught.value.message == UNREACHABLE
    assert len(local.server.requests) == before + 1


def test_a_server_that_does_not_answer_is_a_timeout_not_a_hang(database: embedded.EmbeddedDatabase) -> None:
    world = local_supabase(database, timeout_s=1.0)
    try:
        world.server.fail_next(Fault(hang=True))
        with pytest.raises(StoreUnavailable) as caught:
            world.store.get_conversation(user("alice"), uuid.uuid4())
        assert caught.value.message == TOO_SLOW
        assert len(world.server.requests) == 1
    finally:
        world.close()


def test_a_down_server_is_store_unavailable_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # Nothing listens on the port now: the connection is refused.
    store = SupabaseStore(f"http://127.0.0.1:{port}", ANON_KEY, TokenMinter(shared_signer()), timeout_s=2.0)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            store.list_conversations(user("alice"))
        assert caught.value.message == UNREACHABLE
        with pytest.raises(StoreUnavailable):
            store.find_api_key("0" * 64)
    finally:
        store.close()


# --- configuration mistakes say what to fix ----------------------------------------------------------------


def test_a_wrong_project_key_names_the_setting(local: LocalSupabase) -> None:
    store = SupabaseStore(local.server.url, "sb_publishable_wrong", local.minter)
    try:
        with pytest.raises(StoreUnavailable, match="SUPABASE_ANON_KEY"):
            store.list_api_keys(user("alice"))
        assert last(local.server)[0].status == 401
    finally:
        store.close()


def test_a_key_supabase_does_not_trust_points_at_third_party_auth(local: LocalSupabase) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    stranger = AppSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    store = SupabaseStore(local.server.url, ANON_KEY, TokenMinter(stranger))
    try:
        with pytest.raises(StoreUnavailable, match="third-party auth"):
            store.list_api_keys(user("alice"))
        refused = last(local.server)[0]
        assert refused.status == 401 and refused.answer["code"] == "PGRST301"
    finally:
        store.close()


def test_readiness_is_one_ping_and_says_when_the_key_is_not_trusted(local: LocalSupabase) -> None:
    from cryptography.hazmat.primitives.asymmetric import rsa

    from services.readiness import check_ready

    before = len(local.server.requests)
    assert check_ready(local.store).ready
    (ping,) = local.server.requests[before:]
    assert (ping.path, ping.status) == ("/rest/v1/rpc/api_key_owner", 200)
    stranger = SupabaseStore(
        local.server.url,
        ANON_KEY,
        TokenMinter(AppSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))),
    )
    try:
        state = check_ready(stranger)
        assert not state.ready and "third-party auth" in state.database
    finally:
        stranger.close()


@pytest.mark.parametrize(
    ("code", "kind", "message"),
    [
        ("42501", NotFound, "That conversation does not exist."),
        ("PGRST116", NotFound, "That conversation does not exist."),
        ("23503", NotFound, "That conversation does not exist."),
        ("23505", InvalidInput, "That already exists."),
        ("23514", InvalidInput, "The message could not be stored: a value is out of range."),
        ("22P02", InvalidInput, "The message could not be stored: it contains invalid data."),
        ("57014", StoreUnavailable, TOO_SLOW),
        ("PGRST003", StoreUnavailable, TOO_SLOW),
        ("08006", StoreUnavailable, UNREACHABLE),
        ("500", StoreUnavailable, UNREACHABLE),
        ("PGRST301", StoreUnavailable, None),
        ("XX000", StoreUnavailable, "The database could not do that (error XX000). Please try again."),
    ],
)
def test_data_api_errors_map_to_the_stores_errors(code: str, kind: type[Exception], message: str | None) -> None:
    error = map_api_error(APIError({"code": code, "message": "m", "details": None, "hint": None}))
    assert type(error) is kind
    if message is not None:
        assert str(error) == message


# --- the stand-in is strict, so a passing test means the real API would take the request ------------------


def test_the_stand_in_refuses_what_it_does_not_implement_and_requests_without_the_key(local: LocalSupabase) -> None:
    token = local.minter.for_user(user("alice"))
    headers = {"apikey": ANON_KEY, "Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=local.server.url) as http:
        embedded_select = http.get("/rest/v1/conversations", params={"select": "id,messages(id)"}, headers=headers)
        assert embedded_select.status_code == 400 and "unsupported" in embedded_select.json()["message"]
        either = http.get("/rest/v1/conversations", params={"or": "(title.eq.a,title.eq.b)"}, headers=headers)
        assert either.status_code == 400 and either.json()["code"] == "PGRST100"
        keyless = http.get("/rest/v1/conversations", headers={"Authorization": f"Bearer {token}"})
        assert keyless.status_code == 401 and keyless.json()["message"] == "No API key found in request"
        unknown = http.post("/rest/v1/rpc/no_such_function", headers=headers, content=json.dumps({}))
        assert unknown.status_code == 404 and unknown.json()["code"] == "PGRST202"
        anon = http.get("/rest/v1/conversations", headers={"apikey": ANON_KEY})
        # No bearer: the request runs as `anon`, which has no grant on any table (PostgREST: 42501 -> 401).
        assert anon.status_code == 401 and anon.json()["code"] == "42501"


# --- the export is byte for byte the Postgres backend's COPY output ----------------------------------------


def test_the_csv_export_has_the_same_bytes_as_the_postgres_backends_copy(local: LocalSupabase, store: Any) -> None:
    """Same user, same rows, read by both backends: the Data API has no COPY, so the Supabase backend writes
    the CSV itself and must match COPY's quoting, NULLs, instants and formula guard exactly."""
    who = user("exporter")
    conv = local.store.create_conversation(who, 'Budget, "Q3" =SUM(A1)')
    texts = [
        "plain",
        "comma, inside",
        'say "hi"',
        "two\nlines",
        "carriage\rreturn",
        "=1+1",
        "  -5",
        "@handle",
        "\ttabbed",
        "é ünïcode ✓",
        "trailing space ",
    ]
    for text in texts:
        local.store.add_message(who, conv.id, "user", text, "demo")
    local.store.add_message(who, conv.id, "assistant", "", "+model", "streaming", input_tokens=3)
    local.store.add_message(who, conv.id, "assistant", "done", "demo", output_tokens=0, latency_ms=12)
    ours = b"".join(local.store.export_csv(who))
    theirs = b"".join(store.export_csv(who))
    assert ours == theirs
    assert ours.count(b'""') >= 1  # the empty reply is quoted, as COPY does, and not a NULL
