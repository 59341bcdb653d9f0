"""The bounding box of Zhou et al. and the faithfulness scores."""

import torch

from service.methods.localization import localize
from service.methods.passes import PassRunner, run_to_end
from service.metrics.faithfulness import evaluate_map, evaluation_passes
from tests.tiny_models import tiny_loaded


def test_box_of_the_largest_region_above_the_threshold_in_image_coordinates():
    raw = torch.zeros(8, 8)
    raw[2:4, 5:8] = 1.0  # the largest region: rows 2-3, columns 5-7
    raw[6, 0] = 1.0  # a smaller one
    box = localize(raw, image_size=(800, 400), threshold=0.5)
    assert box is not None
    # the region covers x 5/8..8/8 and y 2/8..4/8 of the map: at half height of the bilinear ramp, exactly
    assert (box.x0, box.y0, box.x1, box.y1) == (500, 100, 800, 200)


def test_no_box_for_an_all_zero_map():
    assert localize(torch.zeros(7, 7), image_size=(100, 100), threshold=0.2) is None


def test_evaluation_scores_are_probabilities_and_cost_what_is_declared():
    model = tiny_loaded()
    runner = PassRunner(model.module, chunk_size=8)
    image = torch.randn(3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits = model.module(image[None])[0]
    scores = run_to_end(evaluate_map(runner, image, logits, 1, torch.rand(8, 8), steps=4))
    assert -1 <= scores.confidence_change <= 1
    assert 0 <= scores.deletion_auc <= 1 and 0 <= scores.insertion_auc <= 1
    assert runner.images_forwarded == evaluation_passes(4)
