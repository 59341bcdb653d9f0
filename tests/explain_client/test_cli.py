"""The `explain` command line, run as a subprocess against a real server process: files in, overlays and JSON
out, the service's messages on errors, and one exit status per class of error."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from PIL import Image

from explain_client import ExplainClient
from explain_client.cli import EXIT_AUTH, EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_UNREACHABLE
from tests.explain_client.conftest import photo
from tests.real_server import ROOT, free_port

pytestmark = pytest.mark.slow


def explain(*args: str, url: str | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIN_")}
    environment |= {"PYTHONPATH": str(ROOT), **(env or {})}
    command = [sys.executable, "-m", "explain_client.cli", *(["--url", url] if url else []), *args]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


@pytest.fixture
def images(tmp_path: Path) -> list[Path]:
    paths = []
    for seed, name in enumerate(("cat.png", "dog.jpg")):
        path = tmp_path / name
        photo(60, 40, seed=seed).save(path)
        paths.append(path)
    return paths


def test_the_console_script_is_declared():
    scripts = tomllib.loads((ROOT / "clients/python/pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["explain"] == "explain_client.cli:main"


def test_predict_prints_the_top_classes(server, images):
    run = explain("predict", *map(str, images), "--show", "2", env={"EXPLAIN_URL": server.url})
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [str(p) for p in images]
    assert all(line.count("class_") == 2 and "%" in line for line in lines)


def test_explain_writes_overlays_and_answers_and_goes_on_after_a_bad_file(server, images, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not an image")
    out = tmp_path / "out"
    run = explain(
        "explain",
        str(images[0]),
        str(bad),
        str(images[1]),
        "-m",
        "cam",
        "-m",
        "grad_cam",
        "--top-k",
        "2",
        "-o",
        str(out),
        url=server.url,
    )
    assert run.returncode == EXIT_REFUSED
    assert f"{bad}: error: not a readable image" in run.stderr and "415 unsupported_image" in run.stderr
    overlays = sorted(p.name for p in out.glob("*.png"))
    assert len(overlays) == 8  # 2 images x 2 methods x 2 classes
    assert {name.split(".")[1] for name in overlays} == {"cam", "grad_cam"}
    for name in overlays:
        with Image.open(out / name) as overlay:
            assert overlay.format == "PNG" and overlay.size == (60, 40)
    answer = json.loads((out / "cat.json").read_text())
    assert [e["method"] for e in answer["explanations"]] == ["cam", "cam", "grad_cam", "grad_cam"]
    assert not (out / "notes.json").exists()
    assert sum(1 for line in run.stdout.splitlines() if "wrote 4 overlays" in line) == 2


def test_explain_with_metrics_prints_them(server, images):
    run = explain(
        "explain",
        str(images[0]),
        "--metrics",
        "sparseness",
        "--metrics",
        "pointing_game",
        "--target-box",
        "0,0,10,10",
        url=server.url,
    )
    assert run.returncode == 0, run.stderr
    assert re.search(r"grad_cam/\S+ \(sparseness 0\.\d+, pointing_game [01]\)", run.stdout), run.stdout


def test_explain_passes_any_method_or_metric_parameter_by_name(server, images):
    """The tiny model's 32 px input: 1,024 pixels, so a step of 512 values makes 6 steps."""
    run = explain(
        "explain",
        str(images[0]),
        *(
            "-m",
            "lrp",
            "-p",
            "composite=epsilon_plus_flat",
            "--metrics",
            "pixel_flipping",
            "-p",
            "features_in_step=512",
        ),
        url=server.url,
    )
    unknown = explain("explain", str(images[0]), "-p", "no_such_parameter=1", url=server.url)
    malformed = explain("explain", str(images[0]), "-p", "composite", url=server.url)
    assert run.returncode == 0, run.stderr
    assert re.search(r"lrp/\S+ \(pixel_flipping \d", run.stdout), run.stdout
    assert unknown.returncode != 0 and "no_such_parameter" in unknown.stderr
    assert malformed.returncode == 2 and "expected NAME=VALUE" in malformed.stderr


def test_explain_with_classes_and_jpeg_overlays(server, images, tmp_path):
    run = explain(
        "explain",
        str(images[0]),
        "-c",
        "1",
        "-c",
        "class_3",
        "--overlay-format",
        "jpeg",
        "-o",
        str(tmp_path),
        url=server.url,
    )
    assert run.returncode == 0, run.stderr
    assert sorted(p.name for p in tmp_path.glob("cat.*.jpg")) == ["cat.grad_cam.1.jpg", "cat.grad_cam.3.jpg"]


def test_methods_and_models(server):
    methods = explain("methods", url=server.url)
    assert methods.returncode == 0 and {"cam", "grad_cam", "saliency"} <= {
        line.split()[0] for line in methods.stdout.splitlines()
    }
    models = explain("models", url=server.url)
    assert models.returncode == 0 and models.stdout.split()[0] == "tiny"


def test_visualize_writes_the_image(server, tmp_path):
    target = tmp_path / "class1.png"
    run = explain(
        "visualize", "--class", "class_1", "--steps", "5", "--size", "16", "24", "-o", str(target), url=server.url
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(f"wrote {target}: objective")
    with Image.open(target) as image:
        assert image.size == (24, 16)


def test_job_status_and_cancel(server):
    with ExplainClient(server.url) as client:
        job = client.visualize("tiny", class_=0, steps=1000)
    run = explain("job", job.id, "--cancel", url=server.url)
    assert run.returncode == 0, run.stderr
    assert f"{job.id} visualization tiny cancelled" in run.stdout


def test_exit_statuses(server, keyed_server, images):
    image = str(images[0])
    unknown_model = explain("predict", image, "--model", "nope", url=server.url)
    assert unknown_model.returncode == EXIT_NOT_FOUND and "model_not_found" in unknown_model.stderr
    unknown_method = explain("explain", image, "-m", "nope", url=server.url)
    assert unknown_method.returncode == EXIT_REFUSED and "unknown method 'nope'" in unknown_method.stderr
    missing = explain("predict", "/no/such/file.png", "--model", "tiny", url=server.url)
    assert missing.returncode == EXIT_REFUSED and "No such file" in missing.stderr
    no_key = explain("models", url=keyed_server.url)
    assert no_key.returncode == EXIT_AUTH and "missing_api_key" in no_key.stderr
    unreachable = explain("--retries", "0", "models", url=f"http://127.0.0.1:{free_port()}")
    assert unreachable.returncode == EXIT_UNREACHABLE
    usage = explain("explain")
    assert usage.returncode == 2


def test_the_command_line_works_where_torch_cannot_be_imported(server, images):
    blocked = (
        "import sys; sys.modules['torch'] = sys.modules['torchvision'] = sys.modules['timm'] = None; "
        "from explain_client.cli import main; sys.exit(main(sys.argv[1:]))"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EXPLAIN_")} | {"PYTHONPATH": str(ROOT)}
    run = subprocess.run(
        [sys.executable, "-c", blocked, "--url", server.url, "explain", str(images[0]), "-m", "cam"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    assert "explained cam/class_" in run.stdout
