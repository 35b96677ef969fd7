"""The app's own RS256 key and the short-lived tokens it mints for Supabase's Data API (issue 16).

Supabase trusts this app's key through third-party auth (its public half is at /.well-known/jwks.json);
the policies trust only claims in the shapes of services/app_tokens.py. Clerk's (or the local issuer's)
tokens are verified by the app and never forwarded: every request to Supabase carries a token minted here
for the verified principal, or the narrow sign-in / sweeper token for work before anyone is known.

Minting costs an RSA signature (~1 ms); a token is reused for the same claims until shortly before it
expires, so a chat turn's checkpoints do not sign once a second each.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Callable
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from services.app_tokens import APP_ISSUER, DEFAULT_LIFETIME_S, signin_claims, sweeper_claims, user_claims
from services.auth import Principal


class SigningKeyError(ValueError):
    """The configured signing key is unusable; the message says what to set."""


class AppSigner:
    """One RSA private key: signs RS256 tokens with its `kid` in the header and publishes its public JWK.
    The kid is the one services/accounts.py's LocalIssuer derives from the same key, so a deployment that
    uses one key for both publishes one JWK."""

    def __init__(self, private_key: rsa.RSAPrivateKey) -> None:
        if private_key.key_size < 2048:
            raise SigningKeyError("CHAT_SIGNING_KEY must be an RSA key of at least 2048 bits.")
        self._key = private_key
        public = private_key.public_key()
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = hashlib.sha256(der).hexdigest()[:16]
        self.public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()

    @classmethod
    def from_pem(cls, pem: str) -> AppSigner:
        """Read CHAT_SIGNING_KEY: a PEM private key, also when a platform flattened its newlines to `\\n`."""
        text = pem.strip().replace("\\n", "\n")
        try:
            key = serialization.load_pem_private_key(text.encode(), password=None)
        except (ValueError, TypeError):
            raise SigningKeyError(
                "CHAT_SIGNING_KEY is not a readable unencrypted PEM private key (-----BEGIN PRIVATE KEY-----); make "
                "one with: openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise SigningKeyError("CHAT_SIGNING_KEY must be an RSA private key (the tokens are RS256).")
        return cls(key)

    @property
    def private_key(self) -> rsa.RSAPrivateKey:
        return self._key

    def jwk(self) -> dict[str, Any]:
        """The public key as a JWK, ready for a JWKS document or Supabase's custom JWKS field."""
        out: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        # PyJWT adds key_ops ["verify"]; RFC 7517 says not to send it beside `use`, and strict JWKS readers
        # refuse such keys.
        out.pop("key_ops", None)
        out.update(kid=self.kid, alg="RS256", use="sig")
        return out

    def sign(self, claims: dict[str, Any]) -> str:
        return jwt.encode(claims, self._key, algorithm="RS256", headers={"kid": self.kid, "typ": "JWT"})


class TokenMinter:
    """Mints and caches the app's tokens. Thread-safe; holds only tokens keyed by the claims they carry
    (never a Clerk token), so one user's token can never be handed to another."""

    def __init__(
        self,
        signer: AppSigner,
        *,
        issuer: str = APP_ISSUER,
        lifetime_s: float = DEFAULT_LIFETIME_S,
        clock: Callable[[], float] = time.time,
        max_cached: int = 10_000,
    ) -> None:
        if lifetime_s < 30:
            raise ValueError("a minted token must live at least 30 seconds")
        self.signer = signer
        self.issuer = issuer
        self.lifetime_s = lifetime_s
        # Reuse a token until this long before it expires: a request started with it still arrives valid
        # (network, queueing and clock skew between here and Supabase fit well inside).
        self.refresh_before_s = min(60.0, lifetime_s / 5)
        self.clock = clock
        self.max_cached = max_cached
        self.minted = 0  # how many signatures were made (tests and metrics read it)
        self._cache: dict[tuple[Any, ...], tuple[str, float]] = {}
        self._lock = threading.Lock()

    def for_user(self, principal: Principal) -> str:
        """A token for the verified principal's own work. The principal's expiry is checked first (the
        store does so before every unit of work, like the Postgres backend)."""
        principal.ensure_fresh(self.clock())
        key = ("user", principal.user_id, tuple(sorted(principal.roles)))
        return self._cached(key, lambda now: user_claims(principal, self.issuer, now, self.lifetime_s))

    def for_signin(self) -> str:
        """The narrow pre-sign-in token: accepted only by the sign-in functions and the API-key lookup."""
        return self._cached(("signin",), lambda now: signin_claims(self.issuer, now, self.lifetime_s))

    def for_sweeper(self) -> str:
        return self._cached(("sweeper",), lambda now: sweeper_claims(self.issuer, now, self.lifetime_s))

    def forget(self, token: str) -> None:
        """Drop `token` from the cache (the server said it expired: clocks disagree), so the next call
        mints a fresh one."""
        with self._lock:
            for key, (cached, _) in list(self._cache.items()):
                if cached == token:
                    del self._cache[key]

    def _cached(self, key: tuple[Any, ...], make: Callable[[float], dict[str, Any]]) -> str:
        now = self.clock()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now < hit[1] - self.refresh_before_s:
                return hit[0]
        claims = make(now)
        token = self.signer.sign(claims)
        with self._lock:
            self.minted += 1
            if len(self._cache) >= self.max_cached:
                # Expired entries go first; if none, the oldest insertion (dicts keep order).
                for stale in [k for k, (_, exp) in self._cache.items() if exp <= now] or [next(iter(self._cache))]:
                    del self._cache[stale]
            self._cache[key] = (token, float(claims["exp"]))
        return token


def main(argv: list[str]) -> int:
    """`python -m services.token_minter KEY.pem`: print the JWKS of a PEM private key, for Supabase's custom
    JWKS field (docs/supabase.md). Prints only the public half."""
    if len(argv) != 1:
        print("usage: python -m services.token_minter <private-key.pem>")
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        signer = AppSigner.from_pem(handle.read())
    print(json.dumps({"keys": [signer.jwk()]}, indent=2))
    return 0


if __name__ == "__main__":
    import sys

    raise SystemExit(main(sys.argv[1:]))
