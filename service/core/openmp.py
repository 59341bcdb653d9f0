"""How long torch's OpenMP threads spin before they sleep, set for the server before torch loads libgomp.

torch runs its CPU kernels on an OpenMP team. Between two parallel regions libgomp's threads spin-wait
(`GOMP_SPINCOUNT`, 300000 spins by default) before they sleep. In this server the cores are shared with the
threads that decode and encode images and with uvicorn's: a team thread that spins takes a core they need, and a
team thread they preempt makes the other one spin longer at the next barrier. A short spin keeps the model's
back-to-back regions fast and gives the cores back between them. One sweep, default request, 16 clients, two
cores, batches of 4, against the in-process limit: 1000 spins 0.77, 10000 0.83, 100000 0.74, the default 0.75;
one client's latency did not change.

Imported first by `python -m service`, so that it runs before torch is imported; a value the operator set
(`GOMP_SPINCOUNT`, or `OMP_WAIT_POLICY`) is kept.
"""

import os
import sys

SPIN_COUNT = "10000"

applied = "torch" not in sys.modules
"""Whether this ran before torch was loaded (only then does libgomp read the setting)."""
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ.setdefault("GOMP_SPINCOUNT", SPIN_COUNT)
