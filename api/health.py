"""GET /api/health: 200 when the services (database, sign-in, providers) are up, 503 with a reason if not."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse

from services.config import ConfigError
from services.runtime import StartupError, shared_services


def health(request: Request) -> JSONResponse:
    # A sync endpoint: Starlette runs it in a worker thread, so a first call that starts the database
    # does not block the event loop that serves every browser tab's websocket.
    try:
        services = shared_services()
    except (ConfigError, StartupError) as exc:
        return JSONResponse({"status": "unavailable", "error": str(exc)}, status_code=503)
    return JSONResponse({"status": "ok", "auth": services.settings.auth_mode})
