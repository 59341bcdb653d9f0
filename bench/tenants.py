"""Two tenants (API keys) on one replica, in one run: tenant B's latency alone, then while tenant A floods.

1. Alone: tenant B's client posts the default request (grad_cam on a 640x480 JPEG) in a closed loop for
   `--seconds`, while a probe reads `/healthz` every 20 ms: B's p50 and p95, `/healthz` p99.
2. Flooded: the same, while tenant A runs at once (a) four closed-loop clients of the same cheap request (4x B's
   rate), (b) long work at A's share of it (`MAX_LONG_TASKS_PER_TENANT`: two 1000-step visualizations), kept
   there as each ends, and (c) a client posting 9 MB hostile JSON bodies (4.5 million class indices) in a loop.
3. The figure: B's p95 flooded / alone (target: at most 2), and `/healthz` p99 during the flood (target:
   under 100 ms); A's answers by status show what its shares refused.

Prints a table and writes bench/out/tenants.csv and .png.

Usage: python bench/tenants.py [--seconds 20] [--device cpu] [--floods cheap,long,hostile]
"""

import argparse
import asyncio
import base64
import sys
import time
from collections import Counter
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.fairness import save_latency_cdf  # noqa: E402
from bench.request_path import MODEL, jpegs, multipart  # noqa: E402
from tests.load import HealthProbe, LoadResult, closed_loop, percentile  # noqa: E402
from tests.real_server import real_server  # noqa: E402

EXPLAIN = f"/v1/models/{MODEL}/explain"
KEY_A = "tenant-a-bench-key-0123456789"
KEY_B = "tenant-b-bench-key-0123456789"
LONG_VISUALIZATION = {"objective": {"kind": "class", "class": 130}, "steps": 1000}


class LongWorkOfA:
    """Keeps tenant A's share of long work busy: starts visualizations until A's share refuses one."""

    def __init__(self, url: str) -> None:
        self.client = httpx.Client(base_url=url, timeout=60, headers={"x-api-key": KEY_A})
        self.running: list[str] = []
        self.answers: Counter[int] = Counter()

    def top_up(self) -> None:
        self.running = [job for job in self.running if self.client.get(job).json()["status"] in ("queued", "running")]
        while True:
            answer = self.client.post(f"/v1/models/{MODEL}/visualizations", json=LONG_VISUALIZATION)
            self.answers[answer.status_code] += 1
            if answer.status_code != 202:
                return
            self.running.append(answer.headers["location"])

    def stop(self) -> None:
        for job in self.running:
            self.client.delete(job)
        self.client.close()


def hostile_json() -> bytes:
    image = base64.b64encode(jpegs()["640x480"]).decode()
    return b'{"image": "' + image.encode() + b'", "class": [' + b",".join([b"0"] * 4_500_000) + b"]}"


async def flood_and_measure(
    port: int, body: bytes, content_type: str, seconds: float, long_work: LongWorkOfA, floods: set[str]
) -> tuple[LoadResult, LoadResult, LoadResult]:
    """B's closed loop while A's `floods` run (`cheap` clients, `hostile` bodies, `long` work); (B's result, A's
    cheap requests, A's hostile bodies)."""
    common = dict(port=port, path=EXPLAIN, timeout_s=120, duration_s=seconds)
    as_a = {"x-api-key": KEY_A}

    async def keep_long_work_topped_up() -> None:
        stop_at = time.monotonic() + seconds
        while "long" in floods and time.monotonic() < stop_at:
            await asyncio.to_thread(long_work.top_up)
            await asyncio.sleep(0.5)

    async def flood(kind: str, **load) -> LoadResult:
        return await closed_loop(**common, **load, headers=as_a) if kind in floods else LoadResult()

    b, cheap_a, hostile_a, _ = await asyncio.gather(
        closed_loop(**common, body=body, content_type=content_type, clients=1, headers={"x-api-key": KEY_B}),
        flood("cheap", body=body, content_type=content_type, clients=4),
        flood("hostile", body=hostile_json(), content_type="application/json", clients=1),
        keep_long_work_topped_up(),
    )
    return b, cheap_a, hostile_a


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--floods", default="cheap,long,hostile", help="what A sends: cheap, long, hostile")
    args = parser.parse_args()
    floods = set(args.floods.split(","))

    body, content_type = multipart(jpegs()["640x480"])
    settings = {"models": MODEL, "log_level": "warning", "device": args.device, "api_keys": f"{KEY_A},{KEY_B}"}
    with real_server(settings, module="service") as server:
        as_b = dict(port=server.port, path=EXPLAIN, body=body, content_type=content_type, timeout_s=120)
        asyncio.run(closed_loop(**as_b, clients=1, duration_s=1.0, headers={"x-api-key": KEY_B}))  # warm-up
        with HealthProbe(server.url) as probe_alone:
            alone = asyncio.run(closed_loop(**as_b, clients=1, duration_s=args.seconds, headers={"x-api-key": KEY_B}))
        long_work = LongWorkOfA(server.url)
        try:
            with HealthProbe(server.url) as probe_flooded:
                flooded, cheap_a, hostile_a = asyncio.run(
                    flood_and_measure(server.port, body, content_type, args.seconds, long_work, floods)
                )
        finally:
            long_work.stop()
    for result in (alone, flooded):
        assert result.total == result.count(200), result.summary()
    rows = [row("B alone", alone, probe_alone.latencies), row("B while A floods", flooded, probe_flooded.latencies)]
    print(f"{MODEL} on {args.device}: tenant B's default request (1 client), {args.seconds:g} s each; A: {args.floods}")
    print(f"{'case':<20}{'answers':>9}{'p50 ms':>9}{'p95 ms':>9}{'healthz p99 ms':>16}")
    for r in rows:
        print(f"{r['case']:<20}{r['answers']:>9}{r['p50_ms']:>9.0f}{r['p95_ms']:>9.0f}{r['healthz_p99_ms']:>16.1f}")
    ratio = rows[1]["p95_ms"] / rows[0]["p95_ms"]
    print(f"B's p95 flooded / alone: {ratio:.2f} ({'met' if ratio <= 2 else 'MISSED'}: at most 2)")
    healthz = rows[1]["healthz_p99_ms"]
    print(f"/healthz p99 during the flood: {healthz:.1f} ms ({'met' if healthz < 100 else 'MISSED'}: under 100 ms)")
    print(f"A's cheap requests: {outcomes(cheap_a)}; hostile bodies: {outcomes(hostile_a)}")
    print(f"A's visualizations: {dict(long_work.answers)} (202 started, 503 refused at its share)")
    write_outputs(rows, alone, flooded, args.device)


def row(case: str, result: LoadResult, healthz: list[float]) -> dict:
    latencies = result.latencies[200]
    return {
        "case": case,
        "answers": len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "healthz_p99_ms": percentile(healthz, 99) * 1000,
    }


def outcomes(result: LoadResult) -> str:
    counts = {str(outcome): len(values) for outcome, values in result.latencies.items()}
    return f"{counts} in {result.duration_s:.0f} s, error codes {result.error_codes}"


def write_outputs(rows: list[dict], alone: LoadResult, flooded: LoadResult, device: str) -> None:
    series = {
        "B alone": alone.latencies[200],
        "B while A floods (4x rate, long work, hostile JSON)": flooded.latencies[200],
    }
    title = f"{MODEL} on {device}: two tenants on one replica"
    save_latency_cdf("tenants", rows, series, "latency of tenant B's default request (ms)", title)


if __name__ == "__main__":
    main()
