"""Feature visualization: activation maximization (Lucid's recipe), feature maps and first-layer filters.

No HTTP and no queue here; the model's worker calls the torch side, the CPU pool the PNG encoders.

    objectives.py        class / channel / neuron objectives, checked against a model, evaluated batched
    parameterization.py  Fourier or pixel parameters, decorrelated colour, sigmoid
    transforms.py        Lucid's standard transforms, drawn per image from its own generator
    engine.py            VisualizationSpec, Visualization, step_together, describe
    features.py          feature maps of a layer, filters of a first convolution
    png.py               PNG of a visualization, grids of feature maps and filters (numpy + Pillow)
"""

from service.visualization.engine import (
    Description,
    Visualization,
    VisualizationSpec,
    describe,
    step_together,
    validate_spec,
)
from service.visualization.features import (
    FeatureMaps,
    feature_maps,
    filter_layers,
    filter_weights,
    layer_activations,
    normalize_kernels,
)
from service.visualization.objectives import (
    ChannelObjective,
    ClassObjective,
    NeuronObjective,
    Objective,
    validate_objective,
)
from service.visualization.png import encode_feature_map_grid, encode_filter_grid, encode_image_png

__all__ = [
    "ChannelObjective",
    "ClassObjective",
    "Description",
    "FeatureMaps",
    "NeuronObjective",
    "Objective",
    "Visualization",
    "VisualizationSpec",
    "describe",
    "encode_feature_map_grid",
    "encode_filter_grid",
    "encode_image_png",
    "feature_maps",
    "filter_layers",
    "filter_weights",
    "layer_activations",
    "normalize_kernels",
    "step_together",
    "validate_objective",
    "validate_spec",
]
