"""The client's own distribution (clients/python): installed alone into a fresh virtual environment it brings
no torch and no numpy, gives the `explain` command, and talks to a real server."""

import json
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.explain_client.conftest import photo
from tests.real_server import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install clients/python` (from a copy, so that the build leaves the tree alone)."""
    work = tmp_path_factory.mktemp("client-dist")
    source = shutil.copytree(
        ROOT / "clients/python", work / "src", ignore=shutil.ignore_patterns("*.egg-info", "build")
    )
    environment = work / "venv"
    venv.create(environment, with_pip=True)
    done = subprocess.run(
        [environment / "bin/python", "-m", "pip", "install", "--quiet", "--disable-pip-version-check", source],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return environment


def installed(environment: Path) -> set[str]:
    listing = subprocess.run(
        [environment / "bin/python", "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
        capture_output=True,
        text=True,
        check=True,
    )
    return {package["name"].lower() for package in json.loads(listing.stdout)}


def test_the_client_installs_without_torch_or_numpy(client_venv):
    packages = installed(client_venv)
    assert {"explain-client", "httpx", "pydantic"} <= packages
    assert not packages & {"torch", "numpy", "pillow", "explain-service", "fastapi"}
    probe = "import api_schemas, explain_client, sys; print(sorted(m for m in ('torch', 'numpy') if m in sys.modules))"
    done = subprocess.run([client_venv / "bin/python", "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_explain_command_runs_against_a_real_server(client_venv, server, tmp_path):
    help_text = subprocess.run([client_venv / "bin/explain", "--help"], capture_output=True, text=True, timeout=60)
    assert help_text.returncode == 0 and "predict" in help_text.stdout

    image = tmp_path / "picture.png"
    photo(60, 40).save(image)
    run = subprocess.run(
        [client_venv / "bin/explain", "--url", server.url, "predict", str(image), "--show", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"{image}:") and run.stdout.count("%") == 2, run.stdout
