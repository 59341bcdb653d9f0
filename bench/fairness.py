"""Fairness in one run: the default request's latency alone, then while long work runs on the same model.

1. Two closed-loop clients post the default request (grad_cam on a 640x480 JPEG) for `--seconds`: p50, p95.
2. One score_cam request at the built-in model's default layer (1280 extra passes, sent as a job) and two
   feature-visualization jobs start; the same two clients post again for `--seconds`.
3. The long work is cancelled. The ratio of the p95s is the figure (target: at most 2); the progress the long
   work made meanwhile shows that it was not starved either.

Prints a table and writes bench/out/fairness.csv and .png.

Usage: python bench/fairness.py [--seconds 20] [--device cpu]
"""

import argparse
import asyncio
import csv
import sys
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parents[1]))

from bench.request_path import MODEL, OUT, jpegs, multipart  # noqa: E402
from tests.load import closed_loop, percentile  # noqa: E402
from tests.real_server import real_server  # noqa: E402

EXPLAIN = f"/v1/models/{MODEL}/explain"


def measure(port: int, body: bytes, content_type: str, seconds: float) -> list[float]:
    load = dict(port=port, path=EXPLAIN, body=body, content_type=content_type, timeout_s=120)
    asyncio.run(closed_loop(**load, clients=2, duration_s=1.0))
    result = asyncio.run(closed_loop(**load, clients=2, duration_s=seconds))
    assert result.total == result.count(200), result.summary()
    return result.latencies[200]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    jpeg = jpegs()["640x480"]
    body, content_type = multipart(jpeg)
    rows = []
    with real_server({"models": MODEL, "log_level": "warning", "device": args.device}, module="service") as server:
        alone = measure(server.port, body, content_type, args.seconds)
        with httpx.Client(base_url=server.url, timeout=60) as client:
            long_work = [
                client.post(
                    EXPLAIN,
                    params={"method": "score_cam"},
                    files={"image": ("cat.jpg", jpeg, "image/jpeg")},
                    headers={"prefer": "respond-async"},
                ).headers["location"]
            ]
            for class_index in (130, 9):  # flamingo, ostrich
                visualization = {"objective": {"kind": "class", "class": class_index}, "steps": 1000}
                accepted = client.post(f"/v1/models/{MODEL}/visualizations", json=visualization)
                long_work.append(accepted.headers["location"])
            loaded = measure(server.port, body, content_type, args.seconds)
            progress = [client.get(location).json() for location in long_work]
            for location in long_work:
                client.delete(location)
    for name, latencies in (("alone", alone), ("with long work", loaded)):
        rows.append(
            {
                "case": name,
                "answers": len(latencies),
                "p50_ms": percentile(latencies, 50) * 1000,
                "p95_ms": percentile(latencies, 95) * 1000,
                "max_ms": max(latencies) * 1000,
            }
        )
    print(f"{MODEL} on {args.device}: 2 clients posting the default request, {args.seconds:g} s each")
    print(f"{'case':<16}{'answers':>9}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    for row in rows:
        print(f"{row['case']:<16}{row['answers']:>9}{row['p50_ms']:>9.0f}{row['p95_ms']:>9.0f}{row['max_ms']:>9.0f}")
    ratio = rows[1]["p95_ms"] / rows[0]["p95_ms"]
    print(f"p95 with long work / alone: {ratio:.2f} ({'met' if ratio <= 2 else 'MISSED'}: at most 2)")
    for job in progress:
        print(f"  meanwhile {job['kind']:<13} {job['status']:<9} {job['progress']['done']}/{job['progress']['total']}")
    write_outputs(rows, alone, loaded, args.device)


def write_outputs(rows: list[dict], alone: list[float], loaded: list[float], device: str) -> None:
    series = {"alone": alone, "with score_cam + 2 visualizations": loaded}
    title = f"{MODEL} on {device}: 2 clients, with and without long work"
    save_latency_cdf("fairness", rows, series, "latency of the default request (ms)", title)


def save_latency_cdf(stem: str, rows: list[dict], series: dict[str, list[float]], xlabel: str, title: str) -> None:
    """`rows` as bench/out/<stem>.csv, and the latencies (seconds) of each series as cumulative distributions,
    with the 95th percentile marked, in bench/out/<stem>.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    with open(OUT / f"{stem}.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, latencies in series.items():
        ordered = sorted(x * 1000 for x in latencies)
        ax.plot(ordered, [(i + 1) / len(ordered) for i in range(len(ordered))], label=name)
    ax.axhline(0.95, color="grey", lw=0.8, ls=":")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("fraction of answers")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(OUT / f"{stem}.png", dpi=120)
    print(f"saved {OUT / f'{stem}.csv'} and {OUT / f'{stem}.png'}")


if __name__ == "__main__":
    main()
