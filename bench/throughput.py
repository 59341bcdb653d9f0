"""Throughput of explanations as ratios measured in one run (the machine is shared and noisy).

Rows (images per second, and the ratio to the raw batched forward pass of the same model):
  forward            the model alone, batched, under inference_mode: the floor
  cam, grad_cam, ... , 9 methods x top-3   the service's batched pass (`run_batch`) in-process
  pytorch-grad-cam   a plain in-process loop over the popular library, one image per call (its usual use)
The service over HTTP is measured by bench/request_path.py.

Usage: python bench/throughput.py [--batch 16] [--rounds 3]
Prints a table and saves bench/out/throughput.png.
"""

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1]))

from model_store import ModelStore  # noqa: E402
from service.engine.explainer import run_batch  # noqa: E402
from service.engine.work import ExplainJob  # noqa: E402
from service.methods import METHODS, Need  # noqa: E402

OUT = Path(__file__).parent / "out"
OWN_PASSES = {Need.EXTRA_PASSES, Need.GUIDED_GRADIENTS, Need.DECONV_GRADIENTS}
SHARED_PASS = tuple(name for name, method in METHODS.items() if not method.needs & OWN_PASSES)


def best_rate(fn, images: int, rounds: int) -> float:
    fn()  # warm
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return images / best


def photo() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.chelsea())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    model = ModelStore.discover().load("efficientnet_lite0", torch.device("cpu"))
    image = model.preprocessing.to_tensor(photo())
    batch = torch.stack([image] * args.batch)

    def forward() -> None:
        with torch.inference_mode():
            model.module(batch)

    def service_pass(methods: tuple[str, ...], top_k: int):
        jobs = [
            ExplainJob(image, tuple(METHODS[m] for m in methods), None, top_k, "bn2", float("inf"), "bench")
            for _ in range(args.batch)
        ]
        return lambda: run_batch(model, jobs)

    from pytorch_grad_cam import GradCAM

    reference_module = copy.deepcopy(model.module)
    for p in reference_module.parameters():
        p.requires_grad_(True)
    reference = GradCAM(model=reference_module, target_layers=[reference_module.bn2])

    def library_loop() -> None:
        for i in range(args.batch):
            reference(input_tensor=batch[i : i + 1], targets=None)

    rows = [("forward", best_rate(forward, args.batch, args.rounds))]
    for label, methods, k in (
        ("cam", ("cam",), 1),
        ("grad_cam", ("grad_cam",), 1),
        ("grad_cam_pp", ("grad_cam_pp",), 1),
        ("3 methods x top-3", ("cam", "grad_cam", "grad_cam_pp"), 3),
        ("saliency (to the input)", ("saliency",), 1),
        (f"{len(SHARED_PASS)} shared-pass methods x top-3", SHARED_PASS, 3),
    ):
        rows.append((label, best_rate(service_pass(methods, k), args.batch, args.rounds)))
    rows.append(("pytorch-grad-cam loop", best_rate(library_loop, args.batch, args.rounds)))

    floor = rows[0][1]
    library = next(rate for name, rate in rows if name.startswith("pytorch-grad-cam"))
    print(f"efficientnet_lite0 on {model.device}, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"{'path':<32} {'images/s':>10} {'/ forward':>10} {'/ library':>10}")
    for name, rate in rows:
        print(f"{name:<32} {rate:>10.1f} {rate / floor:>10.2f} {rate / library:>10.2f}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.barh([n for n, _ in rows][::-1], [r / floor for _, r in rows][::-1])
    ax.axvline(1.0, color="k", lw=0.8)
    ax.set_xlabel("throughput / raw batched forward (same run)")
    ax.set_title(f"efficientnet_lite0, batch {args.batch}, {model.device}")
    fig.tight_layout()
    fig.savefig(OUT / "throughput.png", dpi=120)
    print(f"saved {OUT / 'throughput.png'}")


if __name__ == "__main__":
    main()
