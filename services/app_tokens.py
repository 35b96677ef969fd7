"""The claims of this app's own database tokens (issue 16): what the policies in supabase/migrations trust.

Clerk's (or the local issuer's) tokens are verified by the app and never reach the database. Instead the
app hands the database claims of its own making, in one of three narrow shapes:

- `user_claims`: a verified person (`chat_scope = 'user'`, `sub` = their id, reviewer/admin `roles`
  copied from the verified principal). Every policy on user tables accepts only this shape.
- `signin_claims`: work before anyone is signed in (sessions, sign-in throttling, the sign-in audit
  entries, API-key lookup). No `sub`: no policy shows it a row; only the `public.signin_*` functions and
  `public.api_key_owner` accept it.
- `sweeper_claims`: the stale-reply sweep (`public.sweep_stale_replies` only).

The Postgres backend puts these claims in `request.jwt.claims` (as PostgREST does with a verified
token); the Supabase backend signs exactly these claims with the app's RS256 key. The database tells
the app's tokens from Supabase Auth's own (or anyone else's) by `iss`: `chat_private.app_issuer()` in
migration 20261128001700 returns APP_ISSUER, and a test checks the two agree.
"""

from __future__ import annotations

import math
from typing import Any, Final, Literal

from services.auth import Principal

# Fixed and documented rather than configurable: the policies compare against the same literal, and a
# deployment that changed one without the other would lock every user out (or, worse, trust a stranger).
APP_ISSUER: Final = "streamlit-chat"
# Supabase requires `role` in third-party tokens; PostgREST switches to it. `aud` as Supabase Auth sets it.
DB_ROLE: Final = "authenticated"
AUDIENCE: Final = "authenticated"
Scope = Literal["user", "signin", "sweeper"]
SCOPES: Final[tuple[Scope, ...]] = ("user", "signin", "sweeper")
# Default lifetime of a minted token: long enough for one request or one database transaction, short
# enough that a leaked one is soon useless. A chat turn's writes are re-minted per transaction.
DEFAULT_LIFETIME_S: Final = 300
# The app roles the policies read (reviewer: read-only view of every user's history; admin: audit log).
APP_ROLES: Final = ("reviewer", "admin")


def _base(issuer: str, now: float, lifetime: float, scope: Scope) -> dict[str, Any]:
    if not issuer:
        raise ValueError("issuer is required")
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    issued = int(now)
    return {
        "iss": issuer,
        "role": DB_ROLE,
        "aud": AUDIENCE,
        "iat": issued,
        # Rounded up: a token never expires before `now + lifetime`.
        "exp": math.ceil(now + lifetime),
        "chat_scope": scope,
    }


def user_claims(principal: Principal, issuer: str, now: float, lifetime: float = DEFAULT_LIFETIME_S) -> dict[str, Any]:
    """Claims for `principal`'s own database work. Only `sub` and the app roles are carried over from the
    verified token (never its other claims: the database must not trust what it cannot check)."""
    if not isinstance(principal, Principal):
        raise TypeError("user claims need a verified Principal")
    claims = _base(issuer, now, lifetime, "user")
    claims["sub"] = principal.user_id
    # Always a list (the policies' jsonpath unwraps lists); empty for an ordinary user.
    claims["roles"] = [role for role in principal.roles if role in APP_ROLES]
    return claims


def signin_claims(issuer: str, now: float, lifetime: float = DEFAULT_LIFETIME_S) -> dict[str, Any]:
    """Claims for pre-sign-in work: no user, no roles, accepted only by the sign-in functions."""
    return _base(issuer, now, lifetime, "signin")


def sweeper_claims(issuer: str, now: float, lifetime: float = DEFAULT_LIFETIME_S) -> dict[str, Any]:
    """Claims for the stale-reply sweep: no user, accepted only by public.sweep_stale_replies."""
    return _base(issuer, now, lifetime, "sweeper")
