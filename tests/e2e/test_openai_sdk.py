"""The official `openai` Python SDK, pointed at the real app (`streamlit run`, tests/e2e/server.py), chats
through the OpenAI-compatible door, streamed and not: the turn lands in the caller's history, a session of
ten calls makes one conversation, and failures come back as the SDK's own exceptions.

Auth: a sign-in token the app's own local issuer signed (the key in the server's data directory), sent as the
bearer, as a script of a signed-in user would.
"""

from __future__ import annotations

import json
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam

from devtools.wire_servers import Script, WireServer
from services.accounts import Account, AccountStore
from services.api_keys import ApiKeyService
from services.auth import Principal
from services.config import settings_from
from services.identity import build_identity
from services.providers.demo import demo_reply
from services.store import Message
from services.store.embedded import EmbeddedDatabase
from services.store.postgres import PostgresStore
from tests.e2e.server import app_server, wait_until

pytestmark = pytest.mark.e2e

WIRE_MODEL = "compat/wire-model"
DEMO_MODEL = "demo/echo-1"


@dataclass
class Door:
    url: str
    wire: WireServer
    store: PostgresStore
    accounts: dict[str, Account]
    data_dir: Path

    def token(self, username: str) -> str:
        identity = build_identity(settings_from({"CHAT_DATA_DIR": str(self.data_dir), "CHAT_AUTH": "local"}))
        assert identity.issuer is not None
        return identity.issuer.issue(self.accounts[username])

    def client(self, username: str, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{self.url}/v1", api_key=self.token(username), max_retries=0, **kw)

    def principal(self, username: str) -> Principal:
        return Principal(user_id=self.accounts[username].user_id)


@pytest.fixture(scope="module")
def door(database: EmbeddedDatabase) -> Iterator[Door]:
    accounts: dict[str, Account] = {}
    seen: dict[str, Path] = {}

    def setup(data_dir: Path) -> None:
        users = AccountStore(data_dir / "users.yaml")
        for name in ("ann", "ben"):
            users.create(name, "a-long-password-123", name=name.title())
            account = users.get(name)
            assert account is not None
            accounts[name] = account
        seen["data_dir"] = data_dir

    with WireServer("openai") as wire:
        env = {
            "CHAT_AUTH": "local",
            "DATABASE_URL": database.app_url,
            "DATABASE_ADMIN_URL": database.admin_url,
            "OPENAI_BASE_URL": wire.base_url,
            "OPENAI_COMPAT_MODELS": "wire-model",
            "CHAT_DEMO_CHARS_PER_S": "100000",
            "CHAT_RATE_LIMIT_PER_MINUTE": "0",
        }
        with app_server(env, setup=setup) as server:
            store = PostgresStore(database.app_url, max_message_chars=32_000, pool_max=2)
            try:
                yield Door(server.url, wire, store, accounts, seen["data_dir"])
            finally:
                store.close()


def test_models_lists_the_catalogue(door: Door) -> None:
    ids = [m.id for m in door.client("ann").models.list()]
    assert ids == [WIRE_MODEL, DEMO_MODEL]


def test_a_personal_api_key_is_the_sdks_api_key(door: Door) -> None:
    # What a team does: create a key on the Account page, give it to a tool as its OpenAI key.
    keys = ApiKeyService(door.store, max_live=5, principal_ttl_s=300)
    _, secret = keys.create(door.principal("ben"), "tool")
    client = openai.OpenAI(base_url=f"{door.url}/v1", api_key=secret, max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "keyed hello"}]
    )
    assert raw.parse().choices[0].message.content == demo_reply("keyed hello")
    rows = door.store.recent_messages(door.principal("ben"), uuid.UUID(raw.headers["x-conversation-id"]))
    assert [(m.role, m.content) for m in rows][0] == ("user", "keyed hello")
    keys.revoke(door.principal("ben"), keys.list(door.principal("ben"))[0].id)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=DEMO_MODEL, messages=[{"role": "user", "content": "again"}])


def test_a_non_streamed_chat_lands_in_history(door: Door) -> None:
    client = door.client("ann")
    raw = client.chat.completions.with_raw_response.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "hello door"}]
    )
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == demo_reply("hello door")
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    cid = uuid.UUID(raw.headers["x-conversation-id"])
    rows = door.store.recent_messages(door.principal("ann"), cid)
    assert [(m.role, m.content, m.status) for m in rows] == [
        ("user", "hello door", "complete"),
        ("assistant", demo_reply("hello door"), "complete"),
    ]
    assert completion.id == f"chatcmpl-{rows[0].id.hex}"


def test_a_streamed_chat_with_usage_lands_in_history(door: Door) -> None:
    door.wire.queue(Script(chunks=["Stream", "ed ", "reply"], usage=(7, 3)))
    client = door.client("ann")
    with client.chat.completions.with_streaming_response.create(
        model=WIRE_MODEL,
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "stream please"}],
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        cid = uuid.UUID(response.headers["x-conversation-id"])
        chunks = list(response.parse())
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Streamed reply"
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1].usage
    assert chunks[-1].choices == [] and usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 3, 10)
    # The provider got the client's own system prompt; the history holds the turn only.
    assert door.wire.requests[-1].body["messages"][0] == {"role": "system", "content": "Be brief."}
    rows = door.store.recent_messages(door.principal("ann"), cid)
    assert [(m.role, m.content, m.status, m.output_tokens) for m in rows] == [
        ("user", "stream please", "complete", None),
        ("assistant", "Streamed reply", "complete", 3),
    ]


def test_ten_sdk_calls_of_a_session_make_one_conversation(door: Door) -> None:
    client = door.client("ben")
    history: list[ChatCompletionMessageParam] = [{"role": "system", "content": "You are a test."}]
    conversations: set[str] = set()
    for i in range(10):
        history.append({"role": "user", "content": f"turn {i}"})
        if i % 2:
            raw = client.chat.completions.with_raw_response.create(model=DEMO_MODEL, messages=history)
            answer = raw.parse().choices[0].message.content or ""
            conversations.add(raw.headers["x-conversation-id"])
        else:
            with client.chat.completions.with_streaming_response.create(
                model=DEMO_MODEL, messages=history, stream=True
            ) as streamed:
                stream: openai.Stream[ChatCompletionChunk] = streamed.parse()
                answer = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
                conversations.add(streamed.headers["x-conversation-id"])
        history.append({"role": "assistant", "content": answer})
    assert len(conversations) == 1
    cid = uuid.UUID(conversations.pop())
    rows = door.store.recent_messages(door.principal("ben"), cid, limit=100)
    assert len(rows) == 20
    assert [(m.role, m.content) for m in rows] == [(m["role"], m.get("content")) for m in history[1:]]


def test_another_users_conversation_is_not_found_in_openai_shape(door: Door) -> None:
    raw = door.client("ann").chat.completions.with_raw_response.create(
        model=DEMO_MODEL, messages=[{"role": "user", "content": "mine"}]
    )
    cid = raw.headers["x-conversation-id"]
    with pytest.raises(openai.NotFoundError) as caught:
        door.client("ben").chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "user", "content": "yours?"}], extra_headers={"X-Conversation-Id": cid}
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "invalid_request_error" and error["code"] == "not_found"
    assert len(door.store.recent_messages(door.principal("ann"), cid)) == 2


def test_failures_come_back_as_the_sdks_exceptions(door: Door) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{door.url}/v1", api_key="not-a-token", max_retries=0).models.list()
    client = door.client("ann")
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="demo/nope", messages=[{"role": "user", "content": "x"}])
    assert isinstance(bad.value.body, dict) and bad.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as tool:
        client.chat.completions.create(
            model=DEMO_MODEL, messages=[{"role": "tool", "content": "x", "tool_call_id": "t1"}]
        )
    assert isinstance(tool.value.body, dict) and tool.value.body["param"] == "messages[0]"
    # A provider failure mid-stream reaches the SDK as an APIError; the reply is stored as an error.
    door.wire.queue(Script(chunks=["part", "ial"], fault="error_first"))
    with pytest.raises(openai.APIError):
        for _ in client.chat.completions.create(
            model=WIRE_MODEL, messages=[{"role": "user", "content": "fail please"}], stream=True
        ):
            pass
    door.wire.queue(Script(status=429))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model=WIRE_MODEL, messages=[{"role": "user", "content": "busy?"}])


def test_the_routes_answer_json_not_the_app_page(door: Door) -> None:
    # Unknown paths answer 200 with Streamlit's index.html: check the body, not only the status.
    request = urllib.request.Request(f"{door.url}/v1/models", headers={"Authorization": f"Bearer {door.token('ann')}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        body = json.loads(response.read())
    assert body["object"] == "list" and {m["object"] for m in body["data"]} == {"model"}


def test_a_client_that_hangs_up_mid_stream_leaves_an_interrupted_reply(door: Door) -> None:
    gate = threading.Event()
    # Two chunks, then the provider waits for the gate: the client has read the first and hangs up.
    door.wire.queue(Script(chunks=["first ", "second"], gate_before={1: gate}))
    client = door.client("ann")

    def stored_reply() -> Message | None:
        rows = door.store.recent_messages(door.principal("ann"), cid)
        replies = [m for m in rows if m.role == "assistant" and m.status != "streaming"]
        return replies[0] if replies else None

    try:
        with client.chat.completions.with_streaming_response.create(
            model=WIRE_MODEL, messages=[{"role": "user", "content": "hang up on me"}], stream=True
        ) as response:
            cid = uuid.UUID(response.headers["x-conversation-id"])
            for chunk in response.parse():
                if chunk.choices and chunk.choices[0].delta.content:
                    break  # leaving the block closes the connection
        # The provider is still holding its second chunk: only the hang-up can end this reply.
        reply = wait_until(stored_reply, 30, "the reply to be finalised")
    finally:
        gate.set()
    assert reply is not None and (reply.status, reply.content) == ("interrupted", "first ")
