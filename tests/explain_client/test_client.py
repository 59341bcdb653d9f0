"""The sync client against a real server process: catalogue, predict, explain with its parameters, typed errors
carrying the error body, and jobs (submit, wait with progress, events, cancel)."""

import os
import subprocess
import sys

import numpy as np
import pytest

from api_schemas import ExplainParameters
from explain_client import (
    BadRequestError,
    ExplainClient,
    JobError,
    NotFoundError,
    UnsupportedMediaTypeError,
)
from explain_client._calls import ExplainOptions
from tests.explain_client.conftest import photo
from tests.real_server import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def client(server):
    with ExplainClient(server.url, timeout=30) as c:
        yield c


def test_catalogue(client):
    assert [m.name for m in client.models()] == ["tiny"]
    info = client.model("tiny")
    assert info.num_classes == 5 and info.default_layer in info.layers
    methods = {m.name for m in client.methods()}
    assert {"cam", "grad_cam", "saliency"} <= methods


def test_predict_takes_a_pil_image_a_path_bytes_and_a_file(client, tmp_path):
    image = photo()
    path = tmp_path / "photo.png"
    image.save(path)
    answers = [
        client.predict("tiny", image),
        client.predict("tiny", path),
        client.predict("tiny", str(path)),
        client.predict("tiny", path.read_bytes()),
        client.predict("tiny", path.open("rb")),
    ]
    logits = {tuple(a.logits) for a in answers}
    assert len(logits) == 1  # the same image, whatever the input form
    top = answers[0].top_classes[0]
    assert top.index == int(np.argmax(answers[0].logits)) and top.label == f"class_{top.index}"


def test_explain_decodes_maps_and_overlays(client):
    image = photo(60, 40)
    answer = client.explain("tiny", image, method=["cam", "grad_cam"], top_k=2, overlay_max_side=30)
    assert [(e.method, r) for r, e in enumerate(answer.explanations)] == [
        ("cam", 0),
        ("cam", 1),
        ("grad_cam", 2),
        ("grad_cam", 3),
    ]
    first = answer.explanations[0]
    array = first.map_array()
    assert array.dtype == np.float32 and list(array.shape) == first.map.shape
    assert first.overlay_format == "png"
    overlay = first.overlay_image()
    assert overlay.size == (30, 20)  # the posted picture's aspect ratio, long side overlay_max_side
    assert answer.explanation("grad_cam", answer.top_classes[1].index).class_ == answer.explanations[3].class_


def test_both_map_encodings_decode_to_the_same_array(client):
    image = photo(seed=3)
    listed = client.explain("tiny", image, method="grad_cam", classes=[1, "class_3"], include=["map"])
    packed = client.explain(
        "tiny", image, method="grad_cam", classes=[1, "class_3"], include="map", map_encoding="base64"
    )
    assert [e.class_.index for e in packed.explanations] == [1, 3]
    assert packed.explanations[0].overlay_png is None and packed.explanations[0].map.data is None
    for a, b in zip(listed.explanations, packed.explanations, strict=True):
        np.testing.assert_array_equal(a.map_array(), b.map_array())


def test_jpeg_overlays_and_boxes(client):
    answer = client.explain("tiny", photo(), method="cam", overlay_format="jpeg", bbox=True, alpha=0.3)
    item = answer.explanations[0]
    assert item.overlay_format == "jpeg" and item.overlay_image().format == "JPEG"
    assert item.bbox is not None and 0 <= item.bbox.x0 < item.bbox.x1 <= 60


def test_errors_carry_the_error_body(client, server):
    with pytest.raises(BadRequestError) as caught:
        client.explain("tiny", photo(), method="no_such_method")
    error = caught.value
    assert (error.status, error.code) == (400, "unknown_method")
    assert "valid methods" in error.message and error.request_id
    assert error.body["error"]["request_id"] == error.request_id

    with pytest.raises(BadRequestError) as caught:
        client.explain("tiny", photo(), classes="no such label")
    assert caught.value.code == "unknown_class"
    with pytest.raises(BadRequestError) as caught:
        client.explain("tiny", photo(), reference=photo())  # sent as a second file part
    assert caught.value.code == "invalid_parameter" and "embedding models" in caught.value.message
    with pytest.raises(BadRequestError) as caught:
        client.predict("tiny", photo(), threshold=0.5)
    assert caught.value.code == "invalid_parameter" and "multilabel" in caught.value.message
    with pytest.raises(NotFoundError) as caught:
        client.predict("nope", photo())
    assert caught.value.code == "model_not_found"
    with pytest.raises(UnsupportedMediaTypeError) as caught:
        client.predict("tiny", b"%PDF-1.4 not an image")
    assert caught.value.code == "unsupported_image" and caught.value.status == 415


def test_parameters_are_checked_before_sending(client):
    with pytest.raises(ValueError):
        client.explain("tiny", photo(), alpha=2.0)
    with pytest.raises(TypeError, match="unknown explain parameters"):
        client.explain("tiny", photo(), colour="red")


def test_the_typed_options_are_parameters_of_the_api():
    assert set(ExplainOptions.__annotations__) <= set(ExplainParameters.model_fields)


def test_a_visualization_job_reports_progress_and_its_image(client):
    job = client.visualize("tiny", class_="class_2", steps=6, size=[16, 16], seed=1)
    assert job.kind == "visualization" and job.status in ("queued", "running")
    seen = []
    done = client.wait(job, on_progress=seen.append, timeout=60)
    assert done.status == "succeeded" and seen[-1].status == "succeeded"
    progress = [s.progress.done for s in seen]
    assert progress == sorted(progress) and progress[-1] == 6
    assert done.result.image().size == (16, 16)
    events = list(client.events(job))  # a finished job: one last event, with the result
    assert [e.status for e in events] == ["succeeded"] and events[0].result is not None


def test_an_explain_job_gives_the_same_answer_as_a_direct_request(client):
    image = photo(seed=5)
    direct = client.explain("tiny", image, method="score_cam", classes=2)
    job = client.submit_explain("tiny", image, method="score_cam", classes=2)
    assert job.kind == "explain"
    result = client.wait(job, timeout=60).result
    np.testing.assert_allclose(result.explanations[0].map_array(), direct.explanations[0].map_array(), rtol=1e-5)


def test_a_cancelled_job_raises_job_error(client):
    job = client.visualize("tiny", layer="features", channel=3, steps=1000)
    assert client.cancel(job).status == "cancelled"
    with pytest.raises(JobError) as caught:
        client.wait(job)
    assert caught.value.job.status == "cancelled" and caught.value.code == "cancelled"
    with pytest.raises(NotFoundError):
        client.job("no-such-job")


def test_importing_the_client_imports_no_torch():
    code = (
        "import sys, explain_client, explain_client.cli; "
        "assert 'torch' not in sys.modules, 'torch'; assert 'numpy' not in sys.modules, 'numpy'"
    )
    run = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert run.returncode == 0, run.stderr


def test_activations_and_filters(client):
    seen = client.activations("tiny", photo(), top_n=3)
    assert seen.layer == client.model("tiny").default_layer and len(seen.top_channels) == 3
    assert seen.grid_image().format == "PNG"
    kernels = client.filters("tiny")
    assert kernels.shape[1] == 3 and kernels.grid_image().size[0] > 0
    with pytest.raises(BadRequestError):
        client.filters("tiny", layer="no.such.layer")
