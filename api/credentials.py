"""Who is calling: `Authorization: Bearer <credential>` turned into a verified Principal, or AuthError (401).

- A bearer starting with `sk-chat-` is a personal API key: `services.api_keys.authenticate` maps it to its
  owner (keys are stored hashed; RLS still decides every row). When the app has no key service, 401.
- Any other bearer is a token, checked by the same TokenVerifier the pages use (`services.identity.verifier`):
  Clerk session tokens with CHAT_AUTH=clerk, this app's own short-lived tokens with CHAT_AUTH=local.
- CHAT_AUTH=none (one fixed user, allowed only when the server listens on localhost): the API answers as
  that same LOCAL_USER, like the pages, but only to a caller on this machine that names this machine in
  its Host header. The Host check stops DNS rebinding, where a web page from another site reaches the
  localhost server under its own host name; a bearer, if sent, is ignored since there is nobody to be.

Blocking (an API-key lookup hits the database): call `authenticate` off the event loop.
"""

from __future__ import annotations

import ipaddress
import re

from starlette.requests import Request

from services.auth import AuthError, Principal
from services.identity import LOCAL_USER
from services.runtime import Services

API_KEY_PREFIX = "sk-chat-"
# RFC 6750's b64token, bounded: a bearer far larger than any token or key is refused before any parsing.
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr] +([A-Za-z0-9\-._~+/]+=*)")
MAX_CREDENTIAL_CHARS = 16 * 1024
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "[::1]")

MISSING = "Send your sign-in token or API key as 'Authorization: Bearer <token>'."
MALFORMED = "The Authorization header is not 'Bearer <token>'."
KEYS_DISABLED = "API keys are not enabled on this server."
NONE_MODE_REMOTE = "This server runs without sign-in (CHAT_AUTH=none); it answers only on its own machine."


def bearer(request: Request) -> str:
    """The credential in the Authorization header; AuthError `missing_credential` or `malformed_header`."""
    values = request.headers.getlist("authorization")
    if not values:
        raise AuthError("missing_credential", MISSING)
    if len(values) > 1 or len(values[0]) > MAX_CREDENTIAL_CHARS:
        raise AuthError("malformed_header", MALFORMED)
    match = _BEARER.fullmatch(values[0].strip())
    if match is None:
        raise AuthError("malformed_header", MALFORMED)
    return match.group(1)


def authenticate(services: Services, request: Request) -> Principal:
    """The verified caller of `request`, or AuthError."""
    if services.identity.mode == "none":
        if _from_this_machine(request):
            return LOCAL_USER
        raise AuthError("not_local", NONE_MODE_REMOTE)
    credential = bearer(request)
    if credential.startswith(API_KEY_PREFIX):
        # Added to Services by the API-key work; absent, keys simply do not exist here.
        keys = getattr(services, "api_keys", None)
        if keys is None:
            raise AuthError("api_keys_disabled", KEYS_DISABLED)
        principal: Principal = keys.authenticate(credential)
        return principal
    verifier = services.identity.verifier
    if verifier is None:  # unreachable for local and clerk; a clear refusal beats an AttributeError
        raise AuthError("no_verifier", MISSING)
    principal = verifier.verify(credential)
    principal.ensure_fresh()
    return principal


def _from_this_machine(request: Request) -> bool:
    peer = request.client.host if request.client else ""
    try:
        loopback = ipaddress.ip_address(peer).is_loopback
    except ValueError:
        return False
    host = (request.headers.get("host") or "").strip().lower()
    name = host.rsplit(":", 1)[0] if not host.startswith("[") else host.split("]", 1)[0] + "]"
    return loopback and name in _LOCAL_HOSTS
