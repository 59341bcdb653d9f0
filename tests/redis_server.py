"""A real Redis server (Debian's `redis-server`) for tests: on a free loopback port, with its data in a temporary
directory (AOF, `appendfsync everysec`, as the deployment runs it), always stopped."""

import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from deploy.stack import redis_server_command
from tests.real_server import free_port


@dataclass
class RedisServer:
    port: int
    directory: Path
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) the server on the same port and data, and wait until it answers."""
        binary = shutil.which("redis-server")
        assert binary, "redis-server is not installed (scripts/install-system-packages redis-server)"
        self.process = subprocess.Popen(
            redis_server_command(binary, self.port, self.directory),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, "redis-server did not answer in 10 s"
                time.sleep(0.05)

    def stop(self) -> None:
        """Stop it as an operator would (SIGTERM: it writes what its AOF has not yet written)."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)


@contextmanager
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="redis-test-")))
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)
