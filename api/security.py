"""Security headers on every HTTP response the app serves (Streamlit's own pages and assets included).

The Content-Security-Policy is defence in depth behind the markdown neutraliser: even if a message made the
page render an image or a link preview, the browser would fetch nothing from another origin. What it allows,
and why:
- scripts only from this origin, plus Streamlit's one inline bootstrap script by its hash (computed from the
  installed index.html, so a Streamlit upgrade keeps working), and WebAssembly compilation
  ('wasm-unsafe-eval', not JavaScript eval: the protobuf decoder's 64-bit math module, Long.js, uses it);
- styles from this origin and inline (Streamlit's CSS-in-JS injects <style> elements);
- images, fonts and media from this origin, `data:` and `blob:` (icons, charts, downloads);
- connections (the websocket and the API) and frames (custom components) only to this origin;
- no plugins, no <base> rewriting, and the app cannot be framed by another site.
"""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

import streamlit
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_INDEX = Path(streamlit.__file__).parent / "static" / "index.html"
_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def inline_script_hashes(index_html: str) -> list[str]:
    """CSP source expressions for each inline <script> of Streamlit's index.html."""
    return [
        "'sha256-" + base64.b64encode(hashlib.sha256(body.encode()).digest()).decode() + "'"
        for body in _INLINE_SCRIPT.findall(index_html)
    ]


def content_security_policy(index_html: str) -> str:
    scripts = " ".join(["'self'", "'wasm-unsafe-eval'", *inline_script_hashes(index_html)])
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src {scripts}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data: blob:",
            "font-src 'self' data:",
            "media-src 'self' data: blob:",
            "connect-src 'self'",
            "frame-src 'self'",
            "worker-src 'self' blob:",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    )


def security_headers() -> list[tuple[bytes, bytes]]:
    index = _INDEX.read_text(encoding="utf-8") if _INDEX.exists() else ""
    return [
        (b"content-security-policy", content_security_policy(index).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"referrer-policy", b"same-origin"),
    ]


class SecurityHeaders:
    """Pure ASGI middleware (not BaseHTTPMiddleware, which buffers and does not see websockets): adds the
    headers to each HTTP response start, leaves websocket traffic alone."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.headers = security_headers()
        self._names = {name for name, _ in self.headers}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in self._names]
                message = {**message, "headers": kept + self.headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
