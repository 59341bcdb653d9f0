"""The image built and served: a Debian base made from Debian's own packages (`scripts/make-base-image`:
mmdebstrap, then podman import, since no image registry is reachable here), the Dockerfile's CPU variant built
on it by `scripts/build-image` (podman, chroot isolation; torch from PyPI, whose CUDA build runs on a CPU), its
configuration read back, and the service run in it with `buildah run` on this machine's network (podman run
needs cgroups this machine does not give it), its jobs in a `redis-server` on this machine as compose keeps
them in Redis.

The build is the slow part: about 6 minutes on a fresh 2-core machine (a 6.4 GB image, torch's CUDA libraries
included), and seconds when podman has the layers already.
"""

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.real_server import free_port
from tests.redis_server import RedisServer, redis_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # the first test builds the image
ROOT = Path(__file__).parents[2]
BASE = "localhost/explain-base:bookworm"
IMAGE = "localhost/explain-service:cpu"
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def run(*command: str, timeout: float = 60, **kwargs) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)
    assert done.returncode == 0, f"{command}: {done.stdout[-2000:]}{done.stderr[-2000:]}"
    return done


@pytest.fixture(scope="module")
def image() -> str:
    run(str(ROOT / "scripts" / "make-base-image"), timeout=600, env={**os.environ, "BASE_IMAGE": BASE})
    settings = {"IMAGE": IMAGE, "BASE_IMAGE": BASE, "TORCH_INDEX_URL": "https://pypi.org/simple"}
    if os.path.exists(CA_BUNDLE):
        settings["PIP_CERT"] = os.environ.get("PIP_CERT", CA_BUNDLE)  # the machine's bundle, which pip trusts here
    started = time.monotonic()
    run(str(ROOT / "scripts" / "build-image"), timeout=1800, env={**os.environ, **settings})
    print(f"\nimage built in {time.monotonic() - started:.0f} s")
    return IMAGE


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[str]:
    name = run("buildah", "from", "--pull-never", image).stdout.strip()
    yield name
    subprocess.run(["buildah", "rm", name], capture_output=True, timeout=60)


def in_container(container: str, *command: str, env: dict[str, str] | None = None, **kwargs) -> list[str]:
    """The buildah command that runs `command` in `container` as the image's user, on this machine's network."""
    settings = [f"--env={key}={value}" for key, value in (env or {}).items()]
    return ["buildah", "run", "--isolation", "chroot", "--network", "host", *settings, container, "--", *command]


def test_the_image_s_configuration(image: str):
    (config,) = json.loads(run("podman", "image", "inspect", image).stdout)
    settings = config["Config"]
    assert settings["User"] == "10001:10001"
    assert settings["Entrypoint"] == ["python3", "-m", "service"]
    assert settings["ExposedPorts"] == {"8000/tcp": {}}
    assert config["Healthcheck"]["Test"] == ["CMD", "python3", "/opt/explain/healthcheck.py"]  # docker format
    assert settings["Labels"]["org.opencontainers.image.title"] == "explain-service"
    assert "EXPLAIN_HOST=0.0.0.0" in settings["Env"] and "HF_HUB_OFFLINE=1" in settings["Env"]
    assert not any(variable.startswith("PIP_CERT") for variable in settings["Env"])  # build-time only
    print(f"\nimage size {config['Size'] / 1e9:.2f} GB")


@pytest.fixture
def redis() -> Iterator[RedisServer]:
    with redis_server() as server:
        yield server


def test_the_image_serves_as_an_unprivileged_user_and_drains_on_sigterm(
    container: str, cat_jpeg: bytes, redis: RedisServer
):
    port = free_port()
    # the jobs in Redis (on this machine's loopback, which the container shares), as compose runs it
    env = {"EXPLAIN_PORT": str(port), "EXPLAIN_HOST": "127.0.0.1", "EXPLAIN_JOB_STORE_URL": redis.url}
    served = subprocess.Popen(
        in_container(container, "python3", "-m", "service", env=env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert served.poll() is None, served.stdout.read().decode() if served.stdout else ""
            time.sleep(1)
        else:
            pytest.fail("the service in the image never became ready")

        answer = httpx.post(f"{url}/v1/models/efficientnet_lite0/explain", files={"image": cat_jpeg}, timeout=60)
        assert answer.status_code == 200
        assert "cat" in answer.json()["top_classes"][0]["label"]  # the built-in weights, loaded in the image
        assert answer.json()["explanations"][0]["map"]["shape"] == [7, 7]
        assert httpx.get(f"{url}/readyz").json()["job_store"] == "redis"
        submitted = httpx.post(
            f"{url}/v1/models/efficientnet_lite0/explain",
            files={"image": cat_jpeg},
            headers={"Prefer": "respond-async"},
            timeout=60,
        )
        assert submitted.status_code == 202
        job = submitted.headers["location"]
        while (state := httpx.get(f"{url}{job}", timeout=10).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline + 60, state
            time.sleep(0.2)
        assert state["status"] == "succeeded", state

        service = next(  # buildah-chroot-exec runs it: the service is the Python process under it
            p
            for p in psutil.Process(served.pid).children(recursive=True)
            if p.cmdline()[:1] == ["/opt/venv/bin/python3"]
        )
        assert service.uids().real == 10001 and service.uids().effective == 10001

        healthy = subprocess.run(in_container(container, "python3", "/opt/explain/healthcheck.py", env=env), timeout=60)
        assert healthy.returncode == 0
        writes = (
            "import os, tempfile\n"
            "tempfile.NamedTemporaryFile(dir=tempfile.gettempdir()).close()\n"
            "for path in ('/opt/venv/x', '/opt/explain/x', '/etc/x', '/x'):\n"
            "    try:\n"
            "        open(path, 'w')\n"
            "    except PermissionError:\n"
            "        continue\n"
            "    raise SystemExit(f'wrote {path}')\n"
        )
        confined = subprocess.run(in_container(container, "python3", "-c", writes), capture_output=True, timeout=60)
        assert confined.returncode == 0, confined.stdout + confined.stderr

        service.send_signal(signal.SIGTERM)
        assert served.wait(timeout=60) == 0
        log = served.stdout.read().decode() if served.stdout else ""
        assert "stopped" in log and "after the signal" in log, log[-2000:]
    finally:
        if served.poll() is None:
            served.kill()
            served.wait()
