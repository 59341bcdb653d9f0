"""`python -m service` sets OpenMP's spin-wait before torch is imported, and keeps an operator's own setting."""

import os
import subprocess
import sys

from tests.real_server import ROOT

PROBE = "import service.__main__, service.core.openmp as o, os; print(o.applied, os.environ.get('GOMP_SPINCOUNT'))"


def probe(**env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=clean | env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_the_entry_point_sets_a_short_spin_before_torch_is_loaded():
    assert probe() == "True 10000"


def test_an_operators_setting_is_kept():
    assert probe(GOMP_SPINCOUNT="300000") == "True 300000"
    assert probe(OMP_WAIT_POLICY="active") == "True None"
