"""Feature visualization: activation maximization (Lucid's recipe).

No HTTP and no queue here; the model's worker calls the torch side, the CPU pool the PNG encoders.

    objectives.py        class / channel / neuron objectives, checked against a model, evaluated batched
    parameterization.py  Fourier or pixel parameters, decorrelated colour, sigmoid
    transforms.py        Lucid's standard transforms, drawn per image from its own generator
    engine.py            VisualizationSpec, Visualization, step_together, describe
    png.py               PNG of a visualization (numpy + Pillow)
"""

from service.visualization.engine import (
    Description,
    Visualization,
    VisualizationSpec,
    describe,
    step_together,
    validate_spec,
)
from service.visualization.objectives import (
    ChannelObjective,
    ClassObjective,
    NeuronObjective,
    Objective,
    validate_objective,
)
from service.visualization.png import encode_image_png

__all__ = [
    "ChannelObjective",
    "ClassObjective",
    "Description",
    "NeuronObjective",
    "Objective",
    "Visualization",
    "VisualizationSpec",
    "describe",
    "encode_image_png",
    "step_together",
    "validate_objective",
    "validate_spec",
]
