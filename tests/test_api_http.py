"""The HTTP API against a real server (`streamlit run app.py`, tests/e2e/server.py) over HTTP with httpx: local
accounts, tokens minted by the app's own issuer key, the offline model and the OpenAI wire server, the module's
own fresh database (checked directly where the test is about what was stored)."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import jwt
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from api import ROUTES
from api.openapi import PATHS, UNDOCUMENTED_PREFIXES
from devtools.wire_servers import Script, WireServer
from services.accounts import Account, AccountStore, LocalIssuer, load_or_create_signing_key
from services.api_keys import ApiKeyService
from services.auth import Principal
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from tests.e2e.server import AppServer, app_server, wait_until

ROOT = Path(__file__).resolve().parents[1]
NODE_DIR = ROOT / "tests" / "node"
RATE_LIMIT = 6
MAX_BODY = 4096
USERS = ("ann", "bob", "cat", "dan", "eve", "fay", "gus", "hal", "ivy", "joe")
WIRE_MODEL = "compat/wire-model"
DEMO = "demo/echo-1"


@dataclass
class World:
    server: AppServer
    wire: WireServer
    database: EmbeddedDatabase
    tokens: dict[str, str]
    accounts: dict[str, Account]
    issuer: LocalIssuer
    keys: ApiKeyService
    revoked_key: str

    @property
    def url(self) -> str:
        return self.server.url

    def auth(self, user: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[user]}"}


@pytest.fixture(scope="module")
def world(database: EmbeddedDatabase) -> Iterator[World]:
    made: dict[str, Any] = {}

    def setup(data_dir: Path) -> None:
        accounts = AccountStore(data_dir / "users.yaml")
        made["accounts"] = {name: accounts.create(name, None, name=name.title()) for name in USERS}
        # The server loads this key as its issuer's: tokens minted here are the app's own tokens.
        key = load_or_create_signing_key(data_dir / "keys" / "local-signing-key.pem")
        made["issuer"] = LocalIssuer(key, ttl_s=3600)

    with WireServer("openai") as wire:
        env = {
            "CHAT_AUTH": "local",
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "CHAT_RATE_LIMIT_PER_MINUTE": str(RATE_LIMIT),
            "CHAT_API_MAX_BODY_BYTES": str(MAX_BODY),
            "CHAT_DEMO_CHARS_PER_S": "100000",
            "OPENAI_BASE_URL": wire.base_url,
            "OPENAI_COMPAT_MODELS": "wire-model",
            "OPENAI_API_KEY": "sk-wire",
        }
        with app_server(env, setup=setup) as server:
            issuer: LocalIssuer = made["issuer"]
            accounts: dict[str, Account] = made["accounts"]
            tokens = {name: issuer.issue(account) for name, account in accounts.items()}
            # Keys made the way the Account page makes them, in the server's own database.
            store = PostgresStore(database.app_url, pool_max=1)
            keys = ApiKeyService(store, max_live=5, principal_ttl_s=300)
            hal = Principal(user_id=accounts["hal"].user_id)
            revoked, revoked_key = keys.create(hal, "revoked")
            keys.revoke(hal, revoked.id)
            try:
                yield World(server, wire, database, tokens, accounts, issuer, keys, revoked_key)
            finally:
                store.close()


@pytest.fixture
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.url, timeout=30) as c:
        yield c


def events(response: httpx.Response) -> list[Any]:
    """The `data:` payloads of an SSE body, JSON-decoded ([DONE] kept as the string)."""
    out: list[Any] = []
    for block in response.text.split("\n\n"):
        for line in block.splitlines():
            if line.startswith("data: "):
                data = line[len("data: ") :]
                out.append(data if data == "[DONE]" else json.loads(data))
    return out


def streamed_text(evs: list[Any]) -> str:
    return "".join(e["delta"] for e in evs if isinstance(e, dict) and e["type"] == "text-delta")


def stored(world: World, message_id: str) -> tuple[str, str, str, int | None, int | None]:
    with psycopg.connect(world.database.admin_url) as conn:
        row = conn.execute(
            "select status, content, user_id, input_tokens, output_tokens from public.messages where id = %s",
            [message_id],
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3], row[4]


# --- identity -------------------------------------------------------------------------------------------


def _other_key_token(world: World) -> str:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = int(time.time())
    claims = {"iss": world.issuer.issuer, "sub": world.accounts["ann"].user_id, "iat": now, "exp": now + 60}
    return jwt.encode(claims, other, algorithm="RS256", headers={"kid": world.issuer.kid})


@pytest.mark.parametrize(
    ("make_header", "reason"),
    [
        (lambda w: None, "missing_credential"),
        (lambda w: "Basic YW5uOnB3", "malformed_header"),
        (lambda w: "Bearer", "malformed_header"),
        (lambda w: "Bearer not.a.jwt", "malformed"),
        (lambda w: f"Bearer {_other_key_token(w)}", "bad_signature"),
        (lambda w: f"Bearer {w.issuer.issue(w.accounts['ann'], now=time.time() - 7200)}", "expired"),
        (lambda w: "Bearer sk-chat-0123456789abcdef", "api_key_malformed"),
        (lambda w: "Bearer sk-chat-" + "A" * 43, "api_key_unknown"),
        (lambda w: f"Bearer {w.revoked_key}", "api_key_revoked"),
    ],
    ids=["missing", "basic", "empty-bearer", "garbage", "bad-signature", "expired", "key-malformed", "key-unknown",
         "key-revoked"],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/api/conversations"), ("POST", "/api/chat")])
def test_every_kind_of_bad_credential_is_a_401_with_its_reason(
    world: World, client: httpx.Client, make_header: Any, reason: str, method: str, path: str
) -> None:
    header = make_header(world)
    headers = {"Authorization": header} if header else {}
    response = client.request(method, path, headers=headers, json={"content": "hi"})
    assert response.status_code == 401, response.text
    error = response.json()["error"]
    assert error["code"] == "unauthorized" and error["reason"] == reason and error["message"]
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_a_personal_api_key_chats_and_reads_its_owners_history_only(world: World, client: httpx.Client) -> None:
    ivy = Principal(user_id=world.accounts["ivy"].user_id)
    _, secret = world.keys.create(ivy, "script")
    as_key = {"Authorization": f"Bearer {secret}"}
    response = client.post("/api/chat", headers=as_key, json={"content": "Sent with a key", "model": DEMO})
    assert response.status_code == 200, response.text
    meta = events(response)[-2]["messageMetadata"]
    assert meta["status"] == "complete"
    assert stored(world, meta["messageId"])[2] == world.accounts["ivy"].user_id
    history = client.get("/api/chat/history", headers=as_key, params={"limit": 10})
    assert history.status_code == 200, history.text
    items = history.json()["items"]
    assert [i["content"] for i in items if i["role"] == "user"] == ["Sent with a key"]
    # Revoked: refused at the next request, with the one message every bad key gets.
    world.keys.revoke(ivy, world.keys.list(ivy)[0].id)
    refused = client.get("/api/chat/history", headers=as_key)
    assert refused.status_code == 401 and refused.json()["error"]["reason"] == "api_key_revoked"


# --- chat -----------------------------------------------------------------------------------------------


def test_a_seed_body_streams_the_ai_sdk_protocol_and_stores_what_was_sent(world: World, client: httpx.Client) -> None:
    response = client.post(
        "/api/chat", headers=world.auth("ann"), json={"content": "Tell me about *stars*", "model": DEMO}
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["x-vercel-ai-ui-message-stream"] == "v1"
    assert response.headers["cache-control"] == "no-cache" and response.headers["x-accel-buffering"] == "no"
    evs = events(response)
    types = [e if isinstance(e, str) else e["type"] for e in evs]
    assert types[0] == "start" and types[1] == "text-start" and types[-3:] == ["text-end", "finish", "[DONE]"]
    assert set(types[2:-3]) == {"text-delta"}
    start, finish = evs[0], evs[-2]
    meta = finish["messageMetadata"]
    assert finish["finishReason"] == "stop" and meta["status"] == "complete" and meta["model"] == DEMO
    assert meta["conversationId"] == start["messageMetadata"]["conversationId"]
    status, content, user_id, _, _ = stored(world, meta["messageId"])
    assert (status, content, user_id) == ("complete", streamed_text(evs), world.accounts["ann"].user_id)
    assert "stars" in content
    question = stored(world, start["messageMetadata"]["userMessageId"])
    assert question[:2] == ("complete", "Tell me about *stars*")


def test_the_wire_server_reply_and_its_usage_travel_in_the_stream(world: World, client: httpx.Client) -> None:
    world.wire.queue(Script(chunks=["Bonjour", ", ", "le monde"], usage=(21, 7)))
    response = client.post("/api/chat", headers=world.auth("bob"), json={"content": "Salut", "model": WIRE_MODEL})
    evs = events(response)
    assert streamed_text(evs) == "Bonjour, le monde"
    meta = evs[-2]["messageMetadata"]
    assert meta["usage"] == {"inputTokens": 21, "outputTokens": 7} and meta["model"] == WIRE_MODEL
    assert stored(world, meta["messageId"])[:2] == ("complete", "Bonjour, le monde")
    assert stored(world, meta["messageId"])[3:] == (21, 7)
    assert world.wire.requests[-1].body["messages"][-1] == {"role": "user", "content": "Salut"}


def test_a_provider_failure_is_an_error_event_and_a_stored_error(world: World, client: httpx.Client) -> None:
    world.wire.queue(Script(status=500))
    response = client.post("/api/chat", headers=world.auth("bob"), json={"content": "fail", "model": WIRE_MODEL})
    evs = events(response)
    types = [e if isinstance(e, str) else e["type"] for e in evs]
    assert types == ["start", "error", "finish", "[DONE]"]
    finish = evs[2]
    assert finish["finishReason"] == "error" and finish["messageMetadata"]["status"] == "error"
    assert evs[1]["errorText"] and "Traceback" not in response.text
    assert stored(world, finish["messageMetadata"]["messageId"])[0] == "error"


def test_an_ai_sdk_chat_id_maps_to_one_conversation_per_user(world: World, client: httpx.Client) -> None:
    def turn(user: str, text: str) -> dict[str, Any]:
        body = {
            "id": "chat-Xy12ab",
            "trigger": "submit-message",
            "messages": [
                {"id": "m0", "role": "user", "parts": [{"type": "text", "text": "earlier, ignored"}]},
                {"id": "m1", "role": "assistant", "parts": [{"type": "text", "text": "a client-side reply"}]},
                {"id": "m2", "role": "user", "parts": [{"type": "text", "text": text}]},
            ],
        }
        response = client.post("/api/chat", headers=world.auth(user), json=body)
        assert response.status_code == 200, response.text
        meta: dict[str, Any] = events(response)[-2]["messageMetadata"]
        return meta

    first, second = turn("cat", "first question"), turn("cat", "second question")
    theirs = turn("dan", "same chat id, another user")
    assert first["conversationId"] == second["conversationId"] != theirs["conversationId"]
    history = client.get(
        "/api/chat/history",
        params={"conversation_id": first["conversationId"], "role": "user"},
        headers=world.auth("cat"),
    ).json()
    assert [m["content"] for m in history["items"]] == ["second question", "first question"]


def test_the_ai_sdk_regenerate_trigger_answers_the_last_message_again(world: World, client: httpx.Client) -> None:
    question = {"id": "u1", "role": "user", "parts": [{"type": "text", "text": "answer me twice"}]}
    body: dict[str, Any] = {"id": "chat-regen", "messages": [question], "model": DEMO}
    first = events(client.post("/api/chat", headers=world.auth("dan"), json=body))[-2]["messageMetadata"]
    answer = {"id": "a1", "role": "assistant", "parts": [{"type": "text", "text": "whatever"}]}
    again = client.post(
        "/api/chat",
        headers=world.auth("dan"),
        json={**body, "messages": [question, answer], "trigger": "regenerate-message", "messageId": "a1"},
    )
    evs = events(again)
    second = evs[-2]["messageMetadata"]
    assert second["conversationId"] == first["conversationId"] and second["messageId"] != first["messageId"]
    assert evs[0]["messageMetadata"]["userMessageId"] is None and second["status"] == "complete"
    assert stored(world, second["messageId"])[1] == streamed_text(evs)
    history = client.get(
        "/api/chat/history", params={"conversation_id": first["conversationId"]}, headers=world.auth("dan")
    ).json()
    assert [m["role"] for m in history["items"]] == ["assistant", "assistant", "user"]


def test_disconnecting_mid_stream_stores_what_was_generated_as_interrupted(world: World) -> None:
    gate = threading.Event()
    world.wire.queue(Script(chunks=["Partial ", "answer", " never sent"], gate_before={2: gate}))
    received = ""
    with httpx.Client(base_url=world.url, timeout=30) as c:
        with c.stream("POST", "/api/chat", headers=world.auth("eve"), json={"content": "go", "model": WIRE_MODEL}) as r:
            assert r.status_code == 200
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    event = json.loads(line[len("data: ") :])
                    if event["type"] == "start":
                        conversation_id = event["messageMetadata"]["conversationId"]
                    received += event.get("delta", "")
                if received == "Partial answer":
                    break  # leaving the block closes the connection mid-stream

    def final_row() -> tuple[str, str] | None:
        with psycopg.connect(world.database.admin_url) as conn:
            row = conn.execute(
                "select status, content from public.messages where conversation_id = %s and role = 'assistant'"
                " and status <> 'streaming'",
                [conversation_id],
            ).fetchone()
        return (row[0], row[1]) if row else None

    try:
        row = wait_until(final_row, 30, "the reply to be finalised after the disconnect")
    finally:
        gate.set()
    assert row == ("interrupted", "Partial answer")


def test_the_rate_limit_is_a_429_with_retry_after(world: World, client: httpx.Client) -> None:
    answers = [
        client.post("/api/chat", headers=world.auth("fay"), json={"content": f"n{i}"}) for i in range(RATE_LIMIT)
    ]
    assert [a.status_code for a in answers] == [200] * RATE_LIMIT
    refused = client.post("/api/chat", headers=world.auth("fay"), json={"content": "one too many"})
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(refused.headers["retry-after"]) <= 60


# --- bodies ---------------------------------------------------------------------------------------------


def test_an_oversized_body_is_refused_with_413_whether_or_not_its_length_is_declared(
    world: World, client: httpx.Client
) -> None:
    big = json.dumps({"content": "x" * (MAX_BODY * 2)}).encode()
    declared = client.post("/api/chat", headers={**world.auth("gus"), "Content-Type": "application/json"}, content=big)
    assert declared.status_code == 413 and declared.json()["error"]["code"] == "body_too_large"

    def chunked() -> Iterator[bytes]:
        for i in range(0, len(big), 1000):
            yield big[i : i + 1000]

    undeclared = client.post(
        "/api/chat", headers={**world.auth("gus"), "Content-Type": "application/json"}, content=chunked()
    )
    assert undeclared.status_code == 413


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("application/json", b'{"content": "unterminated', 400, "invalid_json"),
        ("application/json", b'["a list"]', 400, "invalid_json"),
        ("application/json", b'{"content": 42}', 400, "invalid_input"),
        ("application/json", b'{"content": "   "}', 400, "invalid_input"),
        ("application/json", b'{"content": "hi", "model": "nope/nope"}', 400, "invalid_input"),
        ("text/plain", b'{"content": "hi"}', 415, "unsupported_media_type"),
        ("application/x-www-form-urlencoded", b"content=hi", 415, "unsupported_media_type"),
    ],
)
def test_bad_bodies_get_their_status_and_store_nothing(
    world: World, client: httpx.Client, content_type: str, body: bytes, status: int, code: str
) -> None:
    headers = {**world.auth("gus"), "Content-Type": content_type}
    response = client.post("/api/chat", headers=headers, content=body)
    assert response.status_code == status and response.json()["error"]["code"] == code
    listed = client.get("/api/conversations", headers=world.auth("gus")).json()
    assert listed["items"] == []


# --- history and conversations --------------------------------------------------------------------------


def test_history_pages_with_cursors_and_conversations_list_and_delete(world: World, client: httpx.Client) -> None:
    me = world.auth("hal")
    for i in range(3):
        assert client.post("/api/chat", headers=me, json={"content": f"question {i}"}).status_code == 200
    seen: list[str] = []
    params: dict[str, str] = {"limit": "4"}
    pages = 0
    while True:
        page = client.get("/api/chat/history", params=params, headers=me).json()
        seen += [m["id"] for m in page["items"]]
        pages += 1
        if page["next_cursor"] is None:
            break
        params = {"limit": "4", "before": page["next_cursor"]}
    assert pages == 2 and len(seen) == len(set(seen)) == 6

    conversations = client.get("/api/conversations", params={"limit": "2"}, headers=me).json()
    assert len(conversations["items"]) == 2 and conversations["next_cursor"]
    rest = client.get(
        "/api/conversations", params={"limit": "2", "before": conversations["next_cursor"]}, headers=me
    ).json()
    assert len(rest["items"]) == 1 and rest["next_cursor"] is None
    oldest = rest["items"][0]["id"]

    # Another user can neither write into, read from, nor delete this conversation.
    other = world.auth("gus")
    assert client.post("/api/chat", headers=other, json={"content": "x", "conversation_id": oldest}).status_code == 404
    assert client.delete(f"/api/conversations/{oldest}", headers=other).status_code == 404
    foreign = client.get("/api/chat/history", params={"conversation_id": oldest}, headers=other).json()
    assert foreign["items"] == []

    assert client.delete(f"/api/conversations/{oldest}", headers=me).status_code == 204
    assert client.delete(f"/api/conversations/{oldest}", headers=me).status_code == 404
    after = client.get("/api/conversations", params={"limit": "10"}, headers=me).json()
    assert oldest not in [c["id"] for c in after["items"]]


@pytest.mark.parametrize(
    "params",
    [
        {"limit": "0"},
        {"limit": "101"},
        {"limit": "ten"},
        {"before": "not a cursor!"},
        {"before": "abc.def"},
        {"role": "system"},
        {"status": "lost"},
        {"from": "2026-02-30"},
        {"conversation_id": "not-a-uuid"},
        {"scope": "all"},
        {"feedback": "sideways"},
    ],
)
def test_bad_history_parameters_are_a_400_that_names_them(
    world: World, client: httpx.Client, params: dict[str, str]
) -> None:
    response = client.get("/api/chat/history", params=params, headers=world.auth("hal"))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] in ("invalid_input", "invalid_cursor")


def test_history_filters_by_feedback_and_carries_it(world: World, client: httpx.Client) -> None:
    me = world.auth("joe")
    for text in ("first question", "second question"):
        assert client.post("/api/chat", headers=me, json={"content": text}).status_code == 200
    replies = client.get("/api/chat/history", params={"role": "assistant"}, headers=me).json()["items"]
    assert [r["feedback"] for r in replies] == [None, None]
    store = PostgresStore(world.database.app_url, pool_max=1)
    try:
        store.set_feedback(Principal(user_id=world.accounts["joe"].user_id), replies[0]["id"], "down", "Off topic.")
    finally:
        store.close()
    down = client.get("/api/chat/history", params={"feedback": "down"}, headers=me).json()["items"]
    assert [(r["id"], r["feedback"], r["feedback_comment"]) for r in down] == [(replies[0]["id"], "down", "Off topic.")]
    commented = client.get("/api/chat/history", params={"feedback": "comment"}, headers=me).json()["items"]
    assert [r["id"] for r in commented] == [replies[0]["id"]]
    unrated = client.get("/api/chat/history", params={"feedback": "none"}, headers=me).json()["items"]
    assert [r["id"] for r in unrated] == [replies[1]["id"]]
    assert client.get("/api/chat/history", params={"feedback": "up"}, headers=me).json()["items"] == []
    refused = client.get("/api/chat/history", params={"feedback": "meh"}, headers=me)
    assert refused.status_code == 400 and refused.json()["error"]["message"] == "Invalid value for: feedback."


def test_a_cursor_from_another_user_is_refused(world: World, client: httpx.Client) -> None:
    page = client.get("/api/chat/history", params={"limit": "1"}, headers=world.auth("ann")).json()
    assert page["next_cursor"]
    response = client.get("/api/chat/history", params={"before": page["next_cursor"]}, headers=world.auth("bob"))
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_cursor"


# --- ready, keys, spec ----------------------------------------------------------------------------------


def test_ready_and_the_jwks_verifies_the_apps_own_tokens(world: World, client: httpx.Client) -> None:
    ready = client.get("/api/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    keys = client.get("/.well-known/jwks.json").json()["keys"]
    assert [(k["kid"], k["alg"], k["use"], k["kty"]) for k in keys] == [(world.issuer.kid, "RS256", "sig", "RSA")]
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(world.tokens["ann"], public, algorithms=["RS256"], options={"verify_aud": False})
    assert claims["sub"] == world.accounts["ann"].user_id


def test_the_openapi_document_describes_exactly_the_json_routes(client: httpx.Client) -> None:
    spec = client.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    served: dict[str, set[str]] = {}
    for route in ROUTES:
        path = getattr(route, "path", "")
        if path.startswith(UNDOCUMENTED_PREFIXES) or not path.startswith(("/api/", "/v1/", "/.well-known/")):
            continue
        served.setdefault(path, set()).update(m.lower() for m in (getattr(route, "methods", None) or ()) if m != "HEAD")
    described = {path: set(ops) for path, ops in spec["paths"].items()}
    assert described == served and set(PATHS) == set(served)


def _conforms(spec: dict[str, Any], template: str, method: str, response: httpx.Response) -> None:
    """The response's status is one the spec lists for the operation, and a JSON body matches its schema."""
    operation = spec["paths"][template][method]
    declared = operation["responses"].get(str(response.status_code))
    assert declared is not None, f"{method.upper()} {template} answered {response.status_code}, not in the spec"
    media = declared.get("content", {}).get("application/json")
    if media is None:
        return
    schema = {**media["schema"], "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(response.json())


def test_responses_match_the_openapi_document(world: World, client: httpx.Client) -> None:
    spec = client.get("/api/openapi.json").json()
    jsonschema.Draft202012Validator.check_schema({**spec["components"]["schemas"]["Message"]})
    me, json_type = world.auth("ann"), {"Content-Type": "application/json"}
    assert client.post("/api/chat", headers=me, json={"content": "something to list", "model": DEMO}).is_success
    checks: list[tuple[str, str, httpx.Response]] = [
        ("/api/chat/history", "get", client.get("/api/chat/history", params={"limit": "3"}, headers=me)),
        ("/api/chat/history", "get", client.get("/api/chat/history", params={"role": "x"}, headers=me)),
        ("/api/chat/history", "get", client.get("/api/chat/history")),
        ("/api/conversations", "get", client.get("/api/conversations", headers=me)),
        ("/api/conversations", "get", client.get("/api/conversations", params={"before": "bad.cursor"}, headers=me)),
        (
            "/api/conversations/{conversation_id}",
            "delete",
            client.delete(f"/api/conversations/{uuid.uuid4()}", headers=me),
        ),
        ("/api/chat", "post", client.post("/api/chat", headers={**me, **json_type}, content=b"{")),
        ("/api/chat", "post", client.post("/api/chat", headers={**me, "Content-Type": "text/plain"}, content=b"x")),
        ("/api/chat", "post", client.post("/api/chat", headers={**me, **json_type}, content=b" " * (MAX_BODY + 1))),
        ("/api/chat", "post", client.post("/api/chat", json={"content": "x"})),
        ("/api/ready", "get", client.get("/api/ready")),
        ("/api/health", "get", client.get("/api/health")),
        ("/.well-known/jwks.json", "get", client.get("/.well-known/jwks.json")),
    ]
    for template, method, response in checks:
        _conforms(spec, template, method, response)
    assert {r.status_code for _, _, r in checks} >= {200, 400, 401, 404, 413, 415}


def test_unknown_api_paths_are_not_answered_by_the_api(client: httpx.Client) -> None:
    # Streamlit answers unknown paths with its index page; nothing of the API's must appear there.
    response = client.get("/api/nope")
    assert "application/json" not in response.headers.get("content-type", "")


# --- the AI SDK's own client ----------------------------------------------------------------------------


def test_the_ai_sdk_reads_the_stream_and_rebuilds_the_message(world: World) -> None:
    node = shutil.which("node")
    assert node is not None, "Node.js is a test prerequisite (README): install nodejs and npm"
    assert (NODE_DIR / "node_modules" / "ai").is_dir(), "run `npm ci --prefix tests/node` (README prerequisites)"
    world.wire.queue(Script(chunks=["Streamed ", "through ", "the SDK"], usage=(5, 3)))
    chat_id = f"sdk-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(
        [node, "read_chat.mjs", f"{world.url}/api/chat", world.tokens["ann"], chat_id, "hello sdk", WIRE_MODEL],
        cwd=NODE_DIR, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    message = json.loads(done.stdout)
    assert message["role"] == "assistant"
    assert [p for p in message["parts"] if p["type"] == "text"] == [
        {"type": "text", "text": "Streamed through the SDK", "state": "done"}
    ]
    metadata = message["metadata"]
    assert metadata["status"] == "complete" and metadata["usage"] == {"inputTokens": 5, "outputTokens": 3}
    assert stored(world, metadata["messageId"])[:2] == ("complete", "Streamed through the SDK")
