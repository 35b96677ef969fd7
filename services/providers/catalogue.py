"""Which models the picker offers, built from Settings: only configured providers appear.

Model ids are "<provider>/<model>" and stay stable (stored messages record them): "openai/<m>" for
OPENAI_MODELS when OPENAI_API_KEY is set, "compat/<m>" for the OPENAI_BASE_URL server, "<name>/<m>" for
each server of CHAT_OPENAI_SERVERS, "anthropic/<m>" for ANTHROPIC_MODELS when ANTHROPIC_API_KEY is set,
and "demo/echo-1" (always, last). A compatible server whose models are not listed has them discovered
from its `GET /v1/models`, cached for CHAT_MODELS_CACHE_S; a server that cannot be asked is reported
unavailable (`statuses`) and offers nothing until it answers, while every other model stays offered.
"""

from __future__ import annotations

import fnmatch
import logging
import operator
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from services.config import CompatServer, Settings
from services.providers import Provider, ProviderError
from services.providers.demo import DEMO_MODEL, DemoProvider

log = logging.getLogger(__name__)

# A failed discovery is kept at most this long (or CHAT_MODELS_CACHE_S if shorter): long enough that a
# server that is down costs a page run one short timeout now and then, short enough that a server started
# after the app shows up without anyone pressing "Refresh models".
FAILURE_CACHE_S = 30.0
COMPAT_GROUP = "Model server"  # the OPENAI_BASE_URL server, which has no name of its own


@dataclass(frozen=True)
class ModelOption:
    id: str  # "openai/gpt-4o-mini": what the picker, the store and ChatService use
    provider: str  # the provider (or compatible server) name: the id's prefix
    model: str  # the provider's own model name
    label: str
    group: str = ""  # what the picker groups it under: "OpenAI", "Anthropic", a server's name
    images: bool = False  # whether the model takes images (see accepts_images)

    @property
    def offline(self) -> bool:
        return self.provider == "demo"


@dataclass(frozen=True)
class ServerStatus:
    """A compatible server whose models are discovered: what it offered at its last discovery."""

    name: str
    models: int
    problem: str | None = None  # why it offers nothing right now, in words fit for the page

    @property
    def available(self) -> bool:
        return self.problem is None


class ModelLister(Protocol):
    def list_models(self, timeout_s: float) -> list[str]: ...


@dataclass(frozen=True)
class _Found:
    models: tuple[str, ...]
    problem: str | None
    expires: float


def _problem(exc: ProviderError, timeout_s: float) -> str:
    if exc.kind == "timeout":
        return f"it did not answer within {timeout_s:g} s"
    if exc.kind == "auth":
        return "it rejected the API key"
    if exc.status is not None:
        return f"it answered HTTP {exc.status} when asked for its models"
    return "it could not be reached"


class Discovery:
    """One server's model list from `GET /v1/models`, kept for `ttl_s` (a failure for less)."""

    def __init__(
        self,
        name: str,
        lister: ModelLister,
        *,
        ttl_s: float,
        timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._lister = lister
        self.ttl_s = ttl_s
        self.timeout_s = timeout_s
        self._clock = clock
        # Held while asking: page runs that need the list at the same moment wait for one request.
        self._lock = threading.Lock()
        self._found: _Found | None = None

    def stale(self) -> bool:
        found = self._found
        return found is None or self._clock() >= found.expires

    def invalidate(self) -> None:
        with self._lock:
            self._found = None

    def current(self) -> _Found:
        with self._lock:
            if self._found is None or self._clock() >= self._found.expires:
                self._found = self._ask()
            return self._found

    def _ask(self) -> _Found:
        try:
            models = tuple(sorted(set(self._lister.list_models(self.timeout_s))))
        except ProviderError as exc:
            log.warning("model discovery from server %r failed: %s", self.name, exc.kind)
            return _Found((), _problem(exc, self.timeout_s), self._clock() + min(self.ttl_s, FAILURE_CACHE_S))
        problem = None if models else "it lists no models"
        return _Found(models, problem, self._clock() + self.ttl_s)


@dataclass(frozen=True)
class _Group:
    provider: str
    label: str
    models: tuple[str, ...] = ()
    discovery: Discovery | None = None


class Catalogue:
    """The models on offer. `options`, `ids`, `option` and `resolve` read discovered lists through their
    cache, so the answer can change between calls as servers come and go."""

    def __init__(
        self,
        providers: Mapping[str, Provider],
        options: Sequence[ModelOption],
        default: str | None = None,
        *,
        discoveries: Sequence[tuple[Discovery, str]] = (),
        order: Sequence[str] = (),
        image_models: Sequence[str] = (),
    ) -> None:
        """`options` are the fixed models; `discoveries` pairs a server's Discovery with its group label.
        `order` lists provider names in picker order (default: as the options name them, then discovered)."""
        self._providers = dict(providers)
        self._fixed = tuple(options)
        self._discoveries = {d.name: (d, label) for d, label in discoveries}
        names = list(dict.fromkeys([*order, *(o.provider for o in self._fixed), *self._discoveries]))
        self._order = tuple(names)
        self._default = default
        self._image_models = tuple(image_models)  # CHAT_IMAGE_MODELS, for discovered models
        # (the discovered lists it was built from, the options, the options by id); replaced whole, so a
        # page run reading it while another rebuilds it sees one consistent snapshot.
        self._snapshot: tuple[tuple[_Found, ...], tuple[ModelOption, ...], dict[str, ModelOption]] | None = None

    # --- what is offered now -----------------------------------------------------------------------

    def _found(self) -> dict[str, _Found]:
        stale = [d for d, _ in self._discoveries.values() if d.stale()]
        if len(stale) > 1:
            # Servers are asked at once, so several that are down cost one timeout, not one each.
            threads = [threading.Thread(target=d.current, daemon=True) for d in stale]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        return {name: d.current() for name, (d, _) in self._discoveries.items()}

    def _offered(self) -> tuple[tuple[ModelOption, ...], dict[str, ModelOption]]:
        found = self._found()
        # The meta line of every message on the page asks for its option: rebuild only when a list changed.
        key = tuple(found.values())
        snapshot = self._snapshot
        if snapshot is not None and len(snapshot[0]) == len(key) and all(map(operator.is_, snapshot[0], key)):
            return snapshot[1], snapshot[2]
        result: list[ModelOption] = []
        for name in self._order:
            result += [o for o in self._fixed if o.provider == name]
            if name in found:
                label = self._discoveries[name][1]
                result += [_option(name, m, label, self._image_models) for m in found[name].models]
        options, by_id = tuple(result), {o.id: o for o in result}
        self._snapshot = (key, options, by_id)
        return options, by_id

    @property
    def options(self) -> tuple[ModelOption, ...]:
        return self._offered()[0]

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.options)

    @property
    def default(self) -> str:
        ids = self.ids
        return self._default if self._default in ids else ids[0]

    @property
    def has_real_provider(self) -> bool:
        """Whether a real model is configured (it may be unavailable for now: see `statuses`)."""
        return any(not o.offline for o in self._fixed) or bool(self._discoveries)

    def option(self, model_id: str) -> ModelOption | None:
        return self._offered()[1].get(model_id)

    def resolve(self, model_id: str) -> tuple[Provider, ModelOption]:
        """The provider and option for a model id; KeyError when it is not offered."""
        option = self._offered()[1][model_id]
        return self._providers[option.provider], option

    # --- discovery ---------------------------------------------------------------------------------

    def statuses(self) -> tuple[ServerStatus, ...]:
        """Each server whose models are discovered, in picker order, as of its last discovery."""
        found = self._found()
        return tuple(ServerStatus(name, len(found[name].models), found[name].problem) for name in found)

    @property
    def discovers(self) -> bool:
        return bool(self._discoveries)

    def refresh(self) -> None:
        """Forget every discovered list and ask the servers again now."""
        for d, _ in self._discoveries.values():
            d.invalidate()
        self._found()


# Models known to take images (issue 15), by the provider's own model name; `*` matches any text. OpenAI: the
# GPT-4o, 4.1 and 5 families and the o1/o3/o4 reasoning models (not o1-mini or o3-mini); Anthropic: every
# Claude from Claude 3 on. A compatible server's `/v1/models` does not say, so CHAT_IMAGE_MODELS lists them.
IMAGE_MODELS: dict[str, tuple[str, ...]] = {
    "openai": ("gpt-4o*", "chatgpt-4o*", "gpt-4.1*", "gpt-4-turbo*", "gpt-5*", "o1", "o1-20*", "o3", "o3-20*",
               "o3-pro*", "o4-mini*"),
    "anthropic": ("claude-3*", "claude-opus-4*", "claude-sonnet-4*", "claude-haiku-4*", "claude-*-4-*"),
    # The offline demo takes images (it cannot see them, and says so), so the whole path can be tried offline.
    "demo": ("*",),
}  # fmt: skip


def accepts_images(provider: str, model: str, listed: Sequence[str] = ()) -> bool:
    """Whether `provider/model` takes images: known for OpenAI's and Anthropic's models, else only when
    CHAT_IMAGE_MODELS (`listed`, patterns of whole ids) names it. Case-sensitive, like model ids."""
    known = IMAGE_MODELS.get(provider, ())
    return any(fnmatch.fnmatchcase(model, p) for p in known) or any(
        fnmatch.fnmatchcase(f"{provider}/{model}", p) for p in listed
    )


def _option(provider: str, model: str, group: str, image_models: Sequence[str] = ()) -> ModelOption:
    images = accepts_images(provider, model, image_models)
    return ModelOption(f"{provider}/{model}", provider, model, f"{group} · {model}", group, images)


def _fixed(provider: str, models: Sequence[str], group: str, image_models: Sequence[str] = ()) -> list[ModelOption]:
    return [_option(provider, m, group, image_models) for m in models]


def build_catalogue(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Catalogue:
    from services.providers.openai_chat import OpenAIProvider

    providers: dict[str, Provider] = {}
    options: list[ModelOption] = []
    discoveries: list[tuple[Discovery, str]] = []
    order: list[str] = []
    timeout = settings.provider_timeout_s

    def compatible(server: CompatServer, group: str, label: str) -> None:
        provider = OpenAIProvider(
            name=server.name,
            label=label,
            api_key=server.key.reveal() if server.key else None,
            base_url=server.url,
            timeout_s=timeout,
        )
        providers[server.name] = provider
        order.append(server.name)
        if server.models:
            options.extend(_fixed(server.name, server.models, group, settings.image_models))
        else:
            discovery = Discovery(
                server.name, provider, ttl_s=settings.models_cache_s, timeout_s=settings.models_timeout_s, clock=clock
            )
            discoveries.append((discovery, group))

    # OPENAI_BASE_URL keeps its old meaning: the OpenAI SDK talks to that server instead of OpenAI, with
    # OPENAI_API_KEY as its key. CHAT_OPENAI_SERVERS adds servers beside OpenAI.
    if settings.openai_base_url is not None:
        key = settings.openai_api_key
        compat = CompatServer("compat", settings.openai_base_url, key, settings.openai_compat_models)
        compatible(compat, COMPAT_GROUP, "the model server")
    elif settings.openai_api_key:
        providers["openai"] = OpenAIProvider(api_key=settings.openai_api_key.reveal(), timeout_s=timeout)
        order.append("openai")
        options += _fixed("openai", settings.openai_models, "OpenAI", settings.image_models)

    for server in settings.openai_servers:
        compatible(server, server.name, f"the model server {server.name!r}")

    if settings.anthropic_api_key:
        from services.providers.anthropic_chat import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(api_key=settings.anthropic_api_key.reveal(), timeout_s=timeout)
        order.append("anthropic")
        options += _fixed("anthropic", settings.anthropic_models, "Anthropic", settings.image_models)

    providers["demo"] = DemoProvider(settings.demo_chars_per_s)
    order.append("demo")
    options.append(
        ModelOption(f"demo/{DEMO_MODEL}", "demo", DEMO_MODEL, "Offline demo model (no API key)", "Offline", images=True)
    )
    # A real provider is the default when one is offered; otherwise the offline demo (`default` is the first).
    return Catalogue(
        providers, options, None, discoveries=discoveries, order=order, image_models=settings.image_models
    )
