"""Real server processes for tests: start `python -m tests.serve_tiny` on a free loopback port, wait until it
is ready, read its metrics and memory, and always stop it."""

import os
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

ROOT = Path(__file__).parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class RealServer:
    url: str
    port: int
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def rss_kib(self) -> int:
        """Resident memory of the server process (VmRSS of /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS line")

    def metrics(self) -> dict[str, float]:
        """The Prometheus samples by full name, e.g. `explain_batch_size_sum{model="tiny"}`."""
        text = httpx.get(f"{self.url}/metrics", timeout=10).text
        samples = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                samples[name] = float(value)
        return samples

    def terminate(self, timeout_s: float) -> int:
        """SIGTERM, then the exit status (killed, and the test failed, if it takes longer than `timeout_s`)."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(
                f"the server did not exit within {timeout_s} s of SIGTERM:\n{self.log()[-3000:]}"
            ) from None


@contextmanager
def real_server(
    settings: dict[str, str],
    forward_s: float = 0.0,
    report: Path | None = None,
    device_fault_on_white: bool = False,
    module: str = "tests.serve_tiny",
) -> Iterator[RealServer]:
    """A running `python -m <module>` process (the tiny model by default, `service` for the built-in one) with
    these `EXPLAIN_*` settings (names without the prefix; the device is the CPU unless they name one)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLAIN_", "TINY_"))}
    env |= {"EXPLAIN_DEVICE": "cpu"} | {f"EXPLAIN_{k.upper()}": str(v) for k, v in settings.items()}
    env |= {"EXPLAIN_PORT": str(port), "TINY_FORWARD_S": str(forward_s)}
    if report is not None:
        env["TINY_REPORT"] = str(report)
    if device_fault_on_white:
        env["TINY_DEVICE_FAULT_ON_WHITE"] = "1"
    with tempfile.NamedTemporaryFile(prefix="server-", suffix=".log", delete=False) as log:
        log_path = Path(log.name)
        process = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    server = RealServer(f"http://127.0.0.1:{port}", port, process, log_path)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the server exited with {process.returncode}:\n{server.log()[-3000:]}"
            try:
                if httpx.get(f"{server.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server was not ready in 120 s"
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log_path.unlink(missing_ok=True)
