"""RS256 only: tokens validly signed with the same RSA key under another algorithm are refused, by the
header check and, separately, by the decoder's allow-list (each with its own reason code, so one
cannot hide a regression in the other)."""

from __future__ import annotations

from collections.abc import Iterator

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.auth import AuthError, TokenVerifier
from tests.auth_support import APP_ORIGIN, ISSUER, JwksServer, SigningKey, claims, serve_jwks

RSA_ALGORITHMS = ["RS384", "RS512", "PS256", "PS384", "PS512"]


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("kid-alg")


@pytest.fixture
def jwks_verifier(key: SigningKey) -> Iterator[TokenVerifier]:
    with serve_jwks(JwksServer(keys=[key.jwk()])) as server:
        yield TokenVerifier(issuer=ISSUER, jwks_url=server.url, authorized_parties=[APP_ORIGIN])


@pytest.fixture
def pem_verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, authorized_parties=[APP_ORIGIN])


def signed(key: SigningKey, algorithm: str) -> str:
    return jwt.encode(claims(), key.private, algorithm=algorithm, headers={"kid": key.kid})


def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value.reason


@pytest.mark.parametrize("algorithm", RSA_ALGORITHMS)
def test_the_token_is_validly_signed(key: SigningKey, algorithm: str) -> None:
    """The control: under its own algorithm the signature checks out, so a rejection below is about the
    algorithm and nothing else."""
    decoded = jwt.decode(signed(key, algorithm), key.private.public_key(), algorithms=[algorithm], issuer=ISSUER)
    assert decoded["sub"] == "user_2abc"


@pytest.mark.parametrize("algorithm", RSA_ALGORITHMS)
@pytest.mark.parametrize("which", ["jwks", "pem"])
def test_another_rsa_algorithm_is_refused_by_the_header_check(
    jwks_verifier: TokenVerifier, pem_verifier: TokenVerifier, key: SigningKey, algorithm: str, which: str
) -> None:
    verifier = jwks_verifier if which == "jwks" else pem_verifier
    assert reason_of(verifier, signed(key, algorithm)) == "alg_not_allowed"


def test_an_ecdsa_token_is_refused_by_the_header_check(pem_verifier: TokenVerifier, key: SigningKey) -> None:
    ec_key = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(claims(), ec_key, algorithm="ES256", headers={"kid": key.kid})
    # Signed correctly for its own key: the header check must not depend on the signature failing.
    public = ec_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert jwt.decode(token, public, algorithms=["ES256"], issuer=ISSUER)["sub"] == "user_2abc"
    assert reason_of(pem_verifier, token) == "alg_not_allowed"


@pytest.mark.parametrize("algorithm", RSA_ALGORITHMS)
def test_the_decoder_allows_rs256_only_on_its_own(pem_verifier: TokenVerifier, key: SigningKey, algorithm: str) -> None:
    """The decoder is the second line of defence behind the header check, which verify() always runs
    first; it is called directly so a widened allow-list cannot hide behind a strict header check."""
    with pytest.raises(AuthError) as caught:
        pem_verifier._decode(signed(key, algorithm), key.private.public_key())
    assert caught.value.reason == "alg_not_allowed_by_decoder"
    assert caught.value.message == "Your sign-in could not be verified. Please sign in again."
    assert pem_verifier._decode(signed(key, "RS256"), key.private.public_key())["sub"] == "user_2abc"
