"""The details of services/auth.py that bench/mutation.py found untested: the exact messages users see,
Principal's own checks, header parsing, size and type edges, and the audience setting."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest

from services.auth import AuthError, Principal, TokenVerifier
from tests.auth_support import APP_ORIGIN, ISSUER, JwksServer, SigningKey, b64url, claims, raw_token, serve_jwks
from tests.test_auth_verifier import ATTACKS

INVALID = "Your sign-in could not be verified. Please sign in again."
EXPIRED = "Your sign-in has expired. Please sign in again."


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("kid-details")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("kid-details-other")


@pytest.fixture
def verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, authorized_parties=[APP_ORIGIN])


def refused(verifier: TokenVerifier, token: Any) -> AuthError:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value


# The kid cases need a JWKS verifier; tests/test_auth_verifier.py and below cover them.
PEM_ATTACKS = [(make, reason) for make, reason in ATTACKS if reason not in ("unknown_kid", "missing_kid")]


@pytest.mark.parametrize(("make", "reason"), PEM_ATTACKS, ids=[make.__name__.strip("_") for make, _ in PEM_ATTACKS])
def test_every_rejection_tells_the_user_what_to_do(
    verifier: TokenVerifier, key: SigningKey, other_key: SigningKey, make: Callable[..., str], reason: str
) -> None:
    error = refused(verifier, make(key, other_key))
    expected = EXPIRED if reason == "expired" else INVALID
    assert (error.reason, error.message, str(error)) == (reason, expected, expected)


@pytest.mark.parametrize("token", ["", None, 42])
def test_a_missing_or_non_text_token_is_malformed(verifier: TokenVerifier, token: Any) -> None:
    error = refused(verifier, token)
    assert (error.reason, error.message) == ("malformed", INVALID)


@pytest.mark.parametrize(
    "header",
    [
        b64url(b"not json"),
        b64url(b"[1, 2]"),  # JSON, but not an object
        "!!!",  # not base64url
    ],
)
def test_an_unreadable_header_is_malformed(verifier: TokenVerifier, header: str) -> None:
    error = refused(verifier, f"{header}.{b64url(b'{}')}.{b64url(b'sig')}")
    assert (error.reason, error.message) == ("malformed", INVALID)


@pytest.mark.parametrize("extra", ["", "a", "ab", "abc"])  # every length modulo 4 of the header segment
def test_headers_of_any_length_are_read(verifier: TokenVerifier, key: SigningKey, extra: str) -> None:
    token = key.sign(claims(), headers={"x": extra})
    assert verifier.verify(token).user_id == "user_2abc"


def test_a_garbled_payload_is_malformed(verifier: TokenVerifier, key: SigningKey) -> None:
    # Validly signed, so the signature check passes and the payload itself is what fails.
    token = jwt.api_jws.encode(b"not json", key.private, algorithm="RS256", headers={"kid": key.kid})
    error = refused(verifier, token)
    assert (error.reason, error.message) == ("malformed", INVALID)


def test_a_subject_that_is_not_text_is_missing_sub(verifier: TokenVerifier, key: SigningKey) -> None:
    error = refused(verifier, key.sign(claims(sub=12345)))
    assert (error.reason, error.message) == ("missing_sub", INVALID)


def test_a_kid_that_is_not_text_is_missing_kid(key: SigningKey) -> None:
    jwks_verifier = TokenVerifier(issuer=ISSUER, jwks_url="http://127.0.0.1:9/never-fetched.json")
    error = refused(jwks_verifier, raw_token({"alg": "RS256", "kid": 7}, claims(), b"x" * 256))
    assert (error.reason, error.message) == ("missing_kid", INVALID)


def test_a_token_exactly_at_the_size_limit_is_accepted(key: SigningKey) -> None:
    token = key.sign(claims())
    at_limit = TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, max_token_bytes=len(token))
    assert at_limit.verify(token).user_id == "user_2abc"
    below = TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, max_token_bytes=len(token) - 1)
    assert refused(below, token).reason == "token_too_large"


def test_a_configured_audience_is_checked(key: SigningKey) -> None:
    api = TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, audience="chat-api")
    assert api.verify(key.sign(claims(aud="chat-api"))).user_id == "user_2abc"
    assert refused(api, key.sign(claims(aud="other-api"))).reason == "wrong_audience"
    assert api.audience == "chat-api"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"issuer": ""}, "issuer is required"),
        ({"issuer": ISSUER}, "give exactly one of jwks_url or public_key_pem"),
        ({"issuer": ISSUER, "public_key_pem": "not a pem"}, "public_key_pem is not a PEM-encoded public key"),
        (
            {"issuer": ISSUER, "jwks_url": "http://127.0.0.1:9/j.json", "authorized_parties": APP_ORIGIN},
            "authorized_parties must be a list of origins, not one string",
        ),
    ],
)
def test_misconfiguration_says_what_is_wrong(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as caught:
        TokenVerifier(**kwargs)
    assert str(caught.value) == message


def test_a_non_rsa_public_key_is_refused_with_its_reason() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    pem = (
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    with pytest.raises(ValueError) as caught:
        TokenVerifier(issuer=ISSUER, public_key_pem=pem)
    assert str(caught.value) == "public_key_pem must be an RSA public key (RS256)"


def test_a_pem_with_escaped_newlines_is_read(key: SigningKey) -> None:
    escaped = key.public_pem.replace("\n", "\\n")
    assert TokenVerifier(issuer=ISSUER, public_key_pem=escaped).verify(key.sign(claims())).user_id == "user_2abc"


# --- Principal --------------------------------------------------------------------------------------


@pytest.mark.parametrize("user_id", ["", "   ", None, 7])
def test_a_principal_needs_a_user(user_id: Any) -> None:
    with pytest.raises(AuthError) as caught:
        Principal(user_id=user_id)
    assert (caught.value.reason, caught.value.message) == ("missing_sub", "The sign-in token does not name a user.")


def test_a_principal_names_its_user_in_its_claims_whatever_the_claims_say() -> None:
    p = Principal(user_id="user_real", claims={"sub": "user_forged", "role": "service_role"})
    assert p.claims["sub"] == "user_real"
    assert p.claims["role"] == "service_role"  # kept: the database role switch does not read it
    assert Principal(user_id="user_real").claims == {"sub": "user_real", "role": "authenticated"}


def test_db_claims_are_json_ready_and_complete() -> None:
    moment = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    p = Principal(user_id="user_x", claims={"at": moment, "n": 1, "roles": ["reviewer"]})
    assert p.db_claims() == {
        "sub": "user_x",
        "role": "authenticated",
        "at": "2026-01-02T03:04:05+00:00",
        "n": 1,
        "roles": ["reviewer"],
    }


def test_ensure_fresh_refuses_at_and_after_expiry_only() -> None:
    expires = datetime(2026, 1, 1, tzinfo=UTC)
    p = Principal(user_id="user_x", expires_at=expires)
    at = expires.timestamp()
    p.ensure_fresh(now=at - 0.001)
    for now in (at, at + 1):
        with pytest.raises(AuthError) as caught:
            p.ensure_fresh(now=now)
        assert (caught.value.reason, caught.value.message) == ("expired", EXPIRED)
    Principal(user_id="user_x").ensure_fresh(now=at + 10**9)  # no expiry: never stale
    fresh = Principal(user_id="user_x", expires_at=datetime.now(UTC) + timedelta(hours=1))
    fresh.ensure_fresh()  # the clock is read when `now` is not given
    with pytest.raises(AuthError):
        Principal(user_id="user_x", expires_at=datetime.now(UTC) - timedelta(hours=1)).ensure_fresh()


def test_a_verified_principal_carries_the_expiry(verifier: TokenVerifier, key: SigningKey) -> None:
    payload = claims()
    p = verifier.verify(key.sign(payload))
    assert p.expires_at == datetime.fromtimestamp(payload["exp"], tz=UTC)
    assert jwt.get_unverified_header(key.sign(payload))["alg"] == "RS256"


def test_a_claim_of_the_wrong_type_is_an_invalid_token(verifier: TokenVerifier, key: SigningKey) -> None:
    # PyJWT checks `jti` is a string when present: an InvalidTokenError none of the specific codes covers.
    error = refused(verifier, key.sign(claims(jti=12345)))
    assert (error.reason, error.message) == ("invalid_token", INVALID)


def test_jwks_failures_tell_the_user_what_to_do(key: SigningKey, other_key: SigningKey) -> None:
    with serve_jwks(JwksServer(keys=[key.jwk()])) as server:
        jwks_verifier = TokenVerifier(issuer=ISSUER, jwks_url=server.url, jwks_refresh_cooldown_s=3600)
        for _ in range(2):  # the first refresh, then the cooldown
            error = refused(jwks_verifier, other_key.sign(claims()))
            assert (error.reason, error.message) == ("unknown_kid", INVALID)
        server.status = 500
        outage = TokenVerifier(issuer=ISSUER, jwks_url=server.url)
        errors = [refused(outage, key.sign(claims()))]
        server.status, server.body = 200, b"<html>maintenance</html>"  # answers, but not with a key set
        errors.append(refused(TokenVerifier(issuer=ISSUER, jwks_url=server.url), key.sign(claims())))
    unavailable = "We cannot verify sign-in right now. Please try again in a minute."
    assert [(e.reason, e.message) for e in errors] == [("jwks_unavailable", unavailable)] * 2
