"""TokenVerifier against real RSA keys and a real JWKS server on 127.0.0.1: caching, rotation, outages,
the attack suite (each case its own reason code) and the edges of the leeway."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services import auth
from services.auth import AuthError, Principal, TokenVerifier
from tests.auth_support import (
    APP_ORIGIN,
    ISSUER,
    JwksServer,
    SigningKey,
    claims,
    hs256_with_secret,
    raw_token,
    serve_jwks,
)


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("kid-1")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    return SigningKey.generate("kid-other")


@pytest.fixture
def jwks(key: SigningKey) -> Iterator[JwksServer]:
    with serve_jwks(JwksServer(keys=[key.jwk()])) as server:
        yield server


@pytest.fixture
def verifier(jwks: JwksServer) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, jwks_url=jwks.url, authorized_parties=[APP_ORIGIN], leeway_s=5)


def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value.reason


# --- the happy path, caching and rotation ---------------------------------------------------------


def test_valid_token_gives_principal(verifier: TokenVerifier, key: SigningKey) -> None:
    payload = claims(metadata={"roles": ["reviewer"]})
    principal = verifier.verify(key.sign(payload))
    assert isinstance(principal, Principal)
    assert principal.user_id == "user_2abc"
    assert principal.claims["sid"] == "sess_1"
    assert principal.claims["role"] == "authenticated"
    assert principal.expires_at == datetime.fromtimestamp(payload["exp"], tz=UTC)
    assert principal.is_reviewer


def test_jwks_is_fetched_once_and_cached(verifier: TokenVerifier, key: SigningKey, jwks: JwksServer) -> None:
    for user in ("user_a", "user_b", "user_c"):
        assert verifier.verify(key.sign(claims(sub=user))).user_id == user
    assert jwks.fetches == 1


def test_unknown_kid_refreshes_once_then_cooldown(key: SigningKey, other_key: SigningKey, jwks: JwksServer) -> None:
    verifier = TokenVerifier(issuer=ISSUER, jwks_url=jwks.url, jwks_refresh_cooldown_s=3600)
    assert verifier.verify(key.sign(claims())).user_id == "user_2abc"
    assert jwks.fetches == 1
    # Clerk rotates: the new key appears in the JWKS; the first token signed with it forces one refresh.
    jwks.keys = [key.jwk(), other_key.jwk()]
    assert verifier.verify(other_key.sign(claims(sub="user_rotated"))).user_id == "user_rotated"
    assert jwks.fetches == 2
    # Both keys are now cached: no more fetches.
    verifier.verify(key.sign(claims()))
    verifier.verify(other_key.sign(claims()))
    assert jwks.fetches == 2
    # A made-up kid inside the cooldown is refused without another request (no request amplification).
    for _ in range(3):
        assert reason_of(verifier, other_key.sign(claims(), kid="made-up")) == "unknown_kid"
    assert jwks.fetches == 2


def test_unknown_kid_triggers_exactly_one_refresh_per_attempt_without_cooldown(
    key: SigningKey, other_key: SigningKey, jwks: JwksServer
) -> None:
    verifier = TokenVerifier(issuer=ISSUER, jwks_url=jwks.url, jwks_refresh_cooldown_s=0)
    verifier.verify(key.sign(claims()))
    assert jwks.fetches == 1
    assert reason_of(verifier, other_key.sign(claims(), kid="kid-nowhere")) == "unknown_kid"
    assert jwks.fetches == 2


@pytest.mark.parametrize("status", [500, 503, 404])
def test_jwks_endpoint_error_is_unavailable_not_a_pass(key: SigningKey, jwks: JwksServer, status: int) -> None:
    jwks.status = status
    verifier = TokenVerifier(issuer=ISSUER, jwks_url=jwks.url)
    with pytest.raises(AuthError) as caught:
        verifier.verify(key.sign(claims()))
    assert caught.value.reason == "jwks_unavailable"
    assert "cannot verify sign-in right now" in caught.value.message
    # Recovery: the failure was not cached.
    jwks.status = 200
    assert verifier.verify(key.sign(claims())).user_id == "user_2abc"


def test_jwks_garbage_is_unavailable(key: SigningKey, jwks: JwksServer) -> None:
    jwks.body = b"<html>maintenance</html>"
    assert reason_of(TokenVerifier(issuer=ISSUER, jwks_url=jwks.url), key.sign(claims())) == "jwks_unavailable"
    jwks.body = b'{"keys": []}'
    assert reason_of(TokenVerifier(issuer=ISSUER, jwks_url=jwks.url), key.sign(claims())) == "jwks_unavailable"


def test_jwks_server_gone_is_unavailable(key: SigningKey) -> None:
    with serve_jwks(JwksServer(keys=[key.jwk()])) as server:
        url = server.url
    verifier = TokenVerifier(issuer=ISSUER, jwks_url=url, jwks_timeout_s=2)
    assert reason_of(verifier, key.sign(claims())) == "jwks_unavailable"


# --- networkless PEM mode -------------------------------------------------------------------------


def test_pem_mode_verifies_without_network(key: SigningKey, other_key: SigningKey) -> None:
    verifier = TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem)
    assert verifier.verify(key.sign(claims())).user_id == "user_2abc"
    assert reason_of(verifier, other_key.sign(claims(), kid=key.kid)) == "bad_signature"


def test_pem_with_escaped_newlines_as_in_env_vars(key: SigningKey) -> None:
    escaped = key.public_pem.replace("\n", "\\n")
    assert TokenVerifier(issuer=ISSUER, public_key_pem=escaped).verify(key.sign(claims())).user_id == "user_2abc"


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"jwks_url": "http://127.0.0.1:1/jwks", "public_key_pem": "x"},
        {"public_key_pem": "not a pem"},
        {"jwks_url": "http://127.0.0.1:1/jwks", "authorized_parties": "https://one.example"},
    ],
)
def test_misconfiguration_is_refused(kwargs: dict[str, str]) -> None:
    with pytest.raises(ValueError):
        TokenVerifier(issuer=ISSUER, **kwargs)  # type: ignore[arg-type]


# --- the attack suite -----------------------------------------------------------------------------


def _alg_none(key: SigningKey, other: SigningKey) -> str:
    return raw_token({"alg": "none", "typ": "JWT", "kid": key.kid}, claims())


def _alg_none_capitalised(key: SigningKey, other: SigningKey) -> str:
    return raw_token({"alg": "NoNe", "kid": key.kid}, claims(), b"sig")


def _hs256_public_key_as_secret(key: SigningKey, other: SigningKey) -> str:
    return hs256_with_secret({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims(), key.public_pem.encode())


def _stripped_signature(key: SigningKey, other: SigningKey) -> str:
    head, payload, _ = key.sign(claims()).split(".")
    return f"{head}.{payload}."


def _tampered_payload(key: SigningKey, other: SigningKey) -> str:
    head, _, signature = key.sign(claims()).split(".")
    forged = raw_token({}, claims(sub="user_admin")).split(".")[1]
    return f"{head}.{forged}.{signature}"


def _signed_by_foreign_key_with_known_kid(key: SigningKey, other: SigningKey) -> str:
    return other.sign(claims(), kid=key.kid)


def _signed_by_key_not_in_jwks(key: SigningKey, other: SigningKey) -> str:
    return other.sign(claims())


def _expired(key: SigningKey, other: SigningKey) -> str:
    now = int(time.time())
    return key.sign(claims(iat=now - 600, nbf=now - 600, exp=now - 300))


def _nbf_in_future(key: SigningKey, other: SigningKey) -> str:
    now = int(time.time())
    return key.sign(claims(nbf=now + 300, exp=now + 600))


def _iat_in_future(key: SigningKey, other: SigningKey) -> str:
    now = int(time.time())
    return key.sign(claims(iat=now + 300, exp=now + 600))


def _wrong_issuer(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(iss="https://evil.example.test"))


def _issuer_lookalike_prefix(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(iss=ISSUER + ".evil.test"))


def _issuer_truncated_prefix(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(iss=ISSUER[:-3]))


def _wrong_azp(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(azp="https://evil.example.test"))


def _missing_azp(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(azp=None))


def _missing_sub(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(sub=None))


def _empty_sub(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(sub="  "))


def _missing_exp(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(exp=None))


def _missing_iat(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(iat=None))


def _missing_iss(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(iss=None))


def _missing_kid(key: SigningKey, other: SigningKey) -> str:
    return raw_token({"alg": "RS256"}, claims(), b"x" * 256)


def _jwk_header(key: SigningKey, other: SigningKey) -> str:
    return other.sign(claims(), headers={"jwk": other.jwk()}, kid=key.kid)


def _jku_header(key: SigningKey, other: SigningKey) -> str:
    return other.sign(claims(), headers={"jku": "http://127.0.0.1:9/evil-jwks.json"}, kid=key.kid)


def _x5u_header(key: SigningKey, other: SigningKey) -> str:
    return other.sign(claims(), headers={"x5u": "http://127.0.0.1:9/evil.pem"}, kid=key.kid)


def _crit_header(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(), headers={"crit": ["https://example.test/ext"], "https://example.test/ext": 1})


def _oversized(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(padding="A" * 100_000))


def _not_a_jwt(key: SigningKey, other: SigningKey) -> str:
    return "this-is-not-a-token"


def _aud_not_expected(key: SigningKey, other: SigningKey) -> str:
    return key.sign(claims(aud="some-other-api"))


def _exp_as_string(key: SigningKey, other: SigningKey) -> str:
    # PyJWT takes int() of it and would accept it; the store's freshness check would then never refuse it.
    return key.sign(claims(exp=str(int(time.time()) + 600)))


ATTACKS: list[tuple[Callable[[SigningKey, SigningKey], str], str]] = [
    (_alg_none, "alg_none"),
    (_alg_none_capitalised, "alg_none"),
    (_hs256_public_key_as_secret, "alg_not_allowed"),
    (_stripped_signature, "missing_signature"),
    (_tampered_payload, "bad_signature"),
    (_signed_by_foreign_key_with_known_kid, "bad_signature"),
    (_signed_by_key_not_in_jwks, "unknown_kid"),
    (_expired, "expired"),
    (_nbf_in_future, "not_yet_valid"),
    (_iat_in_future, "issued_in_future"),
    (_wrong_issuer, "wrong_issuer"),
    (_issuer_lookalike_prefix, "wrong_issuer"),
    (_issuer_truncated_prefix, "wrong_issuer"),
    (_wrong_azp, "wrong_azp"),
    (_missing_azp, "missing_azp"),
    (_missing_sub, "missing_sub"),
    (_empty_sub, "missing_sub"),
    (_missing_exp, "missing_exp"),
    (_missing_iat, "missing_iat"),
    (_missing_iss, "missing_iss"),
    (_missing_kid, "missing_kid"),
    (_jwk_header, "untrusted_key_header"),
    (_jku_header, "untrusted_key_header"),
    (_x5u_header, "untrusted_key_header"),
    (_crit_header, "unsupported_crit"),
    (_oversized, "token_too_large"),
    (_not_a_jwt, "malformed"),
    (_aud_not_expected, "wrong_audience"),
    (_exp_as_string, "bad_time_claim"),
]


@pytest.mark.parametrize(("make", "reason"), ATTACKS, ids=[make.__name__.strip("_") for make, _ in ATTACKS])
def test_attack_is_rejected_with_its_reason(
    verifier: TokenVerifier, key: SigningKey, other_key: SigningKey, make: Callable[..., str], reason: str
) -> None:
    token = make(key, other_key)
    assert reason_of(verifier, token) == reason


def test_header_attacks_never_fetch_the_urls_they_name(
    verifier: TokenVerifier, key: SigningKey, other_key: SigningKey, jwks: JwksServer
) -> None:
    evil = JwksServer(keys=[other_key.jwk()])
    with serve_jwks(evil):
        token = other_key.sign(claims(), headers={"jku": evil.url}, kid=other_key.kid)
        assert reason_of(verifier, token) == "untrusted_key_header"
    assert evil.fetches == 0
    assert jwks.fetches == 0


def test_attack_reasons_are_specific(verifier: TokenVerifier, key: SigningKey, other_key: SigningKey) -> None:
    """Each class of attack has its own code; only cases the verifier cannot tell apart share one
    (a tampered payload and a foreign key both fail the signature; issuer variants are all wrong_issuer).
    Counted from what the verifier answers, not from this file's table."""
    observed = {reason_of(verifier, make(key, other_key)) for make, _ in ATTACKS}
    assert len(observed) >= 20
    assert "invalid_token" not in observed
    # Every reason code the verifier can raise for a token is produced by some attack above, except the
    # ones that are about our side (JWKS down) or need a key rotation (tested above).
    raised = set(re.findall(r'AuthError\(\s*"([a-z_]+)"', Path(auth.__file__).read_text()))
    not_token_attacks = {"jwks_unavailable", "unknown_kid", "alg_not_allowed_by_decoder", "invalid_token"}
    assert raised - not_token_attacks - observed == set()


# --- the edges of the leeway ----------------------------------------------------------------------

# A wide leeway keeps a margin of several seconds on each side of the edge, so a slow, shared test
# machine cannot flip the outcome; the arithmetic being tested is the same as with 5 s.
LEEWAY = 60
MARGIN = 10


@pytest.fixture
def lenient(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, leeway_s=LEEWAY)


def test_expired_within_leeway_is_accepted(lenient: TokenVerifier, key: SigningKey) -> None:
    now = int(time.time())
    token = key.sign(claims(iat=now - 600, nbf=now - 600, exp=now - LEEWAY + MARGIN))
    assert lenient.verify(token).user_id == "user_2abc"


def test_expired_beyond_leeway_is_rejected(lenient: TokenVerifier, key: SigningKey) -> None:
    now = int(time.time())
    token = key.sign(claims(iat=now - 600, nbf=now - 600, exp=now - LEEWAY - MARGIN))
    assert reason_of(lenient, token) == "expired"


def test_nbf_and_iat_just_ahead_within_leeway_are_accepted(lenient: TokenVerifier, key: SigningKey) -> None:
    now = int(time.time())
    token = key.sign(claims(iat=now + LEEWAY - MARGIN, nbf=now + LEEWAY - MARGIN, exp=now + 600))
    assert lenient.verify(token).user_id == "user_2abc"


def test_nbf_beyond_leeway_is_rejected(lenient: TokenVerifier, key: SigningKey) -> None:
    now = int(time.time())
    token = key.sign(claims(iat=now, nbf=now + LEEWAY + MARGIN, exp=now + 600))
    assert reason_of(lenient, token) == "not_yet_valid"


def test_default_leeway_is_five_seconds(key: SigningKey) -> None:
    verifier = TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem)
    assert verifier.leeway_s == 5
    now = int(time.time())
    # 3 s inside and 3 s beyond the 5 s edge: a leeway of 2 s or less rejects the first, one of 8 s or
    # more accepts the second. (Time only moves towards "expired", so the second cannot flake; the first
    # would need the machine to stall for 3 s between these lines.)
    assert verifier.verify(key.sign(claims(iat=now - 600, nbf=now - 600, exp=now - 2))).user_id == "user_2abc"
    assert reason_of(verifier, key.sign(claims(iat=now - 600, nbf=now - 600, exp=now - 8))) == "expired"
