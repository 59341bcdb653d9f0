"""The import contract in pyproject.toml (`lint-imports`): the rooms of `service` import downward only, the
HTTP edge, jobs, imaging and the process import no torch, the wire models and the model store stand alone, and
the client needs neither torch nor the service.

The contract holds for the tree as it is, and it fails on a copy of the tree with one deliberate wrong import."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.real_server import ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"PYTHONPATH": str(tree)}  # the copy's packages before the installed ones
    return subprocess.run([LINT_IMPORTS, "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_tree_keeps_the_contract():
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def copy_of_the_tree(tmp_path: Path) -> Path:
    for package in ("service", "model_store", "clients/python/api_schemas", "clients/python/explain_client"):
        source = ROOT / package
        shutil.copytree(source, tmp_path / source.name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("module", "wrong_import", "broken"),
    [
        ("service/core/errors.py", "import service.http.app", "service.core is not allowed to import service.http"),
        ("service/methods/base.py", "import service.engine.worker", "not allowed to import service.engine"),
        ("service/jobs/store.py", "import service.engine.work", "service.jobs is not allowed to import service.engine"),
        ("service/http/auth.py", "import torch", "service.http is not allowed to import torch"),
        ("model_store/labels.py", "import api_schemas", "model_store is not allowed to import api_schemas"),
        ("explain_client/client.py", "import torch", "explain_client is not allowed to import torch"),
    ],
)
def test_a_wrong_import_breaks_the_contract(tmp_path, module, wrong_import, broken):
    tree = copy_of_the_tree(tmp_path)
    with open(tree / module, "a") as source:
        source.write(f"\n{wrong_import}  # deliberately wrong\n")
    done = lint_imports(tree)
    assert done.returncode != 0
    assert broken in done.stdout, done.stdout
