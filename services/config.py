"""One typed Settings object, read from environment variables with `.streamlit/secrets.toml` as fallback.

Every setting is declared once, on its Settings field (`setting(...)`): the name users set (the env var,
also the key in secrets.toml), its kind, default, range and meaning. `settings_from` reads them all in one
loop, then applies the rules that tie settings together. Missing or contradictory settings raise
`ConfigError` at start-up, naming the variable to set. Secrets are wrapped in `Secret`, whose repr is
masked, so printing or logging a Settings object never leaks a key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal, TypeVar
from urllib.parse import urlsplit

T = TypeVar("T")

MASK = "**********"
AUTH_MODES = ("local", "clerk", "none")
MIN_CURSOR_KEY_CHARS = 16  # what services/store/cursors.py accepts as an HMAC key


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


def redact(text: str, settings: Settings) -> str:
    """Replace every secret value that occurs in `text` by the mask (for error messages and logs)."""
    secrets = [getattr(settings, f.name) for f in fields(settings)]
    secrets += [server.key for server in settings.openai_servers]
    for value in secrets:
        if isinstance(value, Secret) and value.reveal():
            text = text.replace(value.reveal(), MASK)
    return text


Kind = Literal["int", "float", "bool", "list", "secret", "url", "path", "choice", "text", "servers"]

# Model ids are "<provider>/<model>": a compatible server's name is the prefix of its models' ids, so it
# may not be one of the fixed providers', and it stays a plain word that reads well in a URL and a log.
RESERVED_SERVER_NAMES = ("openai", "anthropic", "demo", "compat")
_SERVER_NAME = re.compile(r"[a-z0-9][a-z0-9_.-]{0,31}")
_SERVER_FIELDS = ("name", "url", "key", "key_env", "models")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True)
class CompatServer:
    """One OpenAI-compatible server of CHAT_OPENAI_SERVERS (or OPENAI_BASE_URL, named "compat").
    `models` empty: they are discovered from the server's `GET /v1/models`."""

    name: str
    url: str
    key: Secret | None = None
    models: tuple[str, ...] = ()
    # The variable (env or secrets.toml) that holds the key, resolved by settings_from.
    key_env: str | None = None


@dataclass(frozen=True)
class Declaration:
    """One setting: the variable users set (env var, also the key in secrets.toml) and how it is read."""

    name: str
    kind: Kind
    default: Any
    doc: str
    lo: float | None = None  # numbers: the accepted range, both ends included
    hi: float | None = None
    choices: tuple[str, ...] = ()
    # The default as the README's configuration table prints it, where printing the value would not say it.
    shown: str | None = None
    field_name: str = ""  # the Settings field it fills, taken from the field it is declared on

    @property
    def readme_default(self) -> str:
        if self.shown is not None:
            return self.shown
        value = self.default
        if value is None or value == ():
            return "—"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float):
            return f"{value:g}"
        if isinstance(value, tuple):
            return ",".join(value)
        return str(value)


def setting(
    name: str,
    kind: Kind,
    default: T,
    doc: str,
    *,
    lo: float | None = None,
    hi: float | None = None,
    choices: tuple[str, ...] = (),
    shown: str | None = None,
) -> T:
    """Declare a Settings field as a setting; its default is written here and nowhere else."""
    declaration = Declaration(name, kind, default, doc, lo=lo, hi=hi, choices=choices, shown=shown)
    return field(default=default, metadata={"setting": declaration})


@dataclass(frozen=True)
class Settings:
    """Every field is a setting, declared once below; `SETTINGS` lists the declarations for the reader,
    the README check and the tests. Elsewhere, take a default from here (`Settings.token_ttl_s`)."""

    data_dir: Path = setting(
        "CHAT_DATA_DIR", "path", Path(".data"), "The embedded database, the accounts file and the local keys.",
        shown="./.data",
    )
    database_url: Secret | None = setting(
        "DATABASE_URL", "secret", None, "Any PostgreSQL or Supabase database, as a non-superuser login role.",
        shown="(unset: embedded)",
    )
    database_admin_url: Secret | None = setting(
        "DATABASE_ADMIN_URL", "secret", None, "The role that runs the migrations (it must bypass RLS).",
        shown="DATABASE_URL",
    )
    supabase_url: str | None = setting(
        "SUPABASE_URL", "url", None,
        "Store everything through this Supabase project's Data API (with SUPABASE_ANON_KEY) instead of a database "
        "connection; see docs/supabase.md.",
    )
    supabase_anon_key: Secret | None = setting(
        "SUPABASE_ANON_KEY", "secret", None, "The Supabase project's publishable (anon) key, sent as `apikey`."
    )
    supabase_timeout_s: float = setting(
        "SUPABASE_TIMEOUT_S", "float", 10.0,
        "Longest wait for one Data API request; a Supabase outage fails within it (no retries).", lo=1, hi=120,
    )
    signing_key: Secret | None = setting(
        "CHAT_SIGNING_KEY", "secret", None,
        "The app's RS256 private key (PEM) for the tokens it mints for Supabase and CHAT_AUTH=local; published "
        "at /.well-known/jwks.json.",
        shown="generated in <data dir>/keys/",
    )
    db_pool_max: int = setting("CHAT_DB_POOL_MAX", "int", 10, "Database connections per app process.", lo=1, hi=200)
    max_message_chars: int = setting(
        "CHAT_MAX_MESSAGE_CHARS", "int", 32_000, "Longest message a user may send.", lo=1, hi=1_000_000
    )

    auth_mode: str = setting(
        "CHAT_AUTH", "choice", "local", "Where sign-ins come from: local accounts, Clerk, or one fixed user.",
        choices=AUTH_MODES,
    )
    users_file: Path | None = setting(
        "CHAT_USERS_FILE", "path", None, "Local accounts, in streamlit-authenticator's credentials format.",
        shown="<data dir>/users.yaml",
    )
    # None: on when the server listens on localhost only (services/identity.signup_allowed).
    allow_signup: bool | None = setting(
        "CHAT_ALLOW_SIGNUP", "bool", None, "Whether the sign-in page offers sign-up.", shown="on for localhost only"
    )
    setup_code: Secret | None = setting(
        "CHAT_SETUP_CODE", "secret", None, "The one-time code that creates the first administrator.",
        shown="generated and logged",
    )
    session_days: int = setting(
        "CHAT_SESSION_DAYS", "int", 14, "How long a sign-in lasts on one browser, in days.", lo=1, hi=365
    )
    session_idle_minutes: int = setting(
        "CHAT_SESSION_IDLE_MINUTES", "int", 480, "A session unused this long ends.", lo=5, hi=525_600
    )
    trusted_proxies: tuple[str, ...] = setting(
        "CHAT_TRUSTED_PROXIES", "list", (), "Proxy addresses whose X-Forwarded-For is believed."
    )
    test_clock_file: Path | None = setting(
        "CHAT_TEST_CLOCK_FILE", "path", None, "Tests only: seconds added to the server's clock.",
    )
    cookie_key: Secret | None = setting(
        "CHAT_COOKIE_KEY", "secret", None, "Keys the session-cookie hashes; replicas must share it.",
        shown="generated in <data dir>/keys/",
    )
    cursor_key: Secret | None = setting(
        "CHAT_CURSOR_KEY", "secret", None, "Signs page cursors (History links); replicas must share it.",
        shown="generated in <data dir>/keys/",
    )
    token_ttl_s: int = setting(
        "CHAT_TOKEN_TTL_S", "int", 300, "Lifetime of a sign-in token, in seconds.", lo=30, hi=86_400
    )
    api_keys_enabled: bool = setting(
        "CHAT_API_KEYS", "bool", True, "Whether users may create personal API keys for the HTTP API."
    )
    api_keys_max: int = setting(
        "CHAT_API_KEYS_MAX", "int", 10, "Active (unrevoked, unexpired) API keys a user may hold at once.",
        lo=1, hi=1_000,
    )
    clerk_issuer: str | None = setting(
        "CLERK_ISSUER", "url", None, "The Clerk Frontend API URL (required with CHAT_AUTH=clerk)."
    )
    clerk_jwks_url: str | None = setting(
        "CLERK_JWKS_URL", "url", None, "Where Clerk's public keys are fetched.",
        shown="<issuer>/.well-known/jwks.json",
    )
    clerk_jwt_key: Secret | None = setting(
        "CLERK_JWT_KEY", "secret", None, "Clerk's PEM public key, for verification without the JWKS."
    )
    clerk_authorized_parties: tuple[str, ...] = setting(
        "CLERK_AUTHORIZED_PARTIES", "list", (), "Origins allowed in a session token's `azp`."
    )
    clerk_secret_key: Secret | None = setting(
        "CLERK_SECRET_KEY", "secret", None, "Renews Clerk session tokens through Clerk's Backend API."
    )
    clerk_api_url: str = setting(
        "CLERK_API_URL", "url", "https://api.clerk.com/v1", "Clerk's Backend API (renewing session tokens)."
    )
    # OAuth client id(s) of Streamlit's OIDC login with Clerk: the `aud` of the ID tokens st.login gets.
    clerk_audience: tuple[str, ...] = setting(
        "CLERK_AUDIENCE", "list", (), "The OAuth client id(s) of st.login with Clerk."
    )

    openai_api_key: Secret | None = setting("OPENAI_API_KEY", "secret", None, "Offers OPENAI_MODELS.")
    openai_base_url: str | None = setting(
        "OPENAI_BASE_URL", "url", None, "An OpenAI-compatible server, used instead of OpenAI."
    )
    openai_models: tuple[str, ...] = setting(
        "OPENAI_MODELS", "list", ("gpt-4o-mini", "gpt-4o"), "OpenAI models in the picker."
    )
    openai_compat_models: tuple[str, ...] = setting(
        "OPENAI_COMPAT_MODELS", "list", (), "The models of the OPENAI_BASE_URL server.",
        shown="discovered from the server",
    )
    openai_servers: tuple[CompatServer, ...] = setting(
        "CHAT_OPENAI_SERVERS", "servers", (), "OpenAI-compatible servers, each with a name, URL and optional key."
    )
    models_cache_s: float = setting(
        "CHAT_MODELS_CACHE_S", "float", 300.0, "How long a server's discovered model list is kept.",
        lo=1.0, hi=86_400.0,  # not 0: every model lookup (one per message on the page) would ask the server
    )
    models_timeout_s: float = setting(
        "CHAT_MODELS_TIMEOUT_S", "float", 2.0, "How long model discovery waits for a server.", lo=0.1, hi=60.0
    )
    anthropic_api_key: Secret | None = setting("ANTHROPIC_API_KEY", "secret", None, "Offers ANTHROPIC_MODELS.")
    anthropic_models: tuple[str, ...] = setting(
        "ANTHROPIC_MODELS", "list", ("claude-sonnet-4-5", "claude-haiku-4-5"), "Anthropic models in the picker."
    )
    provider_timeout_s: float = setting(
        "CHAT_PROVIDER_TIMEOUT_S", "float", 60.0, "Seconds a provider may stay silent before the reply fails.",
        lo=1.0, hi=600.0,
    )
    stale_reply_s: int = setting(
        "CHAT_STALE_REPLY_S", "int", 30, "A reply still `streaming` with no heartbeat for this long is finalised"
        " as `interrupted` (its server died).", lo=5, hi=3600,
    )
    demo_chars_per_s: float = setting(
        "CHAT_DEMO_CHARS_PER_S", "float", 400.0, "Streaming pace of the offline demo model.", lo=1.0, hi=1_000_000.0
    )
    max_reply_tokens: int = setting(
        "CHAT_MAX_REPLY_TOKENS", "int", 4096, "Longest reply requested from a provider.", lo=16, hi=200_000
    )
    context_chars: int = setting(
        "CHAT_CONTEXT_CHARS", "int", 48_000, "How much of the conversation is sent as context.",
        lo=1_000, hi=2_000_000,
    )

    file_max_mb: int = setting(
        "CHAT_FILE_MAX_MB", "int", 10, "Largest file a message may carry, in MB.", lo=1, hi=200
    )
    message_files_max_mb: int = setting(
        "CHAT_MESSAGE_FILES_MAX_MB", "int", 20, "Most the files of one message may weigh together, in MB.",
        lo=1, hi=1_000,
    )
    image_models: tuple[str, ...] = setting(
        "CHAT_IMAGE_MODELS", "list", (), "Models that take images besides the known OpenAI and Anthropic ones.",
        shown="(none)",
    )

    default_instructions: str = setting(
        "CHAT_DEFAULT_INSTRUCTIONS", "text", "", "Instructions a new conversation starts with, unless the user "
        "set their own default (Account page).", hi=20_000,
        shown="—",
    )

    feedback_enabled: bool = setting(
        "CHAT_FEEDBACK", "bool", True, "Thumbs up/down and an optional comment on each reply, for History's reviewers."
    )
    feedback_comment_chars: int = setting(
        "CHAT_FEEDBACK_COMMENT_CHARS", "int", 1_000, "Longest feedback comment.", lo=1, hi=4_000
    )

    rate_limit_per_minute: int = setting(
        "CHAT_RATE_LIMIT_PER_MINUTE", "int", 20, "Messages per user per minute; 0 turns the limit off.",
        lo=0, hi=100_000,
    )

    api_max_streams: int = setting(
        "CHAT_API_MAX_STREAMS", "int", 64, "Replies the HTTP API streams at once; more are refused with 503.",
        lo=1, hi=10_000,
    )
    api_max_body_bytes: int = setting(
        "CHAT_API_MAX_BODY_BYTES", "int", 2_097_152, "Largest HTTP API request body; larger ones get 413.",
        lo=1_024, hi=67_108_864,
    )
    api_cors_origins: tuple[str, ...] = setting(
        "CHAT_API_CORS_ORIGINS", "list", (), "Browser origins allowed to call /api/* from other sites.",
        shown="(none: CORS off)",
    )
    metrics: str = setting(
        "CHAT_METRICS", "choice", "off", "Serve Prometheus metrics at /api/metrics.", choices=("off", "on")
    )
    metrics_token: Secret | None = setting(
        "CHAT_METRICS_TOKEN", "secret", None, "Bearer token a scraper must send for /api/metrics.",
        shown="(unset: no token asked)",
    )
    log_format: str = setting(
        "CHAT_LOG_FORMAT", "choice", "text", "The app's log lines: plain text or one JSON object per line.",
        choices=("text", "json"),
    )
    log_content: bool = setting(
        "CHAT_LOG_CONTENT", "bool", False, "Log what users typed and the replies (never do this in production)."
    )
    sentry_dsn: Secret | None = setting(
        "SENTRY_DSN", "secret", None, "Send errors to Sentry (scrubbed of message text and tokens)."
    )

    @property
    def resolved_users_file(self) -> Path:
        return self.users_file or self.data_dir / "users.yaml"


SETTINGS: tuple[Declaration, ...] = tuple(replace(f.metadata["setting"], field_name=f.name) for f in fields(Settings))
SETTING_NAMES: dict[str, Declaration] = {d.name: d for d in SETTINGS}

Reader = Callable[[str], str | None]


def _plain_text(raw: Any) -> str:
    """A secrets.toml value as a setting's text: tables and arrays (CHAT_OPENAI_SERVERS written as TOML)
    become the JSON they stand for; other values their str()."""

    def plain(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return json.dumps(plain(raw)) if isinstance(raw, Mapping | list | tuple) else str(raw)


def _reader(environ: Mapping[str, str], secrets: Mapping[str, Any] | None) -> Reader:
    def read(name: str) -> str | None:
        value = environ.get(name)
        if value is None and secrets is not None:
            raw = secrets.get(name)
            value = None if raw is None else raw if isinstance(raw, str) else _plain_text(raw)
        if value is not None and value.strip() == "":
            return None
        return value

    return read


def _check_range(d: Declaration, value: float) -> None:
    # NaN fails every comparison, so it is refused here too.
    if d.lo is not None and d.hi is not None and not d.lo <= value <= d.hi:
        raise ConfigError(f"Config '{d.name}' must be between {d.lo} and {d.hi} (got {value}).")


def _int(d: Declaration, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"Config '{d.name}' must be a whole number (got {raw!r}).") from None
    _check_range(d, value)
    return value


def _float(d: Declaration, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"Config '{d.name}' must be a number (got {raw!r}).") from None
    _check_range(d, value)
    return value


def _bool(d: Declaration, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"Config '{d.name}' must be true or false (got {raw!r}).")


def _list(d: Declaration, raw: str) -> tuple[str, ...]:
    items = tuple(part.strip() for part in raw.split(",") if part.strip())
    if not items:
        raise ConfigError(f"Config '{d.name}' must list at least one value, separated by commas.")
    return items


_HTTP_URL = re.compile(r"https?://[^\s/?#]+(?:[/?#]\S*)?")


def _url(d: Declaration, raw: str) -> str:
    value = raw.strip()
    problem = _HTTP_URL.fullmatch(value) is None
    if not problem:
        try:
            parts = urlsplit(value)
            problem = not parts.hostname or parts.port == 0
        except ValueError:  # a port that is not a number, an unclosed [IPv6 bracket
            problem = True
    if problem:
        raise ConfigError(f"Config '{d.name}' must be an http(s) URL (got {value!r}).")
    return value.rstrip("/")


def _server(d: Declaration, i: int, entry: object) -> CompatServer:
    where = f"Config '{d.name}' entry {i + 1}"
    if not isinstance(entry, dict):
        raise ConfigError(f'{where} must be an object like {{"name": "local", "url": "http://localhost:11434/v1"}}.')
    unknown = sorted(set(entry) - set(_SERVER_FIELDS))
    if unknown:
        raise ConfigError(f"{where} has unknown field(s) {', '.join(unknown)}; allowed: {', '.join(_SERVER_FIELDS)}.")
    name, url = entry.get("name"), entry.get("url")
    if not isinstance(name, str) or _SERVER_NAME.fullmatch(name) is None:
        raise ConfigError(
            f"{where} needs a \"name\": 1-32 lowercase letters, digits, '.', '_' or '-' (got {name!r}); "
            "it prefixes the ids of the server's models."
        )
    if name in RESERVED_SERVER_NAMES:
        raise ConfigError(f"{where}: the name {name!r} is taken; reserved: {', '.join(RESERVED_SERVER_NAMES)}.")
    if not isinstance(url, str):
        raise ConfigError(f'{where} ({name}) needs a "url", such as http://localhost:11434/v1.')
    url = _url(Declaration(f"{d.name}' entry '{name}", "url", None, ""), url)
    key, key_env = entry.get("key"), entry.get("key_env")
    if key is not None and (not isinstance(key, str) or not key.strip()):
        raise ConfigError(f'{where} ({name}): "key" must be a non-empty string.')
    if key is not None and key_env is not None:
        raise ConfigError(f'{where} ({name}): give "key" or "key_env", not both.')
    if key_env is not None and (not isinstance(key_env, str) or _VARIABLE.fullmatch(key_env) is None):
        raise ConfigError(f'{where} ({name}): "key_env" must name a variable, such as GROQ_API_KEY.')
    models = entry.get("models", [])
    if isinstance(models, str):
        models = models.split(",")
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise ConfigError(f'{where} ({name}): "models" must be a list of model names (or absent: discovered).')
    return CompatServer(
        name, url, Secret(key.strip()) if key else None, tuple(m.strip() for m in models), key_env=key_env
    )


def _servers(d: Declaration, raw: str) -> tuple[CompatServer, ...]:
    try:
        entries = json.loads(raw)
    except ValueError:
        # Never echo the value: it may hold keys.
        raise ConfigError(
            f"Config '{d.name}' must be a JSON list, such as "
            '[{"name": "local", "url": "http://localhost:11434/v1"}] (it is not valid JSON).'
        ) from None
    if isinstance(entries, dict):
        entries = [entries]
    if not isinstance(entries, list):
        raise ConfigError(f"Config '{d.name}' must be a JSON list of servers.")
    servers = tuple(_server(d, i, entry) for i, entry in enumerate(entries))
    names = [s.name for s in servers]
    if dupes := sorted({n for n in names if names.count(n) > 1}):
        raise ConfigError(f"Config '{d.name}' names a server twice: {', '.join(dupes)}.")
    return servers


def _choice(d: Declaration, raw: str) -> str:
    value = raw.strip().lower()
    if value not in d.choices:
        raise ConfigError(f"Config '{d.name}' must be one of {', '.join(d.choices)} (got {value!r}).")
    return value


def _text(d: Declaration, raw: str) -> str:
    value = raw.strip()
    if "\x00" in value or (d.hi is not None and len(value) > d.hi):
        raise ConfigError(f"Config '{d.name}' must be text of at most {d.hi:,.0f} characters without NUL bytes.")
    return value


_PARSERS: dict[Kind, Callable[[Declaration, str], Any]] = {
    "text": _text,
    "int": _int,
    "float": _float,
    "bool": _bool,
    "list": _list,
    "secret": lambda d, raw: Secret(raw.strip()),
    "url": _url,
    "path": lambda d, raw: Path(raw),
    "choice": _choice,
    "servers": _servers,
}

_POSTGRES_URL = re.compile(r"^postgres(ql)?://")


def settings_from(environ: Mapping[str, str], secrets: Mapping[str, Any] | None = None) -> Settings:
    """Build Settings from an environment mapping, falling back to a secrets mapping. Pure: no I/O."""
    read = _reader(environ, secrets)
    values: dict[str, Any] = {}
    for d in SETTINGS:
        raw = read(d.name)
        values[d.field_name] = d.default if raw is None else _PARSERS[d.kind](d, raw)
    s = Settings(**values)

    # Rules that tie settings together.
    if s.auth_mode == "clerk":
        if s.clerk_issuer is None:
            raise ConfigError(
                "Config 'CLERK_ISSUER' is missing: with CHAT_AUTH=clerk set it to your Clerk Frontend API URL "
                "(https://<your-app>.clerk.accounts.dev)."
            )
        if s.clerk_jwks_url is None and s.clerk_jwt_key is None:
            s = replace(s, clerk_jwks_url=f"{s.clerk_issuer}/.well-known/jwks.json")

    if s.database_url is not None and not _POSTGRES_URL.match(s.database_url.reveal()):
        raise ConfigError("Config 'DATABASE_URL' must be a postgresql:// URL.")
    if s.database_admin_url is not None and s.database_url is None:
        raise ConfigError("Config 'DATABASE_ADMIN_URL' is set but 'DATABASE_URL' is not: set both, or neither.")
    if s.database_admin_url is not None and not _POSTGRES_URL.match(s.database_admin_url.reveal()):
        raise ConfigError("Config 'DATABASE_ADMIN_URL' must be a postgresql:// URL.")

    if (s.supabase_url is None) != (s.supabase_anon_key is None):
        missing = "SUPABASE_ANON_KEY" if s.supabase_anon_key is None else "SUPABASE_URL"
        raise ConfigError(
            f"Config '{missing}' is missing: the Supabase backend needs both SUPABASE_URL (https://<ref>.supabase.co) "
            "and SUPABASE_ANON_KEY (the project's publishable key)."
        )
    if s.supabase_url is not None and s.database_url is not None:
        raise ConfigError(
            "Config 'SUPABASE_URL' and 'DATABASE_URL' are both set: use one store, the Data API (SUPABASE_URL) or a "
            "database connection (DATABASE_URL)."
        )

    if s.metrics_token is not None and s.metrics == "off":
        raise ConfigError("Config 'CHAT_METRICS_TOKEN' is set but metrics are off: set CHAT_METRICS=on as well.")
    if any(server.key_env for server in s.openai_servers):
        s = replace(s, openai_servers=tuple(_with_key(server, read) for server in s.openai_servers))
    if s.cursor_key is not None and len(s.cursor_key.reveal()) < MIN_CURSOR_KEY_CHARS:
        raise ConfigError(
            f"Config 'CHAT_CURSOR_KEY' is too short: use a random string of at least {MIN_CURSOR_KEY_CHARS} "
            "characters (python -c \"import secrets; print(secrets.token_urlsafe(32))\")."
        )
    return s


def _with_key(server: CompatServer, read: Reader) -> CompatServer:
    if server.key_env is None:
        return server
    key = read(server.key_env)
    if key is None:
        raise ConfigError(
            f"Config '{server.key_env}' is missing: CHAT_OPENAI_SERVERS server '{server.name}' takes its key from it."
        )
    return replace(server, key=Secret(key.strip()))


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
