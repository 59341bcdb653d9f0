"""The local stack (`deploy/stack.py`: nginx in front of replicas) as a real process for tests, always stopped."""

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).parents[2]
STACK = ROOT / "deploy" / "stack.py"


@dataclass
class RunningStack:
    url: str
    replicas: dict[str, dict[str, int]]
    """`replica-i` -> {"port", "pid"}."""
    access_log: Path
    nginx_pid: int
    process: subprocess.Popen
    log_path: Path
    redis_url: str | None = None
    """With `jobs="redis"`: the stack's Redis."""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal_replica(self, name: str, signum: int) -> None:
        os.kill(self.replicas[name]["pid"], signum)

    def replica_exited(self, name: str) -> bool:
        try:
            os.kill(self.replicas[name]["pid"], 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{self.replicas[name]['pid']}/stat") as stat:  # a zombie has exited, not yet reaped
            return stat.read().split(") ")[-1].startswith("Z")


def free_ports(count: int) -> int:
    """A base port such that `count` consecutive ports from it are free on 127.0.0.1 (now)."""
    for _ in range(100):
        base = random.randrange(20_000, 60_000)
        try:
            sockets = []
            for offset in range(count):
                s = socket.socket()
                sockets.append(s)
                s.bind(("127.0.0.1", base + offset))
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise AssertionError("no run of free ports found")


@contextmanager
def running_stack(
    replicas: int = 2,
    rate_per_s: int = 10_000,
    burst: int = 10_000,
    env: dict[str, str] | None = None,
    jobs: str = "memory",
) -> Iterator[RunningStack]:
    """`deploy/stack.py` serving the tiny model (`tests.serve_tiny`) on free loopback ports; `env` adds
    `EXPLAIN_*` / `TINY_*` variables for the replicas; `jobs="redis"`: with its redis-server for their jobs."""
    port = free_ports(replicas + 2)
    state = Path(tempfile.mkdtemp(prefix="stack-test-")) / "state.json"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLAIN_", "TINY_", "GATEWAY_"))}
    full_env = clean | {"EXPLAIN_DEVICE": "cpu"} | (env or {})
    command = [
        sys.executable,
        str(STACK),
        "--module",
        "tests.serve_tiny",
        "--port",
        str(port),
        "--replicas",
        str(replicas),
        "--rate",
        str(rate_per_s),
        "--burst",
        str(burst),
        "--state",
        str(state),
        "--jobs",
        jobs,
    ]
    with tempfile.NamedTemporaryFile(prefix="stack-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        process = subprocess.Popen(command, cwd=ROOT, env=full_env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while not state.exists():
            exited = process.poll()
            assert exited is None, f"the stack exited with {exited}:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"the stack was not ready in 180 s:\n{log_path.read_text()[-3000:]}"
            time.sleep(0.1)
        info = json.loads(state.read_text())
        stack = RunningStack(
            info["gateway"], info["replicas"], Path(info["access_log"]), info["nginx_pid"], process, log_path
        )
        if jobs == "redis":
            stack.redis_url = f"redis://127.0.0.1:{port + replicas + 1}/0"
        assert httpx.get(stack.url + "/readyz", timeout=10).status_code == 200
        yield stack
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise AssertionError(f"the stack did not stop in 60 s of SIGTERM:\n{log_path.read_text()[-3000:]}")
        state.unlink(missing_ok=True)
        state.parent.rmdir()
        log_path.unlink(missing_ok=True)
