"""StartupErrors: a configuration error at startup is reported as one line, not a traceback."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lg_deploy.errors import LgDeployError

STARTUP_FAILED = "lifespan.startup.failed"


class StartupErrors:
    """Pure-ASGI: when the lifespan fails with an lg-deploy error, the server logs its message.

    Starlette answers a failed startup with the whole traceback as the message; for errors
    lg-deploy raised on purpose (bad settings, unloadable graphs, migrations it may not apply)
    that message is replaced by the error's own text. Anything else keeps its traceback.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass HTTP through; hold a lifespan's startup failure until its cause is known."""
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def holding(message: Message) -> None:
            if message["type"] == STARTUP_FAILED:
                held.append(message)
            else:
                await send(message)

        try:
            await self.app(scope, receive, holding)
        except LgDeployError as error:
            await send({"type": STARTUP_FAILED, "message": f"lg-deploy: {error}"})
            return
        except BaseException:
            await _send_all(send, held)
            raise
        await _send_all(send, held)


async def _send_all(send: Send, messages: list[Message]) -> None:
    for message in messages:
        await send(message)
