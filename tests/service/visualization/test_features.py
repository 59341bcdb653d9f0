"""Feature maps of a layer and first-layer filters (the torch side)."""

import pytest
import torch

from service.core.errors import InvalidParameter, UnknownLayer
from service.visualization import (
    feature_maps,
    filter_layers,
    filter_weights,
    layer_activations,
    normalize_kernels,
)
from tests.tiny_models import tiny_loaded


def test_feature_maps_are_the_means_and_the_top_channels_raw_maps():
    activation = torch.randn(6, 5, 4, generator=torch.Generator().manual_seed(0))
    activation[4] += 10
    activation[1] += 5
    maps = feature_maps(activation, top_n=3)
    torch.testing.assert_close(maps.means, activation.mean(dim=(1, 2)))
    assert maps.channels.tolist()[:2] == [4, 1] and len(maps.channels) == 3
    assert torch.equal(maps.maps, activation[maps.channels])
    assert len(feature_maps(activation, top_n=100).channels) == 6
    with pytest.raises(InvalidParameter, match="top_n"):
        feature_maps(activation, top_n=0)


def test_layer_activations_are_the_layers_output_and_leave_no_hook():
    model = tiny_loaded()
    inputs = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        expected = model.module.features(model.module.stem(inputs))
    torch.testing.assert_close(layer_activations(model, inputs, "features"), expected)
    assert all(not m._forward_hooks for m in model.module.modules())
    with pytest.raises(UnknownLayer):
        layer_activations(model, inputs, "nope")


def test_filters_of_the_builtin_model(builtin_model):
    assert filter_layers(builtin_model) == ["conv_stem"]
    weight = filter_weights(builtin_model, "conv_stem")
    assert weight.shape == (32, 3, 3, 3)
    assert torch.equal(weight, builtin_model.module.conv_stem.weight)
    assert weight.data_ptr() != builtin_model.module.conv_stem.weight.data_ptr()
    with pytest.raises(InvalidParameter, match=r"layers with filters: \['conv_stem'\]"):
        filter_weights(builtin_model, "blocks.0.0.conv_dw")
    with pytest.raises(UnknownLayer, match="conv_stem"):
        filter_weights(builtin_model, "nope")


def test_kernels_are_normalised_each_on_its_own():
    weight = torch.randn(4, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    weight[1] *= 100
    weight[3] = 7.0
    kernels = normalize_kernels(weight)
    assert kernels.shape == weight.shape
    for i in range(3):
        assert kernels[i].min() == 0 and kernels[i].max() == 1
    torch.testing.assert_close(kernels[1], (weight[1] - weight[1].min()) / (weight[1].max() - weight[1].min()))
    assert torch.equal(kernels[3], torch.zeros(3, 5, 5))
