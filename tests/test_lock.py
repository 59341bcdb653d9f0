"""requirements.lock pins every runtime dependency with hashes, agrees with the pyproject files, and is what
this environment was installed from (`make install` installs it with --require-hashes)."""

import importlib.metadata
import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
LOCAL = {"explain-client"}
ENTRY = re.compile(
    r"^([A-Za-z0-9._-]+)==([^\s;]+)(?:\s*;[^\\]*)? \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", re.M
)


def locked() -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes)."""
    text = (ROOT / "requirements.lock").read_text()
    entries = {m[1].lower(): (m[2], m[3].count("--hash=")) for m in ENTRY.finditer(text)}
    requirement_lines = [line for line in text.splitlines() if line and not line.startswith((" ", "#"))]
    assert len(requirement_lines) == len(entries), "every requirement line is name==version with hashes"
    return entries


def test_every_runtime_dependency_is_locked_at_a_version_its_pyproject_admits():
    pins = locked()
    for pyproject in (ROOT / "pyproject.toml", ROOT / "clients/python/pyproject.toml"):
        for text in tomllib.loads(pyproject.read_text())["project"]["dependencies"]:
            requirement = Requirement(text)
            if requirement.name in LOCAL:
                continue
            name = requirement.name.lower()
            assert name in pins, f"{name} ({pyproject.relative_to(ROOT)}) is not in requirements.lock: run make lock"
            assert requirement.specifier.contains(pins[name][0], prereleases=True), (text, pins[name][0])
    assert all(hashes >= 1 for _, hashes in pins.values())


def test_this_environment_has_the_locked_versions():
    for name, (version, _) in locked().items():
        assert importlib.metadata.version(name) == version, name
