"""Identity: the Principal every service call takes, and AuthError with a reason code.

`TokenVerifier` checks Clerk tokens (JWKS or PEM) and the local demo issuer's tokens the same way;
see DESIGN.md "Identity". Every rejection is an AuthError whose `reason` says what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt import PyJWKClient
from jwt.exceptions import (
    InvalidSubjectError,
    PyJWKClientConnectionError,
    PyJWKClientError,
    PyJWKError,
    PyJWKSetError,
)
from jwt.types import Options

from services.errors import UserError


class AuthError(UserError):
    """A token or principal was rejected. `reason` is a stable code tests and the UI can switch on."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason

    def __repr__(self) -> str:
        return f"AuthError({self.reason!r}, {self.message!r})"


@dataclass(frozen=True)
class Principal:
    """A verified caller. `claims` are the verified token claims. The database never sees them: it gets
    this app's own claims for the caller (services/app_tokens.user_claims: `sub` and the app roles)."""

    user_id: str
    claims: Mapping[str, Any] = field(default_factory=dict)
    expires_at: datetime | None = None
    # Set only by `for_turn`: until when a started chat turn may still write under this identity.
    turn_until: datetime | None = field(default=None, compare=False)

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
        deadline = self.expires_at.timestamp()
        if self.turn_until is not None:
            deadline = max(deadline, self.turn_until.timestamp())
        if deadline <= current:
            raise AuthError("expired", "Your sign-in has expired. Please sign in again.")

    def for_turn(self, seconds: float, now: float | None = None) -> Principal:
        """This principal, checked fresh now, still accepted for `seconds` from now even if its token
        expires sooner: a chat reply that was allowed to start finishes under the identity that started
        it (DESIGN.md "Identity"). Only ChatService hands the result to the turn's own writes; every
        other call keeps the original principal, so the next turn needs a valid sign-in again."""
        current = time.time() if now is None else now
        self.ensure_fresh(current)
        if self.expires_at is None:
            return self
        return replace(self, turn_until=datetime.fromtimestamp(current + seconds, tz=UTC))

    def db_claims(self) -> dict[str, Any]:
        """The verified claims, JSON-serialisable (for logs and tests; the database gets `user_claims`)."""
        out: dict[str, Any] = {}
        for key, value in self.claims.items():
            out[key] = value.isoformat() if isinstance(value, datetime) else value
        return out


def expiry_from_claims(claims: Mapping[str, Any]) -> datetime | None:
    exp = claims.get("exp")
    if isinstance(exp, int | float):
        return datetime.fromtimestamp(exp, tz=UTC)
    return None


# --- token verification ----------------------------------------------------------------------------

# Clerk session tokens are a few hundred bytes to a few KB (they must fit in a cookie); anything far
# larger is refused before any parsing, so a hostile token cannot make us base64-decode megabytes.
MAX_TOKEN_BYTES = 8 * 1024
ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("exp", "iat", "iss", "sub")
# NumericDate claims (RFC 7519 §2: a JSON number, fractions allowed). PyJWT accepts "123" (int() of a
# string) and lets 1e20 overflow datetime later; neither is a time we can check, so both are refused.
TIME_CLAIMS = ("exp", "iat", "nbf")
MAX_NUMERIC_DATE = 2**40  # seconds: about the year 36812; far beyond any real token
# Headers that would let a token name its own key. Keys come only from the configured JWKS or PEM.
KEY_HEADERS = ("jwk", "jku", "x5u", "x5c")

_UNAVAILABLE = "We cannot verify sign-in right now. Please try again in a minute."
_INVALID = "Your sign-in could not be verified. Please sign in again."


def _load_public_key(pem: str) -> RSAPublicKey:
    # Env vars and secrets often carry a PEM with literal "\n" sequences instead of newlines.
    text = pem.strip().replace("\\n", "\n")
    try:
        key = serialization.load_pem_public_key(text.encode())
    except ValueError:
        raise ValueError("public_key_pem is not a PEM-encoded public key") from None
    if not isinstance(key, RSAPublicKey):
        raise ValueError("public_key_pem must be an RSA public key (RS256)")
    return key


def _unverified_header(segment: str) -> dict[str, Any]:
    # Parsed by hand rather than with jwt.get_unverified_header, which already rejects some headers
    # (`crit`) as generic errors; we want each kind of bad header to have its own reason code.
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = json.loads(raw)
    except (ValueError, binascii.Error):
        raise AuthError("malformed", _INVALID) from None
    if not isinstance(header, dict):
        raise AuthError("malformed", _INVALID)
    return header


class _JwksKeys:
    """Keys from a JWKS URL: fetched with PyJWKClient, cached for `lifespan_s`, and refreshed at most
    once per `refresh_cooldown_s` when a token names a kid we do not know (key rotation). The cooldown
    stops tokens with made-up kids from turning us into a JWKS request amplifier."""

    def __init__(self, url: str, *, lifespan_s: float, refresh_cooldown_s: float, timeout_s: float) -> None:
        # cooldown_duration=0: PyJWKClient's own cooldown also counts the first fetch, which would block
        # the refresh a freshly rotated key needs; we apply our own cooldown to forced refreshes only.
        self._client = PyJWKClient(
            url, cache_jwk_set=True, lifespan=lifespan_s, timeout=timeout_s, cooldown_duration=0
        )
        self._refresh_cooldown_s = refresh_cooldown_s
        self._last_forced_refresh: float | None = None
        self._lock = threading.Lock()

    def key_for(self, kid: str) -> Any:
        with self._lock:
            key = self._find(kid, refresh=False)
            if key is not None:
                return key
            now = time.monotonic()
            if self._last_forced_refresh is not None and now - self._last_forced_refresh < self._refresh_cooldown_s:
                raise AuthError("unknown_kid", _INVALID)
            self._last_forced_refresh = now
            key = self._find(kid, refresh=True)
            if key is None:
                raise AuthError("unknown_kid", _INVALID)
            return key

    def _find(self, kid: str, *, refresh: bool) -> Any:
        try:
            keys = self._client.get_signing_keys(refresh=refresh)
        except PyJWKClientConnectionError:
            raise AuthError("jwks_unavailable", _UNAVAILABLE) from None
        except (PyJWKClientError, PyJWKSetError, PyJWKError, ValueError):
            # The endpoint answered with something that is not a usable key set (an HTML error page,
            # an empty set): we cannot verify, which is not the same as the token being bad.
            raise AuthError("jwks_unavailable", _UNAVAILABLE) from None
        for key in keys:
            if key.key_id == kid and key.algorithm_name == ALGORITHM:
                return key.key
        return None


def _check_time_claim_types(claims: Mapping[str, Any]) -> None:
    """Raise AuthError('bad_time_claim') unless each of exp, iat, nbf present is a JSON number in range."""
    for name in TIME_CLAIMS:
        if name not in claims:
            continue  # a missing required claim gets its own reason from PyJWT
        value = claims[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < MAX_NUMERIC_DATE:
            raise AuthError("bad_time_claim", _INVALID)


def _check_times(claims: Mapping[str, Any], now: float, leeway: float) -> None:
    """PyJWT's exp/iat/nbf rules and reason codes, against a given clock (the claims' types are already
    checked by _check_time_claim_types)."""
    if claims["exp"] <= now - leeway:
        raise AuthError("expired", "Your sign-in has expired. Please sign in again.")
    if claims["iat"] > now + leeway:
        raise AuthError("issued_in_future", _INVALID)
    if "nbf" in claims and claims["nbf"] > now + leeway:
        raise AuthError("not_yet_valid", _INVALID)


class TokenVerifier:
    """Checks an RS256 JWT and returns the Principal it names, or raises AuthError with a reason code.

    Keys come from `jwks_url` (cached) or `public_key_pem` (networkless, Clerk's CLERK_JWT_KEY, or the
    local demo issuer's key), never from the token. `exp`, `iat`, `iss` and `sub` are required, `nbf`
    is honoured, the issuer must match exactly, and `azp` must be one of `authorized_parties` when any
    are configured. Tokens carrying an `aud` claim must match `audience` (PyJWT's rule). `exp`, `iat`
    and `nbf` must be JSON numbers between 0 and 2**40 seconds (reason `bad_time_claim`), not strings or
    booleans.
    """

    def __init__(
        self,
        *,
        issuer: str,
        jwks_url: str | None = None,
        public_key_pem: str | None = None,
        authorized_parties: Sequence[str] = (),
        leeway_s: float = 5,
        audience: str | Sequence[str] | None = None,
        max_token_bytes: int = MAX_TOKEN_BYTES,
        jwks_lifespan_s: float = 300,
        jwks_refresh_cooldown_s: float = 30,
        jwks_timeout_s: float = 5,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not issuer:
            raise ValueError("issuer is required")
        if (jwks_url is None) == (public_key_pem is None):
            raise ValueError("give exactly one of jwks_url or public_key_pem")
        if isinstance(authorized_parties, str):
            raise ValueError("authorized_parties must be a list of origins, not one string")
        self.issuer = issuer
        self.authorized_parties = tuple(authorized_parties)
        self.leeway_s = leeway_s
        self.audience = audience
        self.max_token_bytes = max_token_bytes
        # PyJWT reads the wall clock itself; a clock given here (the local issuer's, which tests move)
        # takes over the exp/iat/nbf checks instead.
        self._clock = clock
        self._pem_key = _load_public_key(public_key_pem) if public_key_pem is not None else None
        self._jwks = (
            _JwksKeys(
                jwks_url,
                lifespan_s=jwks_lifespan_s,
                refresh_cooldown_s=jwks_refresh_cooldown_s,
                timeout_s=jwks_timeout_s,
            )
            if jwks_url is not None
            else None
        )

    def verify(self, token: str) -> Principal:
        header = self._check_shape(token)
        key = self._key(header)
        claims = self._decode(token, key)
        self._check_azp(claims)
        return Principal(user_id=claims["sub"], claims=claims, expires_at=expiry_from_claims(claims))

    def _check_shape(self, token: str) -> dict[str, Any]:
        if not isinstance(token, str) or not token:
            raise AuthError("malformed", _INVALID)
        if len(token) > self.max_token_bytes:
            raise AuthError("token_too_large", _INVALID)
        parts = token.split(".")
        if len(parts) != 3:
            raise AuthError("malformed", _INVALID)
        header = _unverified_header(parts[0])
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise AuthError("alg_none", _INVALID)
        if alg != ALGORITHM:
            raise AuthError("alg_not_allowed", _INVALID)
        if not parts[2]:
            raise AuthError("missing_signature", _INVALID)
        if any(name in header for name in KEY_HEADERS):
            raise AuthError("untrusted_key_header", _INVALID)
        # We implement no JWS extensions, so any critical one must be refused (RFC 7515 §4.1.11).
        if "crit" in header:
            raise AuthError("unsupported_crit", _INVALID)
        return header

    def _key(self, header: Mapping[str, Any]) -> Any:
        if self._jwks is None:
            return self._pem_key
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("missing_kid", _INVALID)
        return self._jwks.key_for(kid)

    def _decode(self, token: str, key: Any) -> dict[str, Any]:
        try:
            # Signature first, then the time claims' types, then PyJWT's own checks in its own order.
            _check_time_claim_types(
                jwt.decode(
                    token,
                    key,
                    algorithms=[ALGORITHM],
                    options={
                        "verify_signature": True,
                        "verify_exp": False,
                        "verify_iat": False,
                        "verify_nbf": False,
                        "verify_iss": False,
                        "verify_aud": False,
                        "verify_sub": False,
                        "verify_jti": False,
                    },
                )
            )
            claims = jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                # A list makes PyJWT compare exactly (a bare string once allowed partial matches).
                issuer=[self.issuer],
                audience=self.audience,
                leeway=self.leeway_s,
                options=self._options(),
            )
            if self._clock is not None:
                _check_times(claims, self._clock(), self.leeway_s)
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "Your sign-in has expired. Please sign in again.") from None
        except jwt.ImmatureSignatureError as exc:
            reason = "issued_in_future" if "(iat)" in str(exc) else "not_yet_valid"
            raise AuthError(reason, _INVALID) from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(f"missing_{exc.claim}", _INVALID) from None
        except jwt.InvalidIssuerError:
            raise AuthError("wrong_issuer", _INVALID) from None
        except jwt.InvalidAudienceError:
            raise AuthError("wrong_audience", _INVALID) from None
        except jwt.InvalidSignatureError:
            raise AuthError("bad_signature", _INVALID) from None
        except jwt.InvalidAlgorithmError:
            # Unreachable while _check_shape refuses every alg but RS256: a code of its own lets a test
            # tell this second line of defence from the first, instead of one hiding the other.
            raise AuthError("alg_not_allowed_by_decoder", _INVALID) from None
        except InvalidSubjectError:
            raise AuthError("missing_sub", _INVALID) from None
        except (jwt.InvalidIssuedAtError, jwt.DecodeError):
            raise AuthError("malformed", _INVALID) from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid_token", _INVALID) from None
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub.strip():
            raise AuthError("missing_sub", _INVALID)
        return claims

    def _options(self) -> Options:
        options: Options = {"require": list(REQUIRED_CLAIMS), "verify_signature": True}
        if self._clock is not None:
            options["verify_exp"] = options["verify_iat"] = options["verify_nbf"] = False
        return options

    def _check_azp(self, claims: Mapping[str, Any]) -> None:
        if not self.authorized_parties:
            return
        azp = claims.get("azp")
        if azp is None:
            raise AuthError("missing_azp", _INVALID)
        if azp not in self.authorized_parties:
            raise AuthError("wrong_azp", _INVALID)
