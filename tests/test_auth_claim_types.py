"""Time claims must be JSON numbers in a sane range (issue 9, finding 7).

PyJWT takes `int()` of `exp`, so a signed token whose `exp` is a numeric string passed its check but
gave the Principal no expiry, and the store's freshness check never refused it; `exp=1e20` passed and
then overflowed datetime. Each such token is now refused with its own reason, `bad_time_claim`."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest

from services.auth import AuthError, TokenVerifier
from tests.auth_support import APP_ORIGIN, ISSUER, SigningKey, claims


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate("kid-types")


@pytest.fixture(scope="module")
def verifier(key: SigningKey) -> TokenVerifier:
    return TokenVerifier(issuer=ISSUER, public_key_pem=key.public_pem, authorized_parties=[APP_ORIGIN], leeway_s=5)


def reason_of(verifier: TokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value.reason


NOW = int(time.time())  # only inside refused values: the type is judged before the time
BAD_VALUES: list[Any] = [
    str(NOW + 60),  # a numeric string: PyJWT's int() accepts it
    f"{NOW + 60}.5",
    True,  # bool is an int to Python, not a number to JSON
    False,
    None,  # JSON null (a present claim, not a missing one: `claims()` drops Python None, so see below)
    [NOW + 60],
    {"t": NOW + 60},
    1e20,  # overflowed datetime.fromtimestamp
    2**40,
    -1,
    0,
    float("nan"),
    float("inf"),
]


@pytest.mark.parametrize("name", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", BAD_VALUES, ids=repr)
def test_a_time_claim_that_is_not_a_sane_number_is_refused(
    verifier: TokenVerifier, key: SigningKey, name: str, value: Any
) -> None:
    payload = claims()
    payload[name] = value  # set directly, so JSON null reaches the token too
    assert reason_of(verifier, key.sign(payload)) == "bad_time_claim"


@pytest.mark.parametrize("exp_offset", [60, 60.25])
def test_integer_and_fractional_times_are_accepted(verifier: TokenVerifier, key: SigningKey, exp_offset: float) -> None:
    now = int(time.time())  # not NOW: collection can happen minutes before this test runs
    payload = claims(exp=now + exp_offset, iat=now - 10.5, nbf=now - 10.5)
    principal = verifier.verify(key.sign(payload))
    assert principal.expires_at == datetime.fromtimestamp(now + exp_offset, tz=UTC)


def test_the_type_is_judged_only_after_the_signature(verifier: TokenVerifier, key: SigningKey) -> None:
    other = SigningKey.generate("kid-types")
    assert reason_of(verifier, other.sign(claims(exp="soon"))) == "bad_signature"


def test_a_missing_time_claim_keeps_its_own_reason(verifier: TokenVerifier, key: SigningKey) -> None:
    assert reason_of(verifier, key.sign(claims(exp=None))) == "missing_exp"
    assert reason_of(verifier, key.sign(claims(exp=int(time.time()) - 3600))) == "expired"
