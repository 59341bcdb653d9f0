"""Headers on every answer: `X-Instance` (which replica served it, for an operator behind a gateway) and the
security headers (`X-Content-Type-Options: nosniff`, `Referrer-Policy: no-referrer`, and a Content Security
Policy: the API's answers load nothing and are framed nowhere; the page and the documentation set their own).

A plain ASGI middleware (not `BaseHTTPMiddleware`), installed outermost, so that every answer carries them:
errors, refusals while draining, CORS preflights and streamed bodies (Server-Sent Events) alike.
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INSTANCE_HEADER = "X-Instance"
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
"""The Content Security Policy of an answer that sets none: JSON, errors and event streams load nothing."""
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class AnswerHeadersMiddleware:
    def __init__(self, app: ASGIApp, instance_id: str) -> None:
        self.app = app
        self.instance_id = instance_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers[INSTANCE_HEADER] = self.instance_id
                headers.update(SECURITY_HEADERS)
                headers.setdefault("Content-Security-Policy", API_POLICY)
            await send(message)

        await self.app(scope, receive, send_with_headers)
