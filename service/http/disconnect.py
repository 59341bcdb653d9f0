"""Noticing that a client has gone: await ASGI `receive` once the body has been read.

After the request body has been consumed, the server's next `receive()` message is `http.disconnect`, sent when
the client closes the connection (uvicorn sets it from `connection_lost`), or when the response is complete.
Waiting on it costs nothing while the request waits for the worker; `ServiceRuntime.execute` cancels the wait
when the result comes first.
"""

import asyncio
import logging

from starlette.types import Receive

logger = logging.getLogger(__name__)


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has disconnected; never return if the server cannot tell.

    Call only after the whole body has been read: a body message at this point means the server does not
    report disconnects this way, and then this waits until cancelled rather than spinning.
    """
    try:
        message = await receive()
    except Exception:  # a broken receive channel must not fail the request it watches
        logger.debug("cannot watch for a disconnect", exc_info=True)
        message = {}
    if message.get("type") == "http.disconnect":
        return
    await asyncio.get_running_loop().create_future()
