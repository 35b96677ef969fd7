"""Which models the picker offers, built from Settings: only configured providers appear.

Model ids are "<provider>/<model>": "demo/echo-1" (always), "openai/<m>" for OPENAI_MODELS when
OPENAI_API_KEY is set, "compat/<m>" for OPENAI_COMPAT_MODELS when OPENAI_BASE_URL is set, and
"anthropic/<m>" for ANTHROPIC_MODELS when ANTHROPIC_API_KEY is set.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from services.config import Settings
from services.providers import Provider
from services.providers.demo import DEMO_MODEL, DemoProvider


@dataclass(frozen=True)
class ModelOption:
    id: str  # "openai/gpt-4o-mini": what the picker, the store and ChatService use
    provider: str
    model: str  # the provider's own model name
    label: str

    @property
    def offline(self) -> bool:
        return self.provider == "demo"


class Catalogue:
    def __init__(self, providers: Mapping[str, Provider], options: list[ModelOption], default: str) -> None:
        self._providers = dict(providers)
        self.options = tuple(options)
        self._by_id = {o.id: o for o in options}
        self.default = default

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(o.id for o in self.options)

    @property
    def has_real_provider(self) -> bool:
        return any(not o.offline for o in self.options)

    def option(self, model_id: str) -> ModelOption | None:
        return self._by_id.get(model_id)

    def resolve(self, model_id: str) -> tuple[Provider, ModelOption]:
        """The provider and option for a model id; KeyError when it is not offered."""
        option = self._by_id[model_id]
        return self._providers[option.provider], option


def build_catalogue(settings: Settings) -> Catalogue:
    providers: dict[str, Provider] = {}
    options: list[ModelOption] = []
    timeout = settings.provider_timeout_s

    if settings.openai_base_url is not None:
        from services.providers.openai_chat import OpenAIProvider

        key = settings.openai_api_key.reveal() if settings.openai_api_key else None
        providers["compat"] = OpenAIProvider(
            name="compat", label="the model server", api_key=key, base_url=settings.openai_base_url, timeout_s=timeout
        )
        options += [
            ModelOption(f"compat/{m}", "compat", m, f"{m} (local server)") for m in settings.openai_compat_models
        ]
    elif settings.openai_api_key:
        from services.providers.openai_chat import OpenAIProvider

        providers["openai"] = OpenAIProvider(api_key=settings.openai_api_key.reveal(), timeout_s=timeout)
        options += [ModelOption(f"openai/{m}", "openai", m, f"{m} (OpenAI)") for m in settings.openai_models]

    if settings.anthropic_api_key:
        from services.providers.anthropic_chat import AnthropicProvider

        providers["anthropic"] = AnthropicProvider(api_key=settings.anthropic_api_key.reveal(), timeout_s=timeout)
        options += [
            ModelOption(f"anthropic/{m}", "anthropic", m, f"{m} (Anthropic)") for m in settings.anthropic_models
        ]

    providers["demo"] = DemoProvider(settings.demo_chars_per_s)
    demo = ModelOption(f"demo/{DEMO_MODEL}", "demo", DEMO_MODEL, "Offline demo model (no API key)")
    options.append(demo)
    # A real provider is the default when one is configured; otherwise the offline demo.
    return Catalogue(providers, options, default=options[0].id)
