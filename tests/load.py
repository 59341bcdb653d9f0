"""A closed-loop load generator for real-process tests: N clients on their own keep-alive connections, each
posting again as soon as it is answered.

Plain asyncio streams speaking HTTP/1.1, so that the generator costs little CPU next to the server on the
same machine (an httpx client with 64 connections is slower than the server it measures).
"""

import asyncio
import json
import threading
import time
from dataclasses import dataclass, field

import httpx


@dataclass
class LoadResult:
    """Latencies in seconds by outcome: status code, or the name of the exception that ended the request."""

    latencies: dict[int | str, list[float]] = field(default_factory=dict)
    error_codes: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    stages: dict[str, list[float]] = field(default_factory=dict)
    """Milliseconds by stage name, from the `Server-Timing` header of the 2xx answers."""
    answer_bytes: int = 0
    """Bytes of the 2xx answers' bodies, together."""

    def count(self, outcome: int | str) -> int:
        return len(self.latencies.get(outcome, []))

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.latencies.values())

    def summary(self) -> str:
        lines = [f"{self.total} answers in {self.duration_s:.1f} s; error codes {self.error_codes}"]
        for outcome, values in sorted(self.latencies.items(), key=lambda kv: str(kv[0])):
            lines.append(
                f"  {outcome}: n={len(values)} p50={percentile(values, 50) * 1000:.0f} ms "
                f"p99={percentile(values, 99) * 1000:.0f} ms max={max(values) * 1000:.0f} ms"
            )
        return "\n".join(lines)


class HealthProbe:
    """Reads `/healthz` every 20 ms on a thread of its own while in its `with` block, and keeps the latencies (in
    seconds) of the answers, every one of which must be 200."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def __enter__(self) -> "HealthProbe":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        assert not self.failures, self.failures[:3]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as client:
            while not self._done.is_set():
                started = time.perf_counter()
                status = client.get("/healthz").status_code
                self.latencies.append(time.perf_counter() - started)
                if status != 200:
                    self.failures.append(f"/healthz answered {status}")
                time.sleep(0.02)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    ordered = sorted(values)
    rank = int(-(-q * len(ordered) // 100)) - 1  # ceil(q/100 * n) - 1
    return ordered[min(max(rank, 0), len(ordered) - 1)]


def server_timing(header: str) -> dict[str, float]:
    """`decode;dur=3.1, queue;dur=0.4` -> {"decode": 3.1, "queue": 0.4} (W3C Server Timing)."""
    timings = {}
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if name and key == "dur":
                timings[name] = float(value)
    return timings


async def _exchange(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes
) -> tuple[int, dict[str, str], bytes]:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return int(status_line.split()[1]), headers, body


async def closed_loop(
    port: int,
    path: str,
    body: bytes,
    content_type: str,
    clients: int,
    duration_s: float,
    timeout_s: float,
    max_requests: int | None = None,
    headers: dict[str, str] | None = None,
) -> LoadResult:
    """`clients` loops posting `body` to `path` on 127.0.0.1:`port` for `duration_s` (or until `max_requests`
    have been sent), with `headers` besides the content's; records every answer."""
    result = LoadResult()
    sent = 0
    extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{extra}"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    stop_at = time.monotonic() + duration_s

    async def loop() -> None:
        nonlocal sent
        connection = None
        while time.monotonic() < stop_at and (max_requests is None or sent < max_requests):
            sent += 1
            started = time.perf_counter()
            try:
                if connection is None:
                    connection = await asyncio.open_connection("127.0.0.1", port)
                status, headers, answer = await asyncio.wait_for(_exchange(*connection, request), timeout_s)
                outcome: int | str = status
                if status >= 400:
                    code = json.loads(answer)["error"]["code"]
                    result.error_codes[code] = result.error_codes.get(code, 0) + 1
                else:
                    result.answer_bytes += len(answer)
                    for name, milliseconds in server_timing(headers.get("server-timing", "")).items():
                        result.stages.setdefault(name, []).append(milliseconds)
                if headers.get("connection", "").lower() == "close":
                    connection[1].close()
                    connection = None
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                outcome = type(exc).__name__
                if connection is not None:
                    connection[1].close()
                connection = None
            result.latencies.setdefault(outcome, []).append(time.perf_counter() - started)
        if connection is not None:
            connection[1].close()

    began = time.monotonic()
    await asyncio.gather(*(loop() for _ in range(clients)))
    result.duration_s = time.monotonic() - began
    return result
