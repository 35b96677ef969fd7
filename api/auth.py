"""POST /api/auth/sign-in, /api/auth/sign-up, /api/auth/sign-out: the session cookie, set by the server.

The sign-in page is a plain HTML form that the browser posts here itself (a top-level navigation, no
Streamlit widget, no script run to race with), so no click can be lost. A route answers with a 303 to
the app: on success it sets the session cookie (HttpOnly, SameSite=Lax, Secure over HTTPS) and the new
page's websocket carries it; on failure the redirect names a reason code the sign-in page turns into its
message. The cookie's value never changes while the session lives, so open tabs never hold a stale copy.

CSRF: every POST must carry an `Origin` equal to this app's own origin. The client address (for
throttling) is the peer's, or the X-Forwarded-For entry added by a proxy named in CHAT_TRUSTED_PROXIES.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from urllib.parse import parse_qs, urlencode, urlsplit

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from streamlit import config as st_config

from services.config import ConfigError
from services.identity import COOKIE_NAME, signup_allowed
from services.runtime import Services, StartupError, shared_services
from services.sessions import SessionService, SignInRefused
from services.store.types import StoreUnavailable

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 8 * 1024
# Codes the sign-in page knows (components/login.py); anything else is shown as a generic failure.
UNAVAILABLE = "unavailable"


def client_address(request: Request, trusted_proxies: tuple[str, ...]) -> str:
    """The peer address, or the address the nearest trusted proxy saw (walking X-Forwarded-For from the
    right, past every trusted proxy). Entries a client wrote itself are never believed."""
    peer = request.client.host if request.client else ""
    if not trusted_proxies or not _in(peer, trusted_proxies):
        return peer
    chain = [part.strip() for part in ",".join(request.headers.getlist("x-forwarded-for")).split(",") if part.strip()]
    for hop in reversed(chain):
        if not _in(hop, trusted_proxies):
            return hop
    return chain[0] if chain else peer


def _in(address: str, networks: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for net in networks:
        try:
            if ip in ipaddress.ip_network(net, strict=False):
                return True
        except ValueError:
            continue
    return False


def _scheme(request: Request, trusted: bool) -> str:
    forwarded = request.headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() if trusted else ""
    return forwarded if forwarded in ("http", "https") else request.url.scheme


def same_origin(request: Request, trusted: bool) -> bool:
    """True when the request's Origin is this app's own origin (scheme, host and port as the browser sees
    them). A missing or `null` Origin is refused: browsers send it on every form POST."""
    origin = request.headers.get("origin")
    host = request.headers.get("x-forwarded-host") if trusted else None
    host = (host or request.headers.get("host") or "").split(",")[0].strip()
    if not origin or origin == "null" or not host:
        return False
    return origin.rstrip("/").lower() == f"{_scheme(request, trusted)}://{host}".lower()


async def _form(request: Request) -> dict[str, str]:
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True, max_num_fields=20)
    return {key: values[0] for key, values in parsed.items() if values}


MAX_NEXT_CHARS = 2_000


def safe_next(value: str | None) -> str:
    """The page the form was on (its path and query), to go back to: only a path on this app, never
    another site (`//host`, `/\\host`, a scheme) and never with control characters; else the app's root."""
    if not value or len(value) > MAX_NEXT_CHARS or not value.startswith("/") or value.startswith(("//", "/\\")):
        return "/"
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return "/"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return "/"
    return value


def _back(outcome: dict[str, str], next_url: str = "/") -> RedirectResponse:
    """303 to the page the form was on (a deep link survives sign-in), with the outcome's reason codes
    added to its query. 303: the browser follows with a GET, so a reload never re-posts the password."""
    parts = urlsplit(safe_next(next_url))
    query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items() if k not in outcome}
    query.update(outcome)
    return RedirectResponse(parts.path + ("?" + urlencode(query) if query else ""), status_code=303)


def _services() -> tuple[Services, SessionService] | None:
    try:
        services = shared_services()
    except (ConfigError, StartupError):
        log.warning("sign-in route called while the services are down", exc_info=True)
        return None
    return (services, services.sessions) if services.sessions is not None else None


def _set_cookie(response: Response, request: Request, services: Services, secret: str) -> None:
    trusted = _in(request.client.host if request.client else "", services.settings.trusted_proxies)
    response.set_cookie(
        COOKIE_NAME,
        secret,
        max_age=services.settings.session_days * 86_400,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_scheme(request, trusted) == "https",
    )


async def _checked(request: Request) -> tuple[Services, SessionService, dict[str, str], str] | Response:
    # The first call may start the database: off the event loop that serves every tab's websocket.
    found = await run_in_threadpool(_services)
    if found is None:
        return _back({"signin": UNAVAILABLE})
    services, sessions = found
    trusted = _in(request.client.host if request.client else "", services.settings.trusted_proxies)
    if not same_origin(request, trusted):
        return PlainTextResponse("This form must be sent from the app's own page.", status_code=403)
    return services, sessions, await _form(request), client_address(request, services.settings.trusted_proxies)


async def _open_session(
    request: Request,
    services: Services,
    form: dict[str, str],
    start: Callable[[], str],
    refused: Callable[[SignInRefused], dict[str, str]],
) -> Response:
    """Run a sign-in or sign-up (blocking: bcrypt and the database, so off the event loop) and answer with
    the session cookie and a redirect back to the page the form was on, or with the refusal's codes."""
    next_url = form.get("next", "/")
    try:
        secret = await run_in_threadpool(start)
    except SignInRefused as exc:
        outcome = refused(exc)
        if exc.retry_after_s:
            outcome["wait"] = str(exc.retry_after_s)
        return _back(outcome, next_url)
    except StoreUnavailable:
        return _back({"signin": UNAVAILABLE}, next_url)
    response = _back({}, next_url)
    _set_cookie(response, request, services, secret)
    return response


async def sign_in(request: Request) -> Response:
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    services, sessions, form, address = checked
    username, password = form.get("username", ""), form.get("password", "")
    return await _open_session(
        request,
        services,
        form,
        lambda: sessions.sign_in(
            username, password, address=address, user_agent=request.headers.get("user-agent", "")
        ),
        lambda exc: {"signin": exc.code, "u": username.strip().lower()[:64]},
    )


async def sign_up(request: Request) -> Response:
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    services, sessions, form, address = checked
    # The address Streamlit listens on decides whether strangers may sign up (like the sign-in page).
    allowed = signup_allowed(services.settings, st_config.get_option("server.address"))

    def refused(exc: SignInRefused) -> dict[str, str]:
        outcome = {"signup": exc.code, "u": form.get("username", "").strip().lower()[:64]}
        if exc.code == "account":
            # The account rules' own text (length, strength, username shape), signed so that the page
            # shows it only when it came from here, never text someone put in a link.
            outcome["why"] = exc.message[:300]
            outcome["sig"] = sessions.sign_note(outcome["why"])
        return outcome

    return await _open_session(
        request,
        services,
        form,
        lambda: sessions.sign_up(
            username=form.get("username", ""),
            name=form.get("display_name", ""),
            password=form.get("password", ""),
            repeat=form.get("repeat", ""),
            setup_code=form.get("setup_code", ""),
            allowed=allowed,
            address=address,
            user_agent=request.headers.get("user-agent", ""),
        ),
        refused,
    )


async def sign_out(request: Request) -> Response:
    checked = await _checked(request)
    if isinstance(checked, Response):
        return checked
    services, sessions, _form_fields, _address = checked
    secret = request.cookies.get(COOKIE_NAME)
    if secret:
        try:
            await run_in_threadpool(sessions.sign_out, secret)
        except StoreUnavailable:
            return _back({"signin": UNAVAILABLE})
    response = _back({"signin": "signed_out"})
    response.delete_cookie(COOKIE_NAME, path="/", httponly=True, samesite="lax")
    return response
