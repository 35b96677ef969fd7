"""One typed Settings object, read from environment variables with `.streamlit/secrets.toml` as fallback.

Every setting has a name users can set (the env var name, also the key in secrets.toml). Missing or
contradictory settings raise `ConfigError` at start-up, naming the variable to set. Secrets are wrapped
in `Secret`, whose repr is masked, so printing or logging a Settings object never leaks a key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

MASK = "**********"
AUTH_MODES = ("local", "clerk", "none")


class ConfigError(RuntimeError):
    """A setting is missing, malformed or contradicts another one. The message names what to set."""


class Secret:
    """A string that never shows itself in repr/str; call `reveal()` where the value is really needed."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


_SECRET_NAME = re.compile(r"(secret|key|password|token|dsn|database_url)", re.IGNORECASE)


def redact(text: str, settings: Settings) -> str:
    """Replace every secret value that occurs in `text` by the mask (for error messages and logs)."""
    for f in fields(settings):
        value = getattr(settings, f.name)
        if isinstance(value, Secret) and value.reveal():
            text = text.replace(value.reveal(), MASK)
    return text


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path(".data")
    database_url: Secret | None = None
    database_admin_url: Secret | None = None
    db_pool_max: int = 10
    max_message_chars: int = 32_000

    auth_mode: str = "local"
    users_file: Path | None = None
    allow_signup: bool = True
    cookie_key: Secret | None = None
    token_ttl_s: int = 900
    clerk_issuer: str | None = None
    clerk_jwks_url: str | None = None
    clerk_jwt_key: Secret | None = None
    clerk_authorized_parties: tuple[str, ...] = ()

    openai_api_key: Secret | None = None
    openai_base_url: str | None = None
    openai_models: tuple[str, ...] = ("gpt-4o-mini", "gpt-4o")
    openai_compat_models: tuple[str, ...] = ()
    anthropic_api_key: Secret | None = None
    anthropic_models: tuple[str, ...] = ("claude-sonnet-4-5", "claude-haiku-4-5")
    provider_timeout_s: float = 60.0
    demo_chars_per_s: float = 400.0
    max_reply_tokens: int = 4096
    context_chars: int = 48_000

    rate_limit_per_minute: int = 20

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def resolved_users_file(self) -> Path:
        return self.users_file or self.data_dir / "users.yaml"

    @property
    def uses_embedded_database(self) -> bool:
        return self.database_url is None


Reader = Callable[[str], str | None]


def _reader(environ: Mapping[str, str], secrets: Mapping[str, Any] | None) -> Reader:
    def read(name: str) -> str | None:
        value = environ.get(name)
        if value is None and secrets is not None:
            raw = secrets.get(name)
            value = None if raw is None else str(raw)
        if value is not None and value.strip() == "":
            return None
        return value

    return read


def _int(read: Reader, name: str, default: int, lo: int, hi: int) -> int:
    raw = read(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"Config '{name}' must be a whole number (got {raw!r}).") from None
    if not lo <= value <= hi:
        raise ConfigError(f"Config '{name}' must be between {lo} and {hi} (got {value}).")
    return value


def _float(read: Reader, name: str, default: float, lo: float, hi: float) -> float:
    raw = read(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"Config '{name}' must be a number (got {raw!r}).") from None
    if not lo <= value <= hi:
        raise ConfigError(f"Config '{name}' must be between {lo} and {hi} (got {value}).")
    return value


def _bool(read: Reader, name: str, default: bool) -> bool:
    raw = read(name)
    if raw is None:
        return default
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"Config '{name}' must be true or false (got {raw!r}).")


def _list(read: Reader, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = read(name)
    if raw is None:
        return default
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ConfigError(f"Config '{name}' must list at least one value, separated by commas.")
    return items


def _secret(read: Reader, name: str) -> Secret | None:
    raw = read(name)
    return None if raw is None else Secret(raw.strip())


def _url(read: Reader, name: str) -> str | None:
    raw = read(name)
    if raw is None:
        return None
    raw = raw.strip()
    if not re.match(r"^https?://[^\s/]+", raw):
        raise ConfigError(f"Config '{name}' must be an http(s) URL (got {raw!r}).")
    return raw.rstrip("/")


def settings_from(environ: Mapping[str, str], secrets: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from an environment mapping, falling back to a secrets mapping. Pure: no I/O."""
    read = _reader(environ, secrets)

    auth_mode = (read("CHAT_AUTH") or "local").strip().lower()
    if auth_mode not in AUTH_MODES:
        raise ConfigError(f"Config 'CHAT_AUTH' must be one of {', '.join(AUTH_MODES)} (got {auth_mode!r}).")

    clerk_issuer = _url(read, "CLERK_ISSUER")
    clerk_jwks_url = _url(read, "CLERK_JWKS_URL")
    clerk_jwt_key = _secret(read, "CLERK_JWT_KEY")
    if auth_mode == "clerk":
        if clerk_issuer is None:
            raise ConfigError(
                "Config 'CLERK_ISSUER' is missing: with CHAT_AUTH=clerk set it to your Clerk Frontend API URL "
                "(https://<your-app>.clerk.accounts.dev)."
            )
        if clerk_jwks_url is None and clerk_jwt_key is None:
            clerk_jwks_url = f"{clerk_issuer}/.well-known/jwks.json"

    database_url = _secret(read, "DATABASE_URL")
    if database_url is not None and not re.match(r"^postgres(ql)?://", database_url.reveal()):
        raise ConfigError("Config 'DATABASE_URL' must be a postgresql:// URL.")

    database_admin_url = _secret(read, "DATABASE_ADMIN_URL")
    if database_admin_url is not None and database_url is None:
        raise ConfigError("Config 'DATABASE_ADMIN_URL' is set but 'DATABASE_URL' is not: set both, or neither.")
    if database_admin_url is not None and not re.match(r"^postgres(ql)?://", database_admin_url.reveal()):
        raise ConfigError("Config 'DATABASE_ADMIN_URL' must be a postgresql:// URL.")

    openai_base_url = _url(read, "OPENAI_BASE_URL")
    openai_compat_models = _list(read, "OPENAI_COMPAT_MODELS", ())
    if openai_base_url is not None and not openai_compat_models:
        raise ConfigError(
            "Config 'OPENAI_COMPAT_MODELS' is missing: with OPENAI_BASE_URL set, list the models your server "
            "offers, separated by commas (e.g. llama3.2,qwen2.5:7b)."
        )

    users_file = read("CHAT_USERS_FILE")
    return Settings(
        data_dir=Path(read("CHAT_DATA_DIR") or ".data"),
        database_url=database_url,
        database_admin_url=database_admin_url,
        db_pool_max=_int(read, "CHAT_DB_POOL_MAX", 10, 1, 200),
        max_message_chars=_int(read, "CHAT_MAX_MESSAGE_CHARS", 32_000, 1, 1_000_000),
        auth_mode=auth_mode,
        users_file=Path(users_file) if users_file else None,
        allow_signup=_bool(read, "CHAT_ALLOW_SIGNUP", True),
        cookie_key=_secret(read, "CHAT_COOKIE_KEY"),
        token_ttl_s=_int(read, "CHAT_TOKEN_TTL_S", 900, 30, 86_400),
        clerk_issuer=clerk_issuer,
        clerk_jwks_url=clerk_jwks_url,
        clerk_jwt_key=clerk_jwt_key,
        clerk_authorized_parties=_list(read, "CLERK_AUTHORIZED_PARTIES", ()),
        openai_api_key=_secret(read, "OPENAI_API_KEY"),
        openai_base_url=openai_base_url,
        openai_compat_models=openai_compat_models,
        openai_models=_list(read, "OPENAI_MODELS", Settings.openai_models),
        anthropic_api_key=_secret(read, "ANTHROPIC_API_KEY"),
        anthropic_models=_list(read, "ANTHROPIC_MODELS", Settings.anthropic_models),
        provider_timeout_s=_float(read, "CHAT_PROVIDER_TIMEOUT_S", 60.0, 1.0, 600.0),
        demo_chars_per_s=_float(read, "CHAT_DEMO_CHARS_PER_S", 400.0, 1.0, 1_000_000.0),
        max_reply_tokens=_int(read, "CHAT_MAX_REPLY_TOKENS", 4096, 16, 200_000),
        context_chars=_int(read, "CHAT_CONTEXT_CHARS", 48_000, 1_000, 2_000_000),
        rate_limit_per_minute=_int(read, "CHAT_RATE_LIMIT_PER_MINUTE", 20, 0, 100_000),
    )


def _streamlit_secrets() -> Mapping[str, Any] | None:
    # The one place services/ touches streamlit: st.secrets knows the secrets.toml locations and lets
    # AppTest seed values. A missing secrets file is normal, not an error.
    try:
        import streamlit as st

        return {key: st.secrets[key] for key in st.secrets}
    except Exception:  # noqa: BLE001 - no secrets file, or not running under streamlit
        return None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    return settings_from(os.environ if environ is None else environ, _streamlit_secrets())
