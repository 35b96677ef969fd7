"""GET /api/ready (the database answers; migrations were applied at start-up) and GET /.well-known/jwks.json.

The JWKS publishes the public key of this app's own signing key (CHAT_AUTH=local, and in every mode while
the Supabase backend is on: services/token_minter.py), so other services (Supabase third-party auth, a
backend) can verify the tokens this app mints. Otherwise (Clerk's keys are Clerk's to publish; `none` has
no tokens) it answers an empty key set rather than 404, so a verifier configured against the app fails
closed, not with an error.
"""

from __future__ import annotations

import json
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.errors import error_response, json_route
from services.config import ConfigError
from services.identity import Identity
from services.readiness import check_ready
from services.runtime import StartupError, shared_services

JWKS_MAX_AGE_S = 300


def jwks(identity: Identity) -> dict[str, Any]:
    """The app's signing key (CHAT_AUTH=local, and any mode with the Supabase backend), once per kid."""
    keys: dict[str, dict[str, Any]] = {}
    if identity.app_signer is not None:
        keys[identity.app_signer.kid] = identity.app_signer.jwk()
    issuer = identity.issuer
    if issuer is not None and issuer.kid not in keys:
        public_key = serialization.load_pem_public_key(issuer.public_pem.encode())
        if isinstance(public_key, RSAPublicKey):  # the local issuer only makes RSA keys (RS256)
            jwk: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(public_key))
            jwk.update(kid=issuer.kid, alg="RS256", use="sig")
            keys[issuer.kid] = jwk
    return {"keys": list(keys.values())}


@json_route
async def jwks_json(request: Request) -> Response:
    services = await run_in_threadpool(shared_services)
    return JSONResponse(jwks(services.identity), headers={"Cache-Control": f"public, max-age={JWKS_MAX_AGE_S}"})


@json_route
async def ready(request: Request) -> Response:
    try:
        services = await run_in_threadpool(shared_services)
    except (ConfigError, StartupError):
        return error_response(503, "not_ready", "The services could not start; see the server's log.")
    state = await run_in_threadpool(check_ready, services.store)
    body = {
        "status": "ready" if state.ready else "not_ready",
        "database": state.database,
        "schema_version": state.schema_version,
    }
    return JSONResponse(body, status_code=200 if state.ready else 503, headers={"Cache-Control": "no-store"})
