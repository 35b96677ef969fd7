"""Fresh Clerk session tokens from Clerk's Backend API, so a Clerk user is never asked again mid-work.

A Clerk session token lives about a minute, and a Streamlit tab only has the copy its websocket connected
with. With CLERK_SECRET_KEY set, the app keeps the Clerk session id (`sid`) of the first token it verified
and, when its token nears expiry, asks Clerk for a new one (`POST /v1/sessions/{sid}/tokens`). Clerk
refuses for a session that was signed out, revoked or has ended, which signs the tab out on its next
action. The new token goes through the same verifier (issuer, keys, times) as any other; `azp` is not
required of it, because the app fetched it itself from Clerk, not from a browser.
"""

from __future__ import annotations

import json
import logging
import re
import urllib.error
import urllib.request

from services.auth import AuthError, Principal, TokenVerifier

log = logging.getLogger(__name__)

SESSION_ID = re.compile(r"^sess_[A-Za-z0-9]{1,64}$")
MAX_RESPONSE_BYTES = 64 * 1024
_UNAVAILABLE = "We cannot renew your sign-in with Clerk right now. Please try again in a minute."


class ClerkSessionRenewer:
    def __init__(self, *, secret_key: str, api_url: str, verifier: TokenVerifier, timeout_s: float = 5) -> None:
        self._secret_key = secret_key
        self.api_url = api_url.rstrip("/")
        self.verifier = verifier
        self.timeout_s = timeout_s

    def renew(self, session_id: str) -> tuple[Principal, str] | None:
        """A verified new token for the Clerk session, or None when Clerk says the session is over. Raises
        AuthError('renew_unavailable') when Clerk cannot be reached (the caller keeps the user's work)."""
        if not SESSION_ID.match(session_id):
            return None
        request = urllib.request.Request(
            f"{self.api_url}/sessions/{session_id}/tokens",
            data=b"{}",
            method="POST",
            headers={"Authorization": f"Bearer {self._secret_key}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - our API URL
                body = json.loads(response.read(MAX_RESPONSE_BYTES))
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                log.warning("Clerk refused CLERK_SECRET_KEY (HTTP %d): tokens cannot be renewed", exc.code)
            if 400 <= exc.code < 500:
                return None
            raise AuthError("renew_unavailable", _UNAVAILABLE) from None
        except (urllib.error.URLError, OSError, ValueError):
            raise AuthError("renew_unavailable", _UNAVAILABLE) from None
        token = body.get("jwt") if isinstance(body, dict) else None
        if not isinstance(token, str):
            raise AuthError("renew_unavailable", _UNAVAILABLE)
        principal = self.verifier.verify(token)
        if principal.claims.get("sid") != session_id:
            return None
        return principal, token
