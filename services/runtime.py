"""The per-process services: built once, on first use, and shared by every page run and HTTP route.

Why a module-level singleton and not `st.cache_resource`: `streamlit run app.py` imports app.py as a module
for its `st.App` and also runs it as a script, and `st.cache_resource` keys on the function's module, so a
cache in app.py would build two sets of services (two pools, two embedded-Postgres starts on one data
directory). This module is imported once per process whoever asks. Nothing here holds per-user state:
every call takes the caller's Principal.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from services import error_tracking, logs
from services.accounts import AccountError, load_or_create_secret
from services.api_keys import ApiKeyService
from services.chat import ChatService
from services.client_chats import ClientChats
from services.config import ConfigError, Settings, load_settings, redact
from services.errors import UserError
from services.feedback import FeedbackService
from services.history import HistoryService
from services.identity import Identity, build_identity, keys_dir, session_service
from services.metrics import Metrics, process_metrics
from services.providers.catalogue import Catalogue, build_catalogue
from services.ratelimit import RateLimiter
from services.sessions import SessionService
from services.store import Store, embedded
from services.store.migrate import migrate
from services.store.postgres import PostgresStore
from services.store.signin import PostgresSigninStore
from services.store.supabase import SupabaseStore
from services.store.supabase_signin import SupabaseSigninStore
from services.sweeper import Sweeper
from services.token_minter import TokenMinter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: Store
    chat: ChatService
    history: HistoryService
    catalogue: Catalogue
    # Sign-in objects for CHAT_AUTH (verifier, local accounts and issuer); see services/identity.py.
    identity: Identity
    # CHAT_AUTH=local only: sessions, sign-in throttling, account and admin actions (services/sessions.py).
    sessions: SessionService | None = None
    # The HTTP API's map from an AI SDK client's chat id to a conversation (services/client_chats.py).
    client_chats: ClientChats | None = None
    # Personal API keys (CHAT_API_KEYS): the Account page manages them, the HTTP API authenticates with them.
    api_keys: ApiKeyService | None = None
    # Finalises replies left `streaming` by a server that died (services/sweeper.py).
    sweeper: Sweeper | None = None
    # Thumbs and comments on replies (CHAT_FEEDBACK); the chat page writes them, History shows them.
    feedback: FeedbackService | None = None

    def close(self) -> None:
        if self.sweeper is not None:
            self.sweeper.stop()
        if self.sessions is not None:
            self.sessions.store.close()
        self.store.close()


class StartupError(UserError):
    """The services could not be built; the message says what to do and carries no secret."""


def cursor_key(settings: Settings) -> str:
    """The key that signs page cursors: CHAT_CURSOR_KEY (shared by replicas), else one kept beside the other
    local keys, created on first start."""
    if settings.cursor_key is not None:
        return settings.cursor_key.reveal()
    return load_or_create_secret(keys_dir(settings) / "cursor-key")


def connect_store(settings: Settings, identity: Identity | None = None) -> PostgresStore | SupabaseStore:
    """The Supabase Data API when SUPABASE_URL is set (the migrations are pushed with the Supabase CLI,
    docs/supabase.md); otherwise start or reach the database, apply pending migrations, and open the app's
    one connection pool."""
    if settings.supabase_url is not None and settings.supabase_anon_key is not None:
        if identity is None or identity.app_signer is None:
            raise StartupError("The Supabase backend needs the app's signing key (CHAT_SIGNING_KEY).")
        return SupabaseStore(
            settings.supabase_url,
            settings.supabase_anon_key.reveal(),
            TokenMinter(identity.app_signer),
            timeout_s=settings.supabase_timeout_s,
            max_message_chars=settings.max_message_chars,
            cursor_key=cursor_key(settings),
        )
    try:
        if settings.database_url is None:
            db = embedded.start(settings.data_dir)
            admin_url, app_url = db.admin_url, db.app_url
        else:
            app_url = settings.database_url.reveal()
            # Migrations may need more rights than the app's login role has (DATABASE_ADMIN_URL).
            admin_url = (settings.database_admin_url or settings.database_url).reveal()
        applied = migrate(admin_url)
        if applied:
            log.info("applied %d migration(s): %s", len(applied), ", ".join(applied))
        return PostgresStore(
            app_url,
            max_message_chars=settings.max_message_chars,
            pool_max=settings.db_pool_max,
            cursor_key=cursor_key(settings),
        )
    except Exception as exc:
        # Connection errors can quote the DSN; never let a password reach a log or the page.
        raise StartupError(f"Could not start the database: {redact(str(exc), settings)}") from None


def connect_identity(settings: Settings) -> Identity:
    try:
        return build_identity(settings)
    except (AccountError, OSError, ValueError) as exc:
        # ValueError includes SigningKeyError (CHAT_SIGNING_KEY unreadable); its message names the setting.
        raise StartupError(f"Could not set up sign-in: {exc}") from None


def build_services(settings: Settings, metrics: Metrics | None = None) -> Services:
    """`metrics`: where the services report (default: this process's, which GET /api/metrics serves)."""
    metrics = metrics or process_metrics()
    identity = connect_identity(settings)
    store = connect_store(settings, identity)
    if isinstance(store, PostgresStore):  # the Data API backend has no pool of its own to watch
        metrics.watch_pool("chat", store.pool_stats)
    catalogue = build_catalogue(settings)
    limiter = RateLimiter(store, settings.rate_limit_per_minute, on_refused=metrics.refused)
    chat = ChatService(store, catalogue, limiter, settings=settings, observer=metrics)
    history = HistoryService(store)
    feedback = FeedbackService(
        store, comment_chars=settings.feedback_comment_chars, enabled=settings.feedback_enabled
    )
    sessions = None
    if identity.mode == "local":
        try:
            if isinstance(store, PostgresStore):
                sessions = session_service(settings, identity, store.conninfo)
            else:
                sessions = session_service(settings, identity, None, signin_store=SupabaseSigninStore(store))
        except Exception as exc:
            store.close()
            raise StartupError(f"Could not set up sign-in sessions: {redact(str(exc), settings)}") from None
        sessions.announce_setup_code()
        if isinstance(sessions.store, PostgresSigninStore):
            metrics.watch_pool("signin", sessions.store.pool_stats)
    api_keys = None
    # CHAT_AUTH=none has no keys: the API answers every caller on this machine as the one local user and
    # ignores bearers (api/credentials.py), so a key would do nothing there.
    if settings.api_keys_enabled and identity.mode != "none":
        problem = store.api_key_access_problem()
        if problem:
            if sessions is not None:
                sessions.store.close()
            store.close()
            raise StartupError(problem)
        api_keys = ApiKeyService(
            store,
            max_live=settings.api_keys_max,
            principal_ttl_s=settings.token_ttl_s,
            accounts=identity.accounts,
        )
    sweeper = Sweeper(store, settings.stale_reply_s).start()
    log.info("services built (auth %s, %d models)", settings.auth_mode, len(catalogue.ids))
    return Services(
        settings=settings,
        store=store,
        chat=chat,
        history=history,
        catalogue=catalogue,
        identity=identity,
        sessions=sessions,
        client_chats=ClientChats(store),
        api_keys=api_keys,
        sweeper=sweeper,
        feedback=feedback,
    )


def configure_logging() -> None:
    """Send this app's INFO logs (migrations applied, database started, services built, each reply) to
    stderr beside Streamlit's own, in CHAT_LOG_FORMAT, and start error tracking when SENTRY_DSN is set.
    app.py runs it on every script run: it reads the settings once per process. Bad settings are left for
    the services to report (on the page, in plain words); logging keeps its defaults until they are fixed."""
    global _logging_configured
    if _logging_configured:
        return
    try:
        settings = load_settings()
    except ConfigError:
        logs.configure()
        return
    logs.configure(settings.log_format)
    error_tracking.init(settings)
    _logging_configured = True


_logging_configured = False


_lock = threading.Lock()
_shared: Services | None = None


def shared_services() -> Services:
    """The process's Services, built from the environment (and secrets.toml) on first use. Raises
    ConfigError or StartupError; a failed build is retried on the next call."""
    global _shared
    with _lock:
        if _shared is None:
            _shared = build_services(load_settings())
        return _shared


def is_started() -> bool:
    return _shared is not None


def reset_shared_services() -> None:
    """Close and forget the process's Services, so the next use reads the settings again (tests switch
    environments with this; the app never calls it)."""
    global _shared
    with _lock:
        if _shared is not None:
            _shared.close()
        _shared = None
