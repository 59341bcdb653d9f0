"""Plots of a locust run (`make loadtest`): requests per second and latency percentiles over time, from locust's
`--csv-full-history` file, and answers by status from the locustfile's statuses.csv; plus the summary table.

    python loadtest/plots.py loadtest/out    # reads run_stats_history.csv, run_stats.csv, statuses.csv
"""

import csv
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


def number(value: str) -> float:
    return float(value) if value not in ("", "N/A") else float("nan")


def plot_over_time(out: Path) -> None:
    history = [r for r in rows(out / "run_stats_history.csv") if r["Name"] == "Aggregated"]
    start = int(history[0]["Timestamp"])
    seconds = [int(r["Timestamp"]) - start for r in history]
    figure, (rps, latency) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    rps.plot(seconds, [number(r["Requests/s"]) for r in history], label="requests/s")
    rps.plot(seconds, [number(r["Failures/s"]) for r in history], label="failures/s")
    rps.set_ylabel("per second")
    rps.legend()
    for column in ("50%", "95%", "99%"):
        latency.plot(seconds, [number(r[column]) for r in history], label=f"p{column.rstrip('%')}")
    latency.set_ylabel("latency (ms)")
    latency.set_xlabel("seconds since start")
    latency.legend()
    figure.suptitle("explain service under load (locust)")
    figure.tight_layout()
    figure.savefig(out / "over_time.png", dpi=100)


def plot_statuses(out: Path) -> None:
    statuses = rows(out / "statuses.csv")
    labels = [f"{r['name']}\n{r['status']}" for r in statuses]
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.barh(labels, [int(r["count"]) for r in statuses])
    axes.set_xlabel("answers")
    axes.set_title("answers by request and status")
    figure.tight_layout()
    figure.savefig(out / "statuses.png", dpi=100)


def summary(out: Path) -> str:
    lines = [f"{'request':32} {'count':>7} {'fail':>5} {'rps':>6} {'p50':>6} {'p95':>6} {'p99':>6}  (ms)"]
    for r in rows(out / "run_stats.csv"):
        lines.append(
            f"{r['Name'] or r['Type']:32} {r['Request Count']:>7} {r['Failure Count']:>5} "
            f"{number(r['Requests/s']):6.1f} {r['50%']:>6} {r['95%']:>6} {r['99%']:>6}"
        )
    return "\n".join(lines)


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "loadtest/out")
    plot_over_time(out)
    plot_statuses(out)
    table = summary(out)
    (out / "summary.txt").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
