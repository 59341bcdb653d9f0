"""Activation maximization on the built-in model: it finds its target, it is reproducible, it leaves the model alone."""

import io

import pytest
import torch
from PIL import Image

from model_store import LoadedModel
from service.core.errors import InvalidParameter
from service.visualization import (
    ChannelObjective,
    ClassObjective,
    NeuronObjective,
    Visualization,
    VisualizationSpec,
    describe,
    encode_image_png,
    step_together,
)
from service.visualization.engine import validate_spec
from tests.tiny_models import tiny_loaded

FLAMINGO = 130


def run(model: LoadedModel, *visualizations: Visualization) -> None:
    while not all(vis.done for vis in visualizations):
        step_together(model, [vis for vis in visualizations if not vis.done])


def png(vis: Visualization) -> bytes:
    return encode_image_png(vis.image().numpy())


def test_a_class_visualization_is_classified_as_its_class(builtin_model):
    vis = Visualization(VisualizationSpec(ClassObjective(FLAMINGO), steps=64, size=(128, 128)), builtin_model)
    before = describe(builtin_model, vis)
    run(builtin_model, vis)
    after = describe(builtin_model, vis)
    assert before.logits.argmax() != FLAMINGO
    assert after.logits.argmax() == FLAMINGO and torch.from_numpy(after.logits).softmax(0)[FLAMINGO] >= 0.9
    assert after.objective == pytest.approx(after.logits[FLAMINGO])
    assert vis.steps_done == 64 and vis.last_objective is not None

    # A feature, not adversarial noise: still top-1 after the PNG is shrunk to 80% and saved as JPEG at 85.
    picture = Image.open(io.BytesIO(png(vis))).resize((102, 102), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=85)
    inputs = builtin_model.preprocessing.to_tensor(Image.open(buffer))[None]
    with torch.inference_mode():
        assert int(builtin_model.module(inputs).argmax()) == FLAMINGO


def test_channel_and_neuron_objectives_increase_batched_together(builtin_model):
    channel = Visualization(VisualizationSpec(ChannelObjective("blocks.4", 17), steps=12, size=(64, 64)), builtin_model)
    neuron = Visualization(VisualizationSpec(NeuronObjective("blocks.4", 17), steps=12, size=(64, 64)), builtin_model)
    assert neuron.spec.objective == NeuronObjective("blocks.4", 17, x=7, y=7)  # the centre of 14 x 14
    start = [describe(builtin_model, vis).objective for vis in (channel, neuron)]
    run(builtin_model, channel, neuron)
    end = [describe(builtin_model, vis).objective for vis in (channel, neuron)]
    assert end[0] > start[0] + 1.0 and end[1] > start[1] + 1.0, (start, end)


def test_same_seed_same_png_and_a_batch_changes_nothing_on_the_tiny_model():
    model = tiny_loaded()
    spec = VisualizationSpec(ClassObjective(2), steps=20, size=(40, 40), seed=7)
    alone, again = Visualization(spec, model), Visualization(spec, model)
    run(model, alone)
    run(model, again)
    assert png(alone) == png(again)

    other = Visualization(VisualizationSpec(ClassObjective(2), steps=20, size=(40, 40), seed=8), model)
    assert png(other) != png(alone)
    batched = Visualization(spec, model)
    companions = [
        other,
        Visualization(VisualizationSpec(ChannelObjective("features", 3), steps=20, size=(24, 32)), model),
        Visualization(VisualizationSpec(ClassObjective(0), steps=20, fourier=False, transforms=False), model),
    ]
    run(model, companions[0], batched, *companions[1:])
    assert png(batched) == png(alone)


def test_same_seed_same_png_on_the_builtin_model(builtin_model):
    spec = VisualizationSpec(ClassObjective(FLAMINGO), steps=4, size=(48, 48), seed=3)
    first, second = Visualization(spec, builtin_model), Visualization(spec, builtin_model)
    run(builtin_model, first)
    run(builtin_model, second)
    assert png(first) == png(second)


@pytest.mark.parametrize(
    "switches",
    [
        {"fourier": False},
        {"decorrelate": False},
        {"transforms": False},
        {"fourier": False, "decorrelate": False, "transforms": False},
    ],
)
def test_each_switch_still_climbs_the_objective(builtin_model, switches):
    vis = Visualization(VisualizationSpec(ClassObjective(FLAMINGO), steps=32, size=(48, 40), **switches), builtin_model)
    start = describe(builtin_model, vis).objective
    run(builtin_model, vis)
    image = vis.image()
    assert image.shape == (3, 48, 40) and image.min() >= 0 and image.max() <= 1
    assert describe(builtin_model, vis).objective > start + 1.0


def test_the_warm_model_is_untouched(builtin_model):
    module = builtin_model.module
    before = {k: v.clone() for k, v in module.state_dict().items()}
    run(
        builtin_model,
        Visualization(VisualizationSpec(ClassObjective(FLAMINGO), steps=2, size=(32, 32)), builtin_model),
        Visualization(VisualizationSpec(ChannelObjective("bn1.drop", 0), steps=2, size=(32, 32)), builtin_model),
    )
    for submodule in module.modules():
        assert not submodule._forward_hooks and not submodule._forward_pre_hooks and not submodule._backward_hooks
        assert submodule.training is False
    for name, parameter in module.named_parameters():
        assert parameter.grad is None and parameter.requires_grad is False, name
    for key, value in module.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"steps": 0}, "steps"),
        ({"size": (8, 64)}, "size"),
        ({"size": (64, 2048)}, "size"),
        ({"seed": -1}, "seed"),
        ({"lr": 0.0}, "lr"),
        ({"lr": float("nan")}, "lr"),
    ],
)
def test_bad_specs_are_refused(change, message):
    with pytest.raises(InvalidParameter, match=message):
        validate_spec(VisualizationSpec(ClassObjective(0), **change), tiny_loaded())


def test_the_spec_defaults_follow_lucid_and_the_model():
    spec = validate_spec(VisualizationSpec(ClassObjective(0)), tiny_loaded())
    assert (spec.steps, spec.size, spec.seed, spec.lr) == (256, (32, 32), 0, 0.05)
    assert spec.fourier and spec.decorrelate and spec.transforms


def test_visualizations_of_another_model_are_refused():
    model, other = tiny_loaded(), tiny_loaded("other")
    with pytest.raises(ValueError, match="model 'tiny'"):
        step_together(model, [Visualization(VisualizationSpec(ClassObjective(0)), other)])
