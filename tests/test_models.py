"""Every configured model in one catalogue: several OpenAI-compatible servers at once (CHAT_OPENAI_SERVERS),
their models discovered from `GET /v1/models` through the real openai SDK against local wire servers,
cached, with servers that are down reported and the rest still offered; the setting's parse errors; and
the remembered model on the user's profile row, under RLS."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import pytest

from devtools.wire_servers import WireServer
from services.auth import Principal
from services.config import MASK, ConfigError, Secret, redact, settings_from
from services.providers import Turn
from services.providers.catalogue import FAILURE_CACHE_S, build_catalogue
from services.store import InvalidInput
from services.store.postgres import PostgresStore

TURNS = [Turn("user", "Hi there")]


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def wire_a() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        server.models = ["zeta-7b", "alpha-3b"]
        yield server


@pytest.fixture
def wire_b() -> Iterator[WireServer]:
    with WireServer("openai") as server:
        server.models = ["beta-1"]
        yield server


def closed_port_url() -> str:
    """A URL where nothing listens: the port was free a moment ago and is closed again."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def servers(*entries: dict[str, object]) -> str:
    return json.dumps(list(entries))


# --- wire level -------------------------------------------------------------------------------------


def test_two_compatible_servers_each_get_their_own_requests_and_key(wire_a: WireServer, wire_b: WireServer) -> None:
    settings = settings_from(
        {
            "OPENAI_API_KEY": "sk-openai",
            "OPENAI_MODELS": "gpt-4o-mini",
            "CHAT_OPENAI_SERVERS": servers(
                {"name": "local", "url": wire_a.base_url, "key": "key-for-a"},
                {"name": "lab", "url": wire_b.base_url, "key_env": "LAB_KEY", "models": ["fixed-model"]},
            ),
            "LAB_KEY": "key-for-b",
        }
    )
    catalogue = build_catalogue(settings)
    # OpenAI stays offered beside the servers; each server's models carry its name; the demo comes last.
    assert catalogue.ids == (
        "openai/gpt-4o-mini",
        "local/alpha-3b",
        "local/zeta-7b",
        "lab/fixed-model",
        "demo/echo-1",
    )
    assert [o.label for o in catalogue.options][:4] == [
        "OpenAI · gpt-4o-mini",
        "local · alpha-3b",
        "local · zeta-7b",
        "lab · fixed-model",
    ]
    assert catalogue.default == "openai/gpt-4o-mini"
    # Discovery asked only the server without listed models, with that server's key.
    assert [(r.path, r.headers["authorization"]) for r in wire_a.model_requests] == [("/v1/models", "Bearer key-for-a")]
    assert wire_b.model_requests == []

    for model_id, wire, key, model in (
        ("local/zeta-7b", wire_a, "key-for-a", "zeta-7b"),
        ("lab/fixed-model", wire_b, "key-for-b", "fixed-model"),
    ):
        provider, option = catalogue.resolve(model_id)
        assert (option.provider, option.model) == (model_id.split("/")[0], model)
        assert "".join(provider.stream(option.model, TURNS, max_tokens=16)) == "Hello, world!"
        (request,) = wire.requests
        assert request.path == "/v1/chat/completions"
        assert request.headers["authorization"] == f"Bearer {key}"
        assert request.body["model"] == model


def test_a_model_name_with_slashes_keeps_them_after_the_server_prefix(wire_a: WireServer) -> None:
    wire_a.models = ["meta-llama/Llama-3.1-8B-Instruct"]
    catalogue = build_catalogue(
        settings_from({"CHAT_OPENAI_SERVERS": servers({"name": "vllm", "url": wire_a.base_url})})
    )
    provider, option = catalogue.resolve("vllm/meta-llama/Llama-3.1-8B-Instruct")
    assert option.model == "meta-llama/Llama-3.1-8B-Instruct" and provider.name == "vllm"
    "".join(provider.stream(option.model, TURNS, max_tokens=16))
    assert wire_a.requests[-1].body["model"] == "meta-llama/Llama-3.1-8B-Instruct"


def test_a_server_that_is_down_is_unavailable_and_the_others_stay_offered(wire_a: WireServer) -> None:
    settings = settings_from(
        {
            "CHAT_OPENAI_SERVERS": servers(
                {"name": "gone", "url": closed_port_url()},
                {"name": "local", "url": wire_a.base_url},
            )
        }
    )
    catalogue = build_catalogue(settings)
    assert catalogue.ids == ("local/alpha-3b", "local/zeta-7b", "demo/echo-1")
    assert catalogue.default == "local/alpha-3b"  # the first model that is offered, not the dead server's
    statuses = {s.name: s for s in catalogue.statuses()}
    assert not statuses["gone"].available and statuses["gone"].problem == "it could not be reached"
    assert statuses["local"].available and statuses["local"].models == 2
    assert catalogue.has_real_provider  # configured, so the page does not claim only the demo is set up
    with pytest.raises(KeyError):
        catalogue.resolve("gone/anything")


@pytest.mark.parametrize(
    ("status", "problem"),
    [(500, "it answered HTTP 500 when asked for its models"), (401, "it rejected the API key")],
)
def test_a_server_answering_an_error_is_unavailable_with_the_reason(
    wire_a: WireServer, status: int, problem: str
) -> None:
    wire_a.models_status = status
    catalogue = build_catalogue(settings_from({"CHAT_OPENAI_SERVERS": servers({"name": "x", "url": wire_a.base_url})}))
    assert catalogue.ids == ("demo/echo-1",)
    assert [(s.name, s.problem) for s in catalogue.statuses()] == [("x", problem)]


def test_a_server_that_does_not_answer_in_time_is_unavailable(wire_a: WireServer) -> None:
    wire_a.models_delay_s = 30  # the wire server notices the client hanging up and stops waiting
    settings = settings_from(
        {"CHAT_OPENAI_SERVERS": servers({"name": "slow", "url": wire_a.base_url}), "CHAT_MODELS_TIMEOUT_S": "0.2"}
    )
    catalogue = build_catalogue(settings)
    assert catalogue.ids == ("demo/echo-1",)
    assert [s.problem for s in catalogue.statuses()] == ["it did not answer within 0.2 s"]


def test_a_server_listing_no_models_says_so(wire_a: WireServer) -> None:
    wire_a.models = []
    catalogue = build_catalogue(
        settings_from({"CHAT_OPENAI_SERVERS": servers({"name": "empty", "url": wire_a.base_url})})
    )
    assert [s.problem for s in catalogue.statuses()] == ["it lists no models"]


def test_discovered_models_are_cached_for_the_configured_time(wire_a: WireServer) -> None:
    clock = Clock()
    settings = settings_from(
        {"CHAT_OPENAI_SERVERS": servers({"name": "local", "url": wire_a.base_url}), "CHAT_MODELS_CACHE_S": "120"}
    )
    catalogue = build_catalogue(settings, clock=clock)
    assert catalogue.ids[:2] == ("local/alpha-3b", "local/zeta-7b")
    wire_a.models = ["new-model"]
    clock.now += 119
    for _ in range(3):
        assert catalogue.option("local/zeta-7b") is not None and catalogue.statuses()[0].models == 2
    assert len(wire_a.model_requests) == 1
    clock.now += 1  # the list is 120 s old: asked again
    assert catalogue.ids == ("local/new-model", "demo/echo-1")
    assert len(wire_a.model_requests) == 2

    wire_a.models = ["newer-model"]
    catalogue.refresh()  # the picker's "Refresh models": at once, whatever the age
    assert len(wire_a.model_requests) == 3
    assert catalogue.ids == ("local/newer-model", "demo/echo-1")


def test_a_failed_discovery_is_cached_too_but_for_less_time(wire_a: WireServer) -> None:
    clock = Clock()
    wire_a.models_status = 503
    settings = settings_from({"CHAT_OPENAI_SERVERS": servers({"name": "local", "url": wire_a.base_url})})
    catalogue = build_catalogue(settings, clock=clock)
    assert catalogue.ids == ("demo/echo-1",)
    clock.now += FAILURE_CACHE_S - 1
    assert catalogue.ids == ("demo/echo-1",) and not catalogue.statuses()[0].available
    assert len(wire_a.model_requests) == 1  # page runs meanwhile do not wait on the server again
    wire_a.models_status = 200
    clock.now += 1
    assert catalogue.ids == ("local/alpha-3b", "local/zeta-7b", "demo/echo-1")
    assert len(wire_a.model_requests) == 2


def test_base_url_keeps_its_meaning_beside_the_server_list(wire_a: WireServer, wire_b: WireServer) -> None:
    settings = settings_from(
        {
            "OPENAI_BASE_URL": wire_b.base_url,
            "OPENAI_API_KEY": "sk-goes-to-the-base-url",
            "CHAT_OPENAI_SERVERS": servers({"name": "local", "url": wire_a.base_url}),
        }
    )
    catalogue = build_catalogue(settings)
    # OPENAI_BASE_URL replaces OpenAI (as the SDK reads it): no openai/ models; its server is "compat".
    assert catalogue.ids == ("compat/beta-1", "local/alpha-3b", "local/zeta-7b", "demo/echo-1")
    assert catalogue.option("compat/beta-1").label == "Model server · beta-1"  # type: ignore[union-attr]
    assert wire_b.model_requests[0].headers["authorization"] == "Bearer sk-goes-to-the-base-url"
    assert wire_a.model_requests[0].headers["authorization"] == "Bearer not-needed"  # no key configured


# --- the setting ------------------------------------------------------------------------------------


def test_servers_written_as_toml_tables_in_secrets_read_like_the_json() -> None:
    table = [{"name": "groq", "url": "https://api.groq.com/openai/v1/", "key": "gsk-1", "models": ["llama"]}]
    (server,) = settings_from({}, {"CHAT_OPENAI_SERVERS": table}).openai_servers
    assert (server.name, server.url, server.key, server.models) == (
        "groq",
        "https://api.groq.com/openai/v1",
        Secret("gsk-1"),
        ("llama",),
    )


def test_server_keys_are_masked_in_repr_and_redacted_from_text() -> None:
    settings = settings_from(
        {
            "CHAT_OPENAI_SERVERS": servers(
                {"name": "a", "url": "http://a.test/v1", "key": "inline-secret-1"},
                {"name": "b", "url": "http://b.test/v1", "key_env": "B_KEY"},
            ),
            "B_KEY": "env-secret-2",
        }
    )
    assert "inline-secret-1" not in repr(settings) and "env-secret-2" not in repr(settings)
    assert redact("failed with inline-secret-1 and env-secret-2", settings) == f"failed with {MASK} and {MASK}"


BAD_SERVERS = [
    ("not json", '[{"name": "a", "key": "sk-leaky"', "not valid JSON"),
    ("not a list", '"local=http://x"', "JSON list"),
    ("entry not an object", '["http://x/v1"]', "entry 1 must be an object"),
    ("no name", '[{"url": "http://x/v1"}]', 'needs a "name"'),
    ("bad name", '[{"name": "My Server", "url": "http://x/v1"}]', "lowercase"),
    ("reserved name", '[{"name": "openai", "url": "http://x/v1"}]', "'openai' is taken"),
    ("no url", '[{"name": "a"}]', 'needs a "url"'),
    ("bad url", '[{"name": "a", "url": "ftp://x"}]', "must be an http"),
    ("unknown field", '[{"name": "a", "url": "http://x/v1", "modles": ["m"]}]', "unknown field(s) modles"),
    ("key and key_env", '[{"name": "a", "url": "http://x/v1", "key": "k", "key_env": "K"}]', "not both"),
    ("models not a list", '[{"name": "a", "url": "http://x/v1", "models": {"m": 1}}]', '"models" must be a list'),
    ("twice", '[{"name": "a", "url": "http://x/v1"}, {"name": "a", "url": "http://y/v1"}]', "twice: a"),
]


@pytest.mark.parametrize(("raw", "message"), [b[1:] for b in BAD_SERVERS], ids=[b[0] for b in BAD_SERVERS])
def test_a_malformed_server_list_is_a_config_error_naming_the_variable(raw: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from({"CHAT_OPENAI_SERVERS": raw})
    assert "CHAT_OPENAI_SERVERS" in str(caught.value) and message in str(caught.value)
    assert "sk-leaky" not in str(caught.value)


def test_a_key_env_that_is_not_set_names_that_variable() -> None:
    with pytest.raises(ConfigError, match="Config 'LAB_KEY' is missing.*server 'lab'"):
        settings_from({"CHAT_OPENAI_SERVERS": servers({"name": "lab", "url": "http://x/v1", "key_env": "LAB_KEY"})})


# --- the remembered model, on the user's own profile row --------------------------------------------


def test_the_model_choice_is_kept_per_user(store: PostgresStore, alice: Principal, bob: Principal) -> None:
    assert store.model_choice(alice) is None
    store.save_model_choice(alice, "local/zeta-7b")
    store.save_model_choice(alice, "lab/fixed-model")
    store.save_model_choice(bob, "demo/echo-1")
    assert store.model_choice(alice) == "lab/fixed-model"
    assert store.model_choice(bob) == "demo/echo-1"
    # A user without a display name keeps a choice; names are still listed only where they exist.
    assert store.display_names(alice, [alice.user_id]) == {}
    store.save_display_name(alice, "Alice")
    assert store.display_names(alice, [alice.user_id]) == {alice.user_id: "Alice"}
    assert store.model_choice(alice) == "lab/fixed-model"
    with pytest.raises(InvalidInput):
        store.save_model_choice(alice, "x" * 201)
    store.delete_all_user_data(alice)
    assert store.model_choice(alice) is None and store.model_choice(bob) == "demo/echo-1"
