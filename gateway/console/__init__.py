"""The admin console: static HTML, JavaScript and CSS (no build step) served
at ``/console/``; it calls the admin API with the bearer token of a login
(``POST /admin/login``) or a pasted master key, kept in the tab's session
storage.

Every console response carries a Content-Security-Policy that allows only
the console's own files (no inline script or style, nothing from elsewhere)
and forbids framing.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.server.asgi import Message, Receive, Scope, Send

STATIC = Path(__file__).resolve().parent / "static"
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS = [
    (b"content-security-policy", POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-cache"),
]


class SecurityHeaders:
    """Adds :data:`HEADERS` to every response of the wrapped ASGI app."""

    def __init__(self, app: StaticFiles) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in HEADERS}
                kept = [h for h in message.get("headers", []) if h[0] not in names]
                message["headers"] = kept + HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


async def _to_index(request: Request) -> Response:
    return RedirectResponse("/console/", status_code=308)


def console_routes() -> list[BaseRoute]:
    """``/console`` (redirects) and ``/console/...`` (the static files)."""
    return [
        Route("/console", _to_index, methods=["GET", "HEAD"]),
        Mount("/console", app=SecurityHeaders(StaticFiles(directory=STATIC, html=True)), name="console"),
    ]
