"""Objectives: refused with the right error when they do not fit the model, evaluated row by row in one pass."""

import pytest
import torch

from model_store.store import prepare_model
from service.core.errors import InvalidParameter, MethodNotApplicable, UnknownClass, UnknownLayer
from service.visualization import (
    ChannelObjective,
    ClassObjective,
    NeuronObjective,
    Visualization,
    VisualizationSpec,
    step_together,
    validate_objective,
)
from service.visualization.objectives import evaluate_objectives
from tests.tiny_models import TINY_PREPROCESSING, TinyFlatNet, TinyGapNet, seeded, tiny_loaded


@pytest.mark.parametrize(
    ("objective", "error", "message"),
    [
        (ClassObjective(1000), UnknownClass, "0..999"),
        (ClassObjective(-1), UnknownClass, "out of range"),
        (ChannelObjective("blocks.99", 0), UnknownLayer, "unknown layer 'blocks.99'"),
        (ChannelObjective("classifier", 0), UnknownLayer, "GET /v1/models/efficientnet_lite0"),
        (ChannelObjective("blocks.4", 112), InvalidParameter, "channels 0..111"),
        (NeuronObjective("blocks.4", -1), InvalidParameter, "channels 0..111"),
        (NeuronObjective("blocks.4", 0, x=14, y=0), InvalidParameter, r"x in 0..13, y in 0..13"),
        (NeuronObjective("bn2", 0, x=0, y=7), InvalidParameter, "7 wide and 7 high"),
    ],
)
def test_objectives_that_do_not_fit_the_model_are_refused(builtin_model, objective, error, message):
    with pytest.raises(error, match=message) as caught:
        validate_objective(objective, builtin_model)
    assert caught.value.status == 400


def test_valid_objectives_pass_and_a_neuron_defaults_to_the_centre(builtin_model):
    assert validate_objective(ClassObjective(130), builtin_model) == ClassObjective(130)
    assert validate_objective(ChannelObjective("bn2", 1279), builtin_model) == ChannelObjective("bn2", 1279)
    assert validate_objective(NeuronObjective("bn2", 3), builtin_model) == NeuronObjective("bn2", 3, x=3, y=3)
    assert validate_objective(NeuronObjective("bn1", 3, y=5), builtin_model) == NeuronObjective("bn1", 3, 56, 5)


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")
def test_a_torchscript_model_takes_class_objectives_but_not_layer_objectives():
    scripted = prepare_model(
        name="scripted",
        source="test:script",
        module=torch.jit.script(seeded(TinyGapNet)),
        preprocessing=TINY_PREPROCESSING,
        default_layer=None,
        classifier_layer=None,
        device=torch.device("cpu"),
    )
    vis = Visualization(VisualizationSpec(ClassObjective(4), steps=1), scripted)
    step_together(scripted, [vis])
    assert vis.steps_done == 1
    with pytest.raises(MethodNotApplicable, match="TorchScript"):
        validate_objective(ChannelObjective("features", 0), scripted)


def test_each_row_gets_its_own_objective_in_one_pass():
    model = tiny_loaded("flat", TinyFlatNet)
    inputs = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    objectives = [ClassObjective(2), ChannelObjective("features", 1), NeuronObjective("features", 3, x=5, y=2)]
    calls = []
    handle = model.module.register_forward_hook(lambda *_: calls.append(1))
    try:
        values, logits = evaluate_objectives(model, objectives, inputs)
    finally:
        handle.remove()
    assert len(calls) == 1
    with torch.inference_mode():
        features = model.module.features(inputs)
        expected = torch.stack([model.module(inputs)[0, 2], features[1, 1].mean(), features[2, 3, 2, 5]])
    torch.testing.assert_close(values, expected)
    assert logits.shape == (3, 5)


def test_a_layer_changed_in_place_downstream_is_read_as_the_layer_gave_it(builtin_model):
    # bn1.drop's output is passed through an in-place ReLU6 by bn1.act: the objective reads it before that.
    inputs = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(0)) * 3
    captured = []
    handle = builtin_model.module.bn1.drop.register_forward_hook(lambda _m, _i, out: captured.append(out.clone()))
    try:
        with torch.inference_mode():
            values, _ = evaluate_objectives(builtin_model, [ChannelObjective("bn1.drop", 0)], inputs)
    finally:
        handle.remove()
    assert captured[0][0, 0].min() < 0
    torch.testing.assert_close(values[0], captured[0][0, 0].mean())
