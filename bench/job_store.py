"""The load test (`loadtest/locustfile.py`: default requests, a dashboard's, predicts, jobs submitted and
followed to their result, bad inputs) through the local stack (`deploy/stack.py`: nginx and 2 replicas of the
built-in model), once with the jobs in each replica's memory and once in Redis, one after the other in one run.

Prints both summaries side by side (requests per second, p50/p95/p99, failures by request kind) and writes
bench/out/job_store.csv and .png (p50 and p95 of each request kind, per store), and each run's locust files
under bench/out/job_store_<store>/.

Usage: python bench/job_store.py [--seconds 60] [--users 8] [--replicas 2]
"""

import argparse
import csv
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).parents[1]
OUT = ROOT / "bench" / "out"
STORES = ("memory", "redis")


def run_stack(jobs: str, replicas: int, port: int) -> tuple[subprocess.Popen, str]:
    state = Path(tempfile.mkdtemp(prefix="bench-stack-")) / "state.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXPLAIN_", "GATEWAY_"))} | {
        "EXPLAIN_DEVICE": "cpu"
    }
    command = [sys.executable, "deploy/stack.py", "--port", str(port), "--replicas", str(replicas)]
    command += ["--rate", "10000", "--burst", "10000", "--jobs", jobs, "--state", str(state)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 600
    while not state.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the stack ({jobs}) did not start")
        time.sleep(0.5)
    return process, json.loads(state.read_text())["gateway"]


def run_locust(url: str, out: Path, seconds: int, users: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "locust", "-f", "loadtest/locustfile.py", "--headless", "--host", url]
    command += ["--users", str(users), "--spawn-rate", str(users), "--run-time", f"{seconds}s"]
    command += ["--csv", str(out / "run"), "--csv-full-history", "--html", str(out / "report.html"), "--only-summary"]
    env = os.environ | {"LOADTEST_OUT": str(out)}
    subprocess.run(command, cwd=ROOT, env=env, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stats(out: Path) -> dict[str, dict[str, str]]:
    with open(out / "run_stats.csv", newline="") as file:
        return {row["Name"]: row for row in csv.DictReader(file)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--replicas", type=int, default=2)
    args = parser.parse_args()
    results = {}
    for jobs in STORES:
        port = random.randrange(20_000, 50_000)
        process, url = run_stack(jobs, args.replicas, port)
        try:
            out = OUT / f"job_store_{jobs}"
            run_locust(url, out, args.seconds, args.users)
            results[jobs] = stats(out)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=120)
    names = [name for name in results["memory"] if name in results["redis"]]
    header = f"{'request':28}" + "".join(f" | {s:>6} n  fail   rps   p50   p95   p99" for s in STORES)
    print(header)
    rows = []
    for name in names:
        line = f"{name:28}"
        for jobs in STORES:
            r = results[jobs][name]
            rps = float(r["Requests/s"])
            line += f" | {r['Request Count']:>8} {r['Failure Count']:>5} {rps:5.2f}"
            line += f" {r['50%']:>5} {r['95%']:>5} {r['99%']:>5}"
            rows.append(
                [name, jobs, r["Request Count"], r["Failure Count"], f"{rps:.3f}", r["50%"], r["95%"], r["99%"]]
            )
        print(line)
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "job_store.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["request", "store", "count", "failures", "rps", "p50_ms", "p95_ms", "p99_ms"])
        writer.writerows(rows)
    figure, axes = plt.subplots(figsize=(10, 5))
    width = 0.2
    for offset, (jobs, column) in enumerate((s, c) for s in STORES for c in ("50%", "95%")):
        values = [float(results[jobs][name][column]) for name in names]
        axes.barh([i + offset * width for i in range(len(names))], values, height=width, label=f"{jobs} p{column[:-1]}")
    axes.set_yticks([i + 1.5 * width for i in range(len(names))], names)
    axes.set_xscale("log")
    axes.set_xlabel("latency (ms, log scale)")
    axes.set_title(
        f"load test through the stack ({args.replicas} replicas, {args.users} users): jobs in memory vs Redis"
    )
    axes.legend()
    figure.tight_layout()
    figure.savefig(OUT / "job_store.png", dpi=100)


if __name__ == "__main__":
    main()
