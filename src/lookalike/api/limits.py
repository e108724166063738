"""A cap on request body size, so one oversized upload cannot exhaust memory."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised into the app when the streamed body passes the limit."""


class BodySizeLimit:
    """ASGI middleware: answer 413 (in the API's envelope) when a request body exceeds
    ``max_bytes`` bytes, by its ``Content-Length`` or, when streamed, as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        path = scope.get("path", "")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(send, path)
            return
        seen = 0
        exceeded = rejected = False

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    exceeded = True
                    raise BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            # The app may turn BodyTooLarge into its own error answer (FastAPI makes it a 400
            # "error parsing the body"); whatever it answers, the client gets the 413.
            nonlocal rejected
            if not exceeded:
                await send(message)
            elif message["type"] == "http.response.start" and not rejected:
                rejected = True
                await self._reject(send, path)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except BodyTooLarge:
            if not rejected:
                await self._reject(send, path)

    async def _reject(self, send: Send, path: str) -> None:
        message = f"request body is larger than the limit of {self.max_bytes} bytes"
        # each face's own error style (api/modash.py, api/constructor.py, api/envelope.py)
        if path.startswith("/v1/"):
            content: dict = {"error": True, "code": "request_too_large", "message": message}
        elif path.startswith("/v2/"):
            content = {"message": message}
        else:
            content = {"status": "REQUEST_TOO_LARGE", "message": message, "data": None}
        body = json.dumps(content).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
