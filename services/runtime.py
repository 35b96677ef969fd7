"""Builds the per-process services once (app.py caches the result with st.cache_resource).

Nothing here holds per-user state: every call takes the caller's Principal.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from services.accounts import AccountError
from services.chat import ChatService
from services.config import Settings, redact
from services.identity import Identity, build_identity
from services.providers.catalogue import Catalogue, build_catalogue
from services.ratelimit import RateLimiter
from services.store import MessageStore, embedded
from services.store.migrate import migrate
from services.store.postgres import PostgresStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Services:
    settings: Settings
    store: MessageStore
    chat: ChatService
    catalogue: Catalogue
    # Sign-in objects for CHAT_AUTH (verifier, local accounts and issuer); see services/identity.py.
    identity: Identity | None = None


def connect_store(settings: Settings) -> tuple[PostgresStore, str]:
    """Start or reach the database, apply pending migrations, and open the app's connection pool."""
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
        store = PostgresStore(app_url, max_message_chars=settings.max_message_chars, pool_max=settings.db_pool_max)
        return store, app_url
    except Exception as exc:
        # Connection errors can quote the DSN; never let a password reach a log or the page.
        raise RuntimeError(f"Could not start the database: {redact(str(exc), settings)}") from None


def connect_identity(settings: Settings) -> Identity:
    try:
        return build_identity(settings)
    except (AccountError, OSError, ValueError) as exc:
        raise RuntimeError(f"Could not set up sign-in: {exc}") from None


def build_chat(settings: Settings, store: MessageStore, app_url: str | None) -> tuple[ChatService, Catalogue]:
    catalogue = build_catalogue(settings)
    limiter = RateLimiter(app_url, settings.rate_limit_per_minute) if settings.rate_limit_per_minute else None
    chat = ChatService(store, catalogue, limiter, settings=settings)
    return chat, catalogue


def build_services(settings: Settings) -> Services:
    identity = connect_identity(settings)
    store, app_url = connect_store(settings)
    chat, catalogue = build_chat(settings, store, app_url)
    return Services(settings=settings, store=store, chat=chat, catalogue=catalogue, identity=identity)
