"""Which sign-in the app uses (CHAT_AUTH) and the objects behind it, built once per process.

The start-up rules are pure functions of the settings and the address the server listens on, so they
are tested without a server: `none` is only allowed on localhost, and a server reachable from other
machines refuses to start with a missing or well-known cookie key.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.accounts import (
    AccountStore,
    LocalIssuer,
    is_private_file,
    load_or_create_secret,
    load_or_create_signing_key,
)
from services.auth import Principal, TokenVerifier
from services.clerk_sessions import ClerkSessionRenewer
from services.config import Settings
from services.sessions import Clock, SessionPolicy, SessionService
from services.store.signin import PostgresSigninStore
from services.store.supabase_signin import SupabaseSigninStore
from services.token_minter import AppSigner

LOCAL_ADDRESSES = ("localhost", "127.0.0.1", "::1", "[::1]")
# Values seen in streamlit-authenticator's docs and in example configs; anyone can sign cookies with them.
KNOWN_COOKIE_KEYS = frozenset(
    {
        "some_key",
        "some_signature_key",
        "random_signature_key",
        "abcdef",
        "key",
        "secret",
        "changeme",
        "change-me",
        "replace-me",
        "replace-with-a-long-random-string",
        "a long random string",
    }
)
MIN_COOKIE_KEY_CHARS = 32
# The session cookie (HttpOnly, set by api/auth.py); its value is a random secret the sessions table knows
# only by its HMAC under the cookie key.
COOKIE_NAME = "chat_session"

# The single user of CHAT_AUTH=none: a fixed principal, reviewer so the history page is usable.
LOCAL_USER = Principal(user_id="local-user", claims={"roles": ["reviewer"], "name": "Local user"})


@dataclass(frozen=True)
class Identity:
    mode: str
    verifier: TokenVerifier | None = None
    # clerk only: checks ID tokens from Streamlit's OIDC login (needs CLERK_AUDIENCE).
    oidc_verifier: TokenVerifier | None = None
    accounts: AccountStore | None = None
    # clerk with CLERK_SECRET_KEY: fresh session tokens from Clerk's Backend API (services/clerk_sessions.py).
    clerk_renewer: ClerkSessionRenewer | None = None
    issuer: LocalIssuer | None = None
    cookie_key: str | None = None
    cookie_key_from_settings: bool = False
    signing_key_path: Path | None = None
    test_clock: bool = False
    # The app's own RS256 key (CHAT_SIGNING_KEY, else the one in the data dir): signs local sign-in tokens
    # and the tokens minted for Supabase; /.well-known/jwks.json publishes its public half. Present in
    # CHAT_AUTH=local and whenever the Supabase backend is on (any auth mode), None otherwise.
    app_signer: AppSigner | None = None


def keys_dir(settings: Settings) -> Path:
    return settings.data_dir / "keys"


def app_signer(settings: Settings) -> tuple[AppSigner, Path | None]:
    """The app's signing key and, when it lives in a file of the data dir, that file (its permissions are
    checked before serving other machines). CHAT_SIGNING_KEY wins: replicas must share one key."""
    if settings.signing_key is not None:
        return AppSigner.from_pem(settings.signing_key.reveal()), None
    key_path = keys_dir(settings) / "local-signing-key.pem"
    return AppSigner(load_or_create_signing_key(key_path)), key_path


def build_identity(settings: Settings) -> Identity:
    # The Supabase backend needs the app's key in every auth mode (services/token_minter.py).
    needed = settings.supabase_url is not None or settings.auth_mode == "local"
    signer, signer_path = app_signer(settings) if needed else (None, None)
    if settings.auth_mode == "none":
        return Identity(mode="none", app_signer=signer, signing_key_path=signer_path)
    if settings.auth_mode == "clerk":
        return Identity(
            mode="clerk",
            app_signer=signer,
            signing_key_path=signer_path,
            verifier=_clerk_verifier(settings, authorized_parties=settings.clerk_authorized_parties),
            oidc_verifier=(
                _clerk_verifier(settings, audience=settings.clerk_audience) if settings.clerk_audience else None
            ),
            clerk_renewer=(
                ClerkSessionRenewer(
                    secret_key=settings.clerk_secret_key.reveal(),
                    api_url=settings.clerk_api_url,
                    # The app fetches these tokens itself from Clerk: no browser origin (azp) to check.
                    verifier=_clerk_verifier(settings),
                )
                if settings.clerk_secret_key
                else None
            ),
        )
    assert signer is not None  # built above for CHAT_AUTH=local
    issuer = LocalIssuer(signer.private_key, ttl_s=settings.token_ttl_s, clock=Clock(settings.test_clock_file).now)
    if settings.cookie_key is not None:
        cookie_key, from_settings = settings.cookie_key.reveal(), True
    else:
        cookie_key, from_settings = load_or_create_secret(keys_dir(settings) / "cookie-key"), False
    return Identity(
        mode="local",
        verifier=issuer.verifier,
        accounts=AccountStore(settings.resolved_users_file),
        issuer=issuer,
        cookie_key=cookie_key,
        cookie_key_from_settings=from_settings,
        signing_key_path=signer_path,
        test_clock=settings.test_clock_file is not None,
        app_signer=signer,
    )


def session_service(
    settings: Settings, identity: Identity, conninfo: str | None, *, signin_store: SupabaseSigninStore | None = None
) -> SessionService:
    """Sessions for CHAT_AUTH=local, on the app's database (own small pool), or through the Supabase backend's
    Data API (`signin_store`)."""
    if identity.accounts is None or identity.issuer is None or identity.cookie_key is None:
        raise ValueError("local sign-in is not configured")
    if signin_store is None and conninfo is None:
        raise ValueError("sessions need a database connection or the Supabase backend")
    store = signin_store if signin_store is not None else PostgresSigninStore(str(conninfo))
    problem = store.access_problem()
    if problem:
        store.close()
        raise ValueError(problem)
    return SessionService(
        store,
        identity.accounts,
        identity.issuer,
        clock=Clock(settings.test_clock_file),
        pepper=identity.cookie_key,
        policy=SessionPolicy(lifetime_s=settings.session_days * 86_400, idle_s=settings.session_idle_minutes * 60),
        setup_code_path=keys_dir(settings) / "setup-code",
        setup_code=settings.setup_code.reveal() if settings.setup_code else None,
    )


def signup_allowed(settings: Settings, address: str | None) -> bool:
    """CHAT_ALLOW_SIGNUP when set; otherwise only a server on localhost lets strangers make accounts."""
    return settings.allow_signup if settings.allow_signup is not None else is_local_address(address)


def _clerk_verifier(
    settings: Settings, *, authorized_parties: tuple[str, ...] = (), audience: tuple[str, ...] = ()
) -> TokenVerifier:
    """Session tokens (cookie / Authorization header) carry `azp` = the site's origin and no `aud`;
    ID tokens from st.login carry `aud` = the OAuth client id. Same issuer and keys, different checks."""
    issuer = settings.clerk_issuer or ""
    common: dict[str, Any] = {
        "issuer": issuer,
        "authorized_parties": authorized_parties,
        "audience": list(audience) or None,
    }
    if settings.clerk_jwt_key is not None:
        return TokenVerifier(public_key_pem=settings.clerk_jwt_key.reveal(), **common)
    # settings_from fills clerk_jwks_url from the issuer when no JWKS URL or PEM key is set.
    return TokenVerifier(jwks_url=settings.clerk_jwks_url, **common)


def is_local_address(address: str | None) -> bool:
    """True when Streamlit's `server.address` keeps the app on this machine. Unset is not local: Streamlit
    then listens on every interface (.streamlit/config.toml sets "localhost" for the quick start)."""
    if address is None or address.strip() == "":
        return False
    return address.strip().lower() in LOCAL_ADDRESSES


def _listening(address: str | None) -> str:
    if address is None or not address.strip():
        return "every network interface (server.address is not set)"
    return repr(address)


def none_mode_problem(mode: str, address: str | None) -> str | None:
    if mode == "none" and not is_local_address(address):
        return (
            f"CHAT_AUTH=none gives everyone who can reach this server the same account, so it only runs "
            f"when the server listens on localhost; it listens on {_listening(address)}. Set CHAT_AUTH=local or "
            "clerk, or set server.address to localhost."
        )
    return None


def cookie_key_problem(cookie_key: str | None, from_settings: bool, address: str | None) -> str | None:
    """A server reachable from other machines needs a real CHAT_COOKIE_KEY: the login cookie is signed with
    it, and anyone who knows the key can forge a login as any user."""
    if is_local_address(address):
        return None
    if not from_settings or not cookie_key:
        return (
            "Config 'CHAT_COOKIE_KEY' is missing: this server listens on "
            f"{_listening(address)}, so set CHAT_COOKIE_KEY to a long random string "
            "(python -c \"import secrets; print(secrets.token_urlsafe(32))\")."
        )
    if cookie_key.strip().lower() in KNOWN_COOKIE_KEYS or len(cookie_key) < MIN_COOKIE_KEY_CHARS:
        return (
            "Config 'CHAT_COOKIE_KEY' is a default or too short: this server listens on "
            f"{_listening(address)}, so set CHAT_COOKIE_KEY to a random string of at least {MIN_COOKIE_KEY_CHARS} "
            "characters."
        )
    return None


def startup_problem(identity: Identity, address: str | None) -> str | None:
    """Why this process must not serve sign-ins, or None. Shown instead of the app."""
    problem = none_mode_problem(identity.mode, address)
    if problem:
        return problem
    if identity.mode == "local":
        problem = cookie_key_problem(identity.cookie_key, identity.cookie_key_from_settings, address)
        if problem:
            return problem
    if identity.test_clock and not is_local_address(address):
        return "CHAT_TEST_CLOCK_FILE moves the server's clock for tests: unset it before serving other machines."
    # The key file exists in CHAT_AUTH=local and, in any mode, with the Supabase backend (app_signer).
    if identity.signing_key_path is not None and not is_local_address(address):
        if not is_private_file(identity.signing_key_path):
            return (
                f"The token signing key {identity.signing_key_path} is readable by other users of this machine: "
                "run chmod 600 on it (or delete it to have a new one created) before serving other machines."
            )
    return None
