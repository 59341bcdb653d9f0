"""Serving an app with uvicorn, with a drain phase on SIGTERM/SIGINT before uvicorn's own shutdown.

    SIGTERM ─> draining: /readyz 503, new requests 503 `shutting_down` (Retry-After, Connection: close);
               admitted requests and accepted jobs run on (jobs stay readable); the listener stays open so
               that probes and clients see the 503s
            ─> nothing busy (no request in flight, no job unfinished), or the grace period over (queued
               work then fails with 503 `worker_stopped`) ─> uvicorn shutdown: listener closed (new
               connections refused), open connections finished (the tasks of those still running are
               cancelled: uvicorn answers 500)
            ─> lifespan shutdown: workers stopped ─> exit 0, or 1 when the grace period cut requests off

An unrecoverable device error that ends a worker stops the server at once and exits with 70, so that the
orchestrator restarts the process.

A second signal ends the drain at once (a second SIGINT also skips waiting for connections, as in uvicorn).
uvicorn re-raises the signal it caught once it has shut down, which would make the exit status "killed by
SIGTERM"; this server does not, so that a clean drain exits with 0.
"""

import logging
import signal
import time
from types import FrameType

import uvicorn
from fastapi import FastAPI

from service.core.lifecycle import Lifecycle
from service.core.settings import Settings

logger = logging.getLogger(__name__)

EXIT_DEVICE_ERROR = 70  # EX_SOFTWARE
KEEP_ALIVE_S = 65  # longer than a gateway's idle timeout (KServe's reasoning), so the gateway closes first


class DrainingServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: FastAPI, grace_s: float) -> None:
        super().__init__(config)
        self.app = app
        self.lifecycle: Lifecycle = app.state.lifecycle
        self.grace_s = grace_s
        self.cut_short = False
        self.device_failed = False
        self._drain_logged = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Signal handler (main thread): start draining; a second signal stops draining."""
        if not self.lifecycle.draining:
            self.lifecycle.begin_drain(self.grace_s)
            return
        self.should_exit = True
        if sig == signal.SIGINT:
            self.force_exit = True

    async def on_tick(self, counter: int) -> bool:
        """Every 0.1 s in uvicorn's main loop: end the drain once nothing is busy or the grace is over;
        stop at once after an unrecoverable device error."""
        runtime = self.app.state.runtime
        if runtime is not None and runtime.fatal_error is not None and not self.should_exit:
            logger.critical("unrecoverable device error %r: exiting for a restart", runtime.fatal_error)
            self.device_failed = True
            self.should_exit = True
        if self.lifecycle.draining and not self.should_exit:
            remaining_s = self.lifecycle.remaining_s() or 0.0
            busy = self.lifecycle.busy()
            if not self._drain_logged:
                self._drain_logged = True
                logger.info(
                    "draining for shutdown: %d requests in flight and %d jobs unfinished, %.1f s of grace",
                    self.lifecycle.in_flight,
                    busy - self.lifecycle.in_flight,
                    remaining_s,
                )
            if busy == 0 or remaining_s <= 0:
                if busy:
                    self.cut_short = True
                    logger.error(
                        "grace period of %.1f s over with %d requests in flight and %d jobs unfinished",
                        self.grace_s,
                        self.lifecycle.in_flight,
                        busy - self.lifecycle.in_flight,
                    )
                    self.lifecycle.grace_over()  # queued requests are answered 503 rather than cut off
                # uvicorn waits this long for open connections, then cancels their tasks
                self.config.timeout_graceful_shutdown = max(remaining_s, 0.1)
                self.should_exit = True
        return await super().on_tick(counter)


def build_server(app: FastAPI, settings: Settings) -> DrainingServer:
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        timeout_keep_alive=KEEP_ALIVE_S,
        timeout_graceful_shutdown=settings.shutdown_grace_s,
    )
    return DrainingServer(config, app, settings.shutdown_grace_s)


def serve(app: FastAPI, settings: Settings) -> int:
    """Serve until a signal, drain, and return the exit status (0 after a clean drain, 1 when the grace period
    cut requests off, 70 after an unrecoverable device error)."""
    if not settings.api_keys:
        logger.warning(
            "no API keys (EXPLAIN_API_KEYS): every route is open to anyone who can reach %s:%d",
            settings.host,
            settings.port,
        )
    server = build_server(app, settings)
    server.run()
    if server.lifecycle.drain_started is not None:
        logger.info("stopped %.1f s after the signal", time.monotonic() - server.lifecycle.drain_started)
    if server.device_failed:
        return EXIT_DEVICE_ERROR
    return 1 if server.cut_short else 0
