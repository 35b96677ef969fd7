"""Identity: the Principal every service call takes, and AuthError with a reason code.

The token verifier (Clerk JWKS/PEM, local issuer) builds on these types; see DESIGN.md "Identity".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any


class AuthError(Exception):
    """A token or principal was rejected. `reason` is a stable code tests and the UI can switch on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"AuthError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class Principal:
    """A verified caller. `claims` are the verified token claims; they become `request.jwt.claims` in the
    database, where row-level security reads `sub` (and roles) from them."""

    user_id: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.user_id, str) or not self.user_id.strip():
            raise AuthError("missing_sub", "The sign-in token does not name a user.")
        claims = dict(self.claims)
        claims["sub"] = self.user_id
        # Supabase expects third-party tokens to say "authenticated"; our policies are `to authenticated`.
        claims.setdefault("role", "authenticated")
        object.__setattr__(self, "claims", MappingProxyType(claims))

    @property
    def roles(self) -> tuple[str, ...]:
        """App roles from the claims: local accounts put them in `roles`; Clerk in `metadata.roles`
        (public metadata exposed through the session token template)."""
        found: list[str] = []
        for source in (self.claims.get("roles"), (self.claims.get("metadata") or {}).get("roles")):
            if isinstance(source, str):
                found.append(source)
            elif isinstance(source, list | tuple):
                found.extend(str(r) for r in source)
        return tuple(dict.fromkeys(found))

    @property
    def is_reviewer(self) -> bool:
        return "reviewer" in self.roles

    def ensure_fresh(self, now: float | None = None) -> None:
        """Raise AuthError('expired') when the token behind this principal has expired."""
        if self.expires_at is None:
            return
        current = time.time() if now is None else now
        if self.expires_at.timestamp() <= current:
            raise AuthError("expired", "Your sign-in has expired. Please sign in again.")

    def db_claims(self) -> dict[str, Any]:
        """The claims handed to Postgres as `request.jwt.claims` (JSON-serialisable)."""
        out: dict[str, Any] = {}
        for key, value in self.claims.items():
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


def expiry_from_claims(claims: Mapping[str, Any]) -> datetime | None:
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        return datetime.fromtimestamp(exp, tz=UTC)
    return None
