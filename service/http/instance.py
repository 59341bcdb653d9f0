"""`X-Instance` on every answer: which replica served it, so that an operator behind a gateway can tell.

A plain ASGI middleware (not `BaseHTTPMiddleware`), installed outermost, so that every answer carries the
header: errors, refusals while draining, CORS preflights and streamed bodies (Server-Sent Events) alike.
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

INSTANCE_HEADER = "X-Instance"


class InstanceHeaderMiddleware:
    def __init__(self, app: ASGIApp, instance_id: str) -> None:
        self.app = app
        self.instance_id = instance_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_instance(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)[INSTANCE_HEADER] = self.instance_id
            await send(message)

        await self.app(scope, receive, send_with_instance)
