"""The real openai and anthropic SDKs against local servers speaking their SSE wire formats, and the
offline demo model: what each provider sends, what it yields, and how every fault is reported."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.wire_servers import Script, WireServer
from services.config import Secret, settings_from
from services.providers import ProviderError, Turn, Usage
from services.providers.anthropic_chat import AnthropicProvider
from services.providers.catalogue import build_catalogue
from services.providers.demo import CONFIGURE_HINT, DemoProvider, demo_reply
from services.providers.openai_chat import OpenAIProvider

TURNS = [Turn("user", "Hi there"), Turn("assistant", "Hello!"), Turn("user", "Tell me a joke")]


@pytest.fixture(scope="module")
def openai_wire() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        yield server


@pytest.fixture(scope="module")
def anthropic_wire() -> Iterator[WireServer]:
    with WireServer("anthropic") as server:
        yield server


def make(kind: str, wire: WireServer, timeout_s: float = 2.0) -> OpenAIProvider | AnthropicProvider:
    if kind == "openai":
        return OpenAIProvider(api_key="sk-test-openai", base_url=wire.base_url, timeout_s=timeout_s)
    return AnthropicProvider(api_key="sk-ant-test", base_url=wire.base_url, timeout_s=timeout_s)


@pytest.fixture(params=["openai", "anthropic"])
def kind_wire(request: pytest.FixtureRequest) -> tuple[str, WireServer]:
    kind = request.param
    return kind, request.getfixturevalue(f"{kind}_wire")


def test_openai_stream_sends_the_documented_request_and_keeps_usage(openai_wire: WireServer) -> None:
    openai_wire.queue(Script(chunks=["Why ", "did ", "the ", "chicken"], usage=(31, 7)))
    before = len(openai_wire.requests)
    reply = make("openai", openai_wire).stream("gpt-4o-mini", TURNS, max_tokens=256)
    assert list(reply) == ["Why ", "did ", "the ", "chicken"]
    assert reply.usage == Usage(31, 7)
    (request,) = openai_wire.requests[before:]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer sk-test-openai"
    assert request.body == {
        "model": "gpt-4o-mini",
        "messages": [{"role": t.role, "content": t.content} for t in TURNS],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_completion_tokens": 256,
    }


def test_anthropic_stream_sends_the_documented_request_and_keeps_usage(anthropic_wire: WireServer) -> None:
    anthropic_wire.queue(Script(chunks=["Knock", " knock"], usage=(40, 9)))
    before = len(anthropic_wire.requests)
    reply = make("anthropic", anthropic_wire).stream("claude-haiku-4-5", TURNS, max_tokens=512)
    assert list(reply) == ["Knock", " knock"]
    assert reply.usage == Usage(40, 9)
    (request,) = anthropic_wire.requests[before:]
    assert request.path == "/v1/messages"
    # SDK 2.x sends the key as a bearer token (1.x used x-api-key).
    assert request.headers["authorization"] == "Bearer sk-ant-test"
    assert request.headers["anthropic-version"]
    assert request.body == {
        "model": "claude-haiku-4-5",
        "max_tokens": 512,
        "messages": [{"role": t.role, "content": t.content} for t in TURNS],
        "stream": True,
    }
    # SDK 2.x has no sampling parameters; nothing of the kind may be sent.
    assert not {"temperature", "top_p", "top_k"} & request.body.keys()


FAULTS = [
    pytest.param(Script(fault="error_first"), "server", [], id="error-before-first-token"),
    pytest.param(Script(chunks=["a", "b", "c", "d"], fault="drop", fault_after=2), "connection", ["a", "b"], id="drop"),
    pytest.param(Script(status=429), "rate_limited", [], id="429"),
    pytest.param(Script(status=500), "server", [], id="500"),
    pytest.param(Script(chunks=["a", "b", "c"], fault="stall", fault_after=1), "timeout", ["a"], id="stall"),
]


@pytest.mark.parametrize(("script", "expected_kind", "expected_chunks"), FAULTS)
def test_faults_become_provider_errors_with_the_text_received_so_far(
    kind_wire: tuple[str, WireServer], script: Script, expected_kind: str, expected_chunks: list[str]
) -> None:
    kind, wire = kind_wire
    wire.queue(script)
    provider = make(kind, wire, timeout_s=1.0)
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        for chunk in provider.stream("m-1", TURNS, max_tokens=64):
            received.append(chunk)
    assert caught.value.kind == expected_kind
    assert received == expected_chunks
    if script.status != 200:
        assert caught.value.status == script.status
    # The message is ours, not the provider's body (which can echo input) and never a key.
    assert "wire server says" not in caught.value.message
    assert "sk-" not in caught.value.message


def test_no_hidden_retries_after_a_429(kind_wire: tuple[str, WireServer]) -> None:
    kind, wire = kind_wire
    wire.queue(Script(status=429, retry_after="0"))
    before = len(wire.requests)
    with pytest.raises(ProviderError):
        list(make(kind, wire).stream("m-1", TURNS, max_tokens=64))
    assert len(wire.requests) == before + 1


def test_a_stream_that_ends_cleanly_but_unfinished_is_not_complete(kind_wire: tuple[str, WireServer]) -> None:
    # A well-formed end of body without finish_reason / message_stop (a proxy cutting the response short)
    # must not be stored as a complete reply.
    kind, wire = kind_wire
    wire.queue(Script(chunks=["only", " half", " of it"], fault="truncate", fault_after=2))
    received: list[str] = []
    with pytest.raises(ProviderError) as caught:
        for chunk in make(kind, wire).stream("m", TURNS, max_tokens=8):
            received.append(chunk)
    assert caught.value.kind == "connection"
    assert received == ["only", " half"]


def test_demo_model_is_deterministic_and_names_how_to_configure_a_real_provider() -> None:
    provider = DemoProvider(chars_per_s=1_000_000)
    first = provider.stream("echo-1", TURNS, max_tokens=10)
    chunks = list(first)
    assert len(chunks) > 20  # streamed word by word
    assert "".join(chunks) == demo_reply("Tell me a joke")
    assert "Tell me a joke" in "".join(chunks) and CONFIGURE_HINT in "".join(chunks)
    assert first.usage is not None and first.usage.output_tokens and first.usage.input_tokens
    assert "".join(provider.stream("echo-1", TURNS, max_tokens=10)) == "".join(chunks)


def test_demo_model_stops_when_closed() -> None:
    reply = DemoProvider(chars_per_s=1_000_000).stream("echo-1", TURNS, max_tokens=10)
    it = iter(reply)
    next(it)
    reply.close()
    assert list(it) == []
    assert reply.usage is None


def test_catalogue_offers_only_configured_providers() -> None:
    bare = build_catalogue(settings_from({}))
    assert bare.ids == ("demo/echo-1",) and bare.default == "demo/echo-1" and not bare.has_real_provider

    full = build_catalogue(
        settings_from(
            {
                "OPENAI_API_KEY": "sk-x",
                "OPENAI_MODELS": "gpt-4o-mini",
                "ANTHROPIC_API_KEY": "sk-ant-x",
                "ANTHROPIC_MODELS": "claude-haiku-4-5,claude-sonnet-4-5",
            }
        )
    )
    assert full.ids == (
        "openai/gpt-4o-mini",
        "anthropic/claude-haiku-4-5",
        "anthropic/claude-sonnet-4-5",
        "demo/echo-1",
    )
    assert full.default == "openai/gpt-4o-mini" and full.has_real_provider

    compat = build_catalogue(
        settings_from({"OPENAI_BASE_URL": "http://localhost:11434/v1", "OPENAI_COMPAT_MODELS": "llama3.2"})
    )
    assert compat.ids == ("compat/llama3.2", "demo/echo-1")
    provider, option = compat.resolve("compat/llama3.2")
    assert option.model == "llama3.2" and provider.name == "compat"


def test_compat_provider_talks_to_the_configured_base_url(openai_wire: WireServer) -> None:
    settings = settings_from({"OPENAI_BASE_URL": openai_wire.base_url, "OPENAI_COMPAT_MODELS": "qwen2.5:7b"})
    assert settings.openai_api_key is None
    provider, option = build_catalogue(settings).resolve("compat/qwen2.5:7b")
    before = len(openai_wire.requests)
    assert "".join(provider.stream(option.model, TURNS, max_tokens=32)) == "Hello, world!"
    (request,) = openai_wire.requests[before:]
    assert request.body["model"] == "qwen2.5:7b"


def test_base_url_without_models_discovers_them_from_the_server(openai_wire: WireServer) -> None:
    # OPENAI_COMPAT_MODELS was required with OPENAI_BASE_URL; unset, the server's /v1/models now says.
    settings = settings_from({"OPENAI_BASE_URL": openai_wire.base_url})
    assert settings.openai_compat_models == ()
    assert build_catalogue(settings).ids == ("compat/wire-model", "demo/echo-1")
    assert settings_from({"OPENAI_API_KEY": "sk-1"}).openai_api_key == Secret("sk-1")
