"""Personal API keys: what the Account page calls to create, list and revoke them, and what the HTTP API
calls to turn a presented key into a Principal.

A key is `sk-chat-` followed by 32 random bytes (urlsafe base64). Its owner sees it once, when it is made;
the database keeps only its SHA-256. A fast hash is right for a 256-bit random secret: there is nothing to
guess, so bcrypt or a pepper would only slow every request (and a pepper would tie the keys to a local
file that Clerk deployments do not have).

A key acts for its owner with none of the owner's roles: no reviewer reading of other people's history and
no administration, whatever the account holds. A key is a long-lived bearer secret that ends up in scripts,
CI variables and shell histories; if one leaks, the damage stays the owner's own conversations. Roles also
change after a key is made, and a key that carried them would need re-checking against the role source on
every call. Someone who needs reviewer powers signs in. For the same reason a key cannot create more keys
(a leaked key could otherwise outlive its own revocation through a key it made); it can list and revoke.

A refused key always gets the same message, so a caller learns nothing about why; the reason code (and
the log) tells malformed, unknown, revoked, expired and switched-off accounts apart.
"""

from __future__ import annotations

import builtins
import hashlib
import logging
import re
import secrets
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from services.accounts import AccountStore
from services.auth import AuthError, Principal
from services.store.protocols import ApiKeyStore
from services.store.types import ApiKey, InvalidInput

log = logging.getLogger(__name__)

KEY_PREFIX = "sk-chat-"
SECRET_BYTES = 32
# token_urlsafe(32) is 43 characters of [A-Za-z0-9_-]; anything else was never made here.
_SECRET_PATTERN = re.compile(r"sk-chat-[A-Za-z0-9_-]{43}")
# What the key list shows of each key: the fixed prefix and 6 random characters (36 bits, of 256).
SHOWN_CHARS = len(KEY_PREFIX) + 6
MAX_EXPIRY_DAYS = 3650
INVALID_KEY = "Invalid or revoked API key."
AUTH_METHOD = "api_key"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def is_api_key(token: str) -> bool:
    """Whether a bearer token claims to be one of our keys (the API sends those here, JWTs elsewhere)."""
    return token.startswith(KEY_PREFIX)


class ApiKeyService:
    """Create, list and revoke a user's keys; authenticate a presented key."""

    def __init__(
        self,
        store: ApiKeyStore,
        *,
        max_live: int,
        principal_ttl_s: int,
        accounts: AccountStore | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.max_live = max_live
        self.principal_ttl_s = principal_ttl_s
        # Local accounts only: a switched-off or deleted account's keys stop working (Clerk manages its own).
        self.accounts = accounts
        self.clock = clock

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), tz=UTC)

    # --- the owner ----------------------------------------------------------------------------------

    def create(self, principal: Principal, name: str, expires_in_days: int | None = None) -> tuple[ApiKey, str]:
        """A new key for the principal and its secret, which is shown once and is not kept anywhere."""
        if is_key_principal(principal):
            raise AuthError("api_key_cannot_create", "An API key cannot create API keys. Sign in to create one.")
        expires_at = None
        if expires_in_days is not None:
            if isinstance(expires_in_days, bool) or not isinstance(expires_in_days, int):
                raise InvalidInput("The expiry must be a whole number of days.")
            if not 1 <= expires_in_days <= MAX_EXPIRY_DAYS:
                raise InvalidInput(f"A key can expire after 1 to {MAX_EXPIRY_DAYS} days.")
            expires_at = self.now() + timedelta(days=expires_in_days)
        secret = KEY_PREFIX + secrets.token_urlsafe(SECRET_BYTES)
        key = self.store.create_api_key(
            principal,
            name=name,
            prefix=secret[:SHOWN_CHARS],
            secret_hash=hash_secret(secret),
            expires_at=expires_at,
            max_live=self.max_live,
        )
        log.info("api key created: %s", key.id)
        return key, secret

    def list(self, principal: Principal) -> builtins.list[ApiKey]:
        return self.store.list_api_keys(principal)

    def revoke(self, principal: Principal, key_id: uuid.UUID | str) -> ApiKey:
        key = self.store.revoke_api_key(principal, key_id)
        log.info("api key revoked: %s", key.id)
        return key

    # --- a client presenting a key --------------------------------------------------------------------

    def authenticate(self, secret: str) -> Principal:
        """The owner of this live key, as a short-lived Principal without roles; AuthError otherwise (its
        message is the same for every refusal, its `reason` says which)."""
        if not isinstance(secret, str) or _SECRET_PATTERN.fullmatch(secret) is None:
            raise _refused("api_key_malformed")
        match = self.store.find_api_key(hash_secret(secret))
        if match is None:
            raise _refused("api_key_unknown")
        if match.state != "live" or match.user_id is None or match.key_id is None:
            raise _refused(f"api_key_{match.state}", secret[:SHOWN_CHARS])
        if self.accounts is not None:
            account = self.accounts.by_id(match.user_id)
            if account is None:
                raise _refused("api_key_account_gone", secret[:SHOWN_CHARS])
            if account.disabled:
                raise _refused("api_key_account_disabled", secret[:SHOWN_CHARS])
        issued = int(self.clock())
        expires = issued + self.principal_ttl_s
        return Principal(
            user_id=match.user_id,
            claims={"auth_method": AUTH_METHOD, "key_id": str(match.key_id), "iat": issued, "exp": expires},
            expires_at=datetime.fromtimestamp(expires, tz=UTC),
        )


def is_key_principal(principal: Principal) -> bool:
    return principal.claims.get("auth_method") == AUTH_METHOD


def _refused(reason: str, shown: str | None = None) -> AuthError:
    # The shown prefix identifies the key to its owner in the log; it is useless for guessing the rest.
    log.info("api key refused: %s%s", reason, f" ({shown}…)" if shown else "")
    return AuthError(reason, INVALID_KEY)
