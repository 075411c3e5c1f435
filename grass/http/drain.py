"""Reading what is left of a request body while its reply goes out.

hypercorn hands a body to the app through a queue of ten chunks, and quart-trio stops reading it
once the reply is under way. When the last part of a reply goes out, hypercorn ends the stream by
queueing an ``http.disconnect`` behind the body, and waits for room in that queue: a reply that
did not read the whole body (a 413 for a body over the cap, above all) then blocks there, the
reader blocks too, and the connection is stuck for good, neither read nor closed. So the last
send of a reply runs beside a reader that throws away what is left (nothing is kept: memory stays
bounded) until hypercorn's own end of the stream comes through. That end must not reach the app
meanwhile: quart-trio takes an ``http.disconnect`` for a client gone and cancels the request,
last send included, which would cut hypercorn's closing of the connection short.
"""

from __future__ import annotations

from typing import Any

import trio
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGIReceiveEvent,
    ASGISendCallable,
    ASGISendEvent,
    Scope,
)

AsgiApp = Any  # quart's asgi_app: (scope, receive, send) -> None


class DrainBody:
    """ASGI middleware: the last send of an HTTP reply discards the body the app left unread."""

    def __init__(self, app: AsgiApp) -> None:
        self._app = app

    async def __call__(
        self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        ended = last_send = False

        async def tracked() -> ASGIReceiveEvent:
            nonlocal ended
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                ended = True
            return message

        async def app_receive() -> ASGIReceiveEvent:
            message = await tracked()
            if last_send and message["type"] == "http.disconnect":
                await trio.sleep_forever()  # hypercorn's own end of the stream: see above
            return message

        async def drain() -> None:
            while not ended:
                await tracked()

        async def draining_send(message: ASGISendEvent) -> None:
            nonlocal last_send
            last = message["type"] == "http.response.body" and not message.get("more_body")
            if ended or not last:
                await send(message)
                return
            last_send = True
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                await send(message)
                nursery.cancel_scope.cancel()

        await self._app(scope, app_receive, draining_send)
