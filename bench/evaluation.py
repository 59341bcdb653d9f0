"""Quantus's metrics for every method on the built-in model, on a fixed set of photos: the table of
docs/evaluation.md.

Each photo is explained for the model's top-1 class by each method that applies to the built-in model, at its
default parameters, in the worker's code (`run_batch`), and each map scored as the service scores it: the
complexity metrics, the localisation metrics against the box of the object (the cat's head, the only photo with a
box), and five metrics through the model, at fewer passes than Quantus's defaults so that the table takes minutes
(`VALUES`: 20 random subsets, 20 regions, 12 steps of 12,544 values, 5 samples per step). Values are the mean over
the photos.

Usage: python bench/evaluation.py [--device cpu] [--methods grad_cam,saliency]
Prints a Markdown table and saves bench/out/evaluation.csv and bench/out/evaluation.md (minutes on 2 cores).
"""

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).parents[1]))

from model_store import ModelStore  # noqa: E402
from service.engine.explainer import run_batch  # noqa: E402
from service.engine.work import ExplainJob  # noqa: E402
from service.methods import METHODS  # noqa: E402
from service.metrics import METRICS  # noqa: E402
from service.metrics.attribution import attribution, box_region  # noqa: E402

OUT = Path(__file__).parent / "out"
PHOTOS = {"chelsea": (120, 20, 330, 260), "coffee": None, "rocket": None}
"""scikit-image's photos, with the box of the object where the table has one (the cat's head)."""
THROUGH_MODEL = ("faithfulness_correlation", "region_perturbation", "pixel_flipping", "faithfulness_estimate")
THROUGH_MODEL += ("monotonicity_correlation",)
MAP_ONLY = ("sparseness", "complexity", "effective_complexity", "pointing_game", "relevance_mass_accuracy", "auc")
VALUES = {"features_in_step": 12544, "nr_samples": 5, "nr_runs": 20, "regions_evaluation": 20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--methods", default="")
    args = parser.parse_args()

    model = ModelStore.discover().load("efficientnet_lite0", torch.device(args.device))
    chosen = args.methods.split(",") if args.methods else list(METHODS)
    methods = [METHODS[name] for name in chosen if METHODS[name].not_applicable_to(model.module) is None]
    metrics = tuple((name, METRICS[name].with_values(VALUES)) for name in THROUGH_MODEL)
    photos = {name: Image.fromarray(getattr(data, name)()).convert("RGB") for name in PHOTOS}
    rows = []
    for method in methods:
        started = time.perf_counter()
        scores: dict[str, list[float]] = {name: [] for name in THROUGH_MODEL + MAP_ONLY}
        for photo_name, photo in photos.items():
            image = model.preprocessing.to_tensor(photo).to(model.device)
            with torch.no_grad():
                top = int(model.module(image[None])[0].argmax())
            options = (method.options_from({}),) if method.parameters else ()
            layer = model.default_layer if method.uses_layer else None
            job = ExplainJob(image, (method,), (top,), 1, layer, math.inf, "bench", options=options, metrics=metrics)
            (result,) = run_batch(model, [job])
            item = result.maps[0]
            for name, _ in metrics:
                scores[name].append(item.metric_values[name])
            a = attribution(item.map.cpu().numpy(), model.preprocessing.content_size(photo.size))
            box = PHOTOS[photo_name]
            for name in MAP_ONLY:
                metric = METRICS[name]
                if metric.needs_region and box is None:
                    continue
                region = box_region(box, photo.size, a.shape) if metric.needs_region else None
                scores[name].append(metric.score(a, region, metric.parameters))
        means = {name: float(np.nanmean(values)) if values else math.nan for name, values in scores.items()}
        rows.append((method.name, means))
        print(f"{method.name}: {time.perf_counter() - started:.1f} s", file=sys.stderr)

    names = THROUGH_MODEL + MAP_ONLY
    better = [METRICS[name].better for name in names]
    lines = [
        "| method | "
        + " | ".join(f"`{name}` ({'↑' if b == 'higher' else '↓'})" for name, b in zip(names, better, strict=True))
        + " |",
        "|---|" + "---|" * len(names),
    ]
    lines += [f"| `{method}` | " + " | ".join(f"{means[name]:.3f}" for name in names) + " |" for method, means in rows]
    table = "\n".join(lines)
    print(table)
    OUT.mkdir(exist_ok=True)
    (OUT / "evaluation.md").write_text(table + "\n")
    with open(OUT / "evaluation.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["method", *names])
        for method, means in rows:
            writer.writerow([method, *(f"{means[name]:.6f}" for name in names)])
    print(f"saved {OUT / 'evaluation.csv'} and {OUT / 'evaluation.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
