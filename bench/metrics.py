"""What each of Quantus's metrics costs per explanation on the built-in model, in one run.

Map-only metrics (complexity, localisation) are timed on a Grad-CAM map of the cat photo, upsampled to the
input as the service does (`attribution`) and scored against a box; the metrics that run through the model
(faithfulness correlation, region perturbation, selectivity, pixel flipping, faithfulness estimate and monotonicity
correlation, the last three with features_in_step=1568 and nr_samples=10) through the pass runner, in chunks as the
worker runs them. The cost column is the
forward passes each one adds per explanation (what the request's cost bound counts); the last column is its time
over one batch-1 forward pass of the model, measured in the same run.

Usage: python bench/metrics.py [--rounds 3] [--device cpu]
Prints a table and saves bench/out/metrics.csv and bench/out/metrics.png.
"""

import argparse
import csv
import sys
from functools import partial
from pathlib import Path

import torch
from skimage import data

sys.path.insert(0, str(Path(__file__).parents[1]))

from PIL import Image  # noqa: E402

from bench.request_path import best_seconds  # noqa: E402
from model_store import ModelStore  # noqa: E402
from service.engine.explainer import run_batch  # noqa: E402
from service.engine.work import ExplainJob  # noqa: E402
from service.methods import METHODS  # noqa: E402
from service.methods.passes import PassRunner, chunk_size_for, run_to_end  # noqa: E402
from service.metrics import METRICS  # noqa: E402
from service.metrics.attribution import attribution, box_region  # noqa: E402
from service.metrics.faithfulness import MODEL_METRICS  # noqa: E402

OUT = Path(__file__).parent / "out"
BOX = (120, 20, 330, 260)  # the cat's head in the photo (451 x 300)
VALUES = {"features_in_step": 1568, "nr_samples": 10}
"""Request values for the metrics whose defaults are beyond the cost bound (pixel flipping, faithfulness estimate,
monotonicity correlation: one pass per input value at Quantus's default, times 100 samples for the last); 96 steps
at 224 px, 10 samples each for monotonicity correlation."""


def grad_cam_map(model, image: torch.Tensor, class_index: int) -> torch.Tensor:
    """The photo's Grad-CAM map at the model's default layer (7 x 7), as the worker computes it."""
    job = ExplainJob(image, (METHODS["grad_cam"],), (class_index,), 1, model.default_layer, float("inf"), "bench")
    (result,) = run_batch(model, [job])
    return result.maps[0].map


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = ModelStore.discover().load("efficientnet_lite0", device)
    photo = Image.fromarray(data.chelsea())
    image = model.preprocessing.to_tensor(photo).to(device)
    with torch.no_grad():
        logits = model.module(image[None])[0]
    class_index = int(logits.argmax())
    raw = grad_cam_map(model, image, class_index).cpu()
    height, width = model.preprocessing.input_size
    runner = PassRunner(model.module, chunk_size_for(model, 100.0))

    def forward() -> None:
        with torch.no_grad():
            model.module(image[None])

    def scored(metric) -> None:
        parameters = metric.with_values(VALUES)
        if metric.runs_model:
            steps = MODEL_METRICS[metric.name](runner, image, logits, class_index, raw, parameters)
            with torch.no_grad():
                run_to_end(steps)
        else:
            a = attribution(raw.numpy(), (width, height))
            region = box_region(BOX, photo.size, a.shape) if metric.needs_region else None
            metric.score(a, region, parameters)

    forward_s = best_seconds(forward, args.rounds * 10)
    rows = [
        (
            name,
            metric.passes_for((height, width), metric.with_values(VALUES)),
            best_seconds(partial(scored, metric), args.rounds),
        )
        for name, metric in METRICS.items()
    ]

    print(f"efficientnet_lite0 at 224 px on {device}, torch threads {torch.get_num_threads()}, best of {args.rounds}")
    print(f"one forward pass, batch 1: {forward_s * 1000:.1f} ms")
    print(f"{'metric':<26} {'passes':>7} {'ms / explanation':>17} {'/ forward pass':>15}")
    for name, passes, seconds in rows:
        print(f"{name:<26} {passes:>7} {seconds * 1000:>17.2f} {seconds / forward_s:>15.2f}")

    OUT.mkdir(exist_ok=True)
    with open(OUT / "metrics.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["metric", "forward_passes", "ms_per_explanation", "ratio_to_forward_pass", "device"])
        for name, passes, seconds in rows:
            writer.writerow([name, passes, f"{seconds * 1000:.3f}", f"{seconds / forward_s:.3f}", str(device)])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [name for name, *_ in rows][::-1]
    ax.barh(names, [seconds * 1000 for *_, seconds in rows][::-1])
    ax.axvline(forward_s * 1000, color="gray", linestyle="--", label="one forward pass")
    ax.set_xscale("log")
    ax.set_xlabel("ms per explanation (best of rounds, same run; log scale)")
    ax.set_title(f"Quantus's metrics, efficientnet_lite0 at 224 px, {device}")
    ax.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(OUT / "metrics.png", dpi=120)
    print(f"saved {OUT / 'metrics.csv'} and {OUT / 'metrics.png'}")


if __name__ == "__main__":
    main()
