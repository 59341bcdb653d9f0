"""The load test runs: locust, headless, with loadtest/locustfile.py through the local stack (tiny model) for a
few seconds; every request kind is answered as expected, and the report, CSVs and plots are written."""

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.stack_process import running_stack

pytestmark = pytest.mark.slow
ROOT = Path(__file__).parents[2]


def test_locust_through_the_stack_writes_the_report_and_plots(tmp_path: Path):
    env = {"LOADTEST_MODEL": "tiny", "LOADTEST_OUT": str(tmp_path)}
    with running_stack() as stack:
        locust = subprocess.run(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                "loadtest/locustfile.py",
                "--headless",
                "--host",
                stack.url,
                "--users",
                "6",
                "--spawn-rate",
                "6",
                "--run-time",
                "10s",
                "--csv",
                str(tmp_path / "run"),
                "--csv-full-history",
                "--html",
                str(tmp_path / "report.html"),
                "--only-summary",
            ],
            cwd=ROOT,
            env={**env, "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert locust.returncode == 0, locust.stdout[-3000:] + locust.stderr[-3000:]  # 1 when any request failed
    with open(tmp_path / "statuses.csv", newline="") as file:
        statuses = {(r["name"], int(r["status"])) for r in csv.DictReader(file)}
    by_name = {name for name, _ in statuses}
    assert {"explain grad_cam", "predict"} <= by_name
    expected = {
        "explain grad_cam": 200,
        "explain 3 methods x top-3": 200,
        "predict": 200,
        "job: submit": 202,
        "job: events": 200,
        "job: done": 0,  # no answer of its own: the time from the submit to the result
        "bad: not an image": 415,
        "bad: unknown method": 400,
    }
    assert all(status == expected[name] for name, status in statuses), statuses
    plots = subprocess.run(
        [sys.executable, "loadtest/plots.py", str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert plots.returncode == 0, plots.stderr
    assert "Aggregated" in plots.stdout
    for name in ("report.html", "over_time.png", "statuses.png", "summary.txt", "run_stats.csv"):
        assert (tmp_path / name).stat().st_size > 0, name
