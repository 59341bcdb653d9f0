"""Seconds per activation-maximization step on the built-in model, alone and batched (ratios in one run).

Rows (each is `--steps` steps, the best of `--rounds` rounds; the rounds of all rows are interleaved):
  forward + backward      the floor: the model's forward pass and a backward pass to the input, batch 1 and 4
  1 alone                 one visualization (224 px, all switches on) stepped by `step_together`
  4 one by one            four visualizations, each stepped by its own `step_together` call
  4 batched               the same four stepped together: one batched forward and backward pass
  4 batched, mixed        four with different sizes (224, 160, 96 px) and switches, stepped together

Usage: python bench/visualization.py [--steps 16] [--rounds 3] [--device cpu]
Prints a table and saves bench/out/visualization.csv and bench/out/visualization.png.
"""

import argparse
import csv
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[1]))

from model_store import LoadedModel, ModelStore  # noqa: E402
from service.visualization import ClassObjective, Visualization, VisualizationSpec, step_together  # noqa: E402

OUT = Path(__file__).parent / "out"
CLASSES = (130, 1, 309, 948)  # flamingo, goldfish, bee, Granny Smith


def visualizations(model: LoadedModel, mixed: bool = False) -> list[Visualization]:
    specs = [VisualizationSpec(ClassObjective(c), steps=10**6, seed=i) for i, c in enumerate(CLASSES)]
    if mixed:
        specs[1] = VisualizationSpec(ClassObjective(CLASSES[1]), steps=10**6, size=(160, 160), fourier=False)
        specs[2] = VisualizationSpec(ClassObjective(CLASSES[2]), steps=10**6, size=(96, 128), decorrelate=False)
        specs[3] = VisualizationSpec(ClassObjective(CLASSES[3]), steps=10**6, transforms=False)
    return [Visualization(spec, model) for spec in specs]


def forward_backward(model: LoadedModel, batch: int) -> Callable[[], None]:
    inputs = torch.randn(batch, 3, *model.preprocessing.input_size, device=model.device)

    def run() -> None:
        leaf = inputs.detach().requires_grad_()
        with torch.enable_grad():
            logits = model.module(leaf)
            torch.autograd.grad(logits[:, 0].sum(), leaf)

    return run


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    device = torch.device(args.device)
    model = ModelStore.discover().load("efficientnet_lite0", device)
    alone = visualizations(model)[:1]
    four, four_apart, mixed = visualizations(model), visualizations(model), visualizations(model, mixed=True)

    # name -> (step function, visualizations advanced per call)
    rows: dict[str, tuple[Callable[[], None], int]] = {
        "forward + backward, batch 1": (forward_backward(model, 1), 1),
        "forward + backward, batch 4": (forward_backward(model, 4), 4),
        "1 alone": (lambda: step_together(model, alone), 1),
        "4 one by one": (lambda: [step_together(model, [vis]) for vis in four_apart], 4),
        "4 batched": (lambda: step_together(model, four), 4),
        "4 batched, mixed": (lambda: step_together(model, mixed), 4),
    }
    best = {name: float("inf") for name in rows}
    for fn, _ in rows.values():
        fn()  # warm
    for _ in range(args.rounds):
        for name, (fn, _) in rows.items():
            synchronize(device)
            started = time.perf_counter()
            for _ in range(args.steps):
                fn()
            synchronize(device)
            best[name] = min(best[name], (time.perf_counter() - started) / args.steps)

    alone_s = best["1 alone"]
    table = [(name, best[name], best[name] / count, best[name] / count / alone_s) for name, (_, count) in rows.items()]
    print(f"efficientnet_lite0 at 224 px on {device}, torch threads {torch.get_num_threads()}, best of {args.rounds}")
    print(f"{'path':<30} {'s / call':>10} {'s / vis step':>13} {'/ alone':>8}")
    for name, per_call, per_vis, ratio in table:
        print(f"{name:<30} {per_call:>10.4f} {per_vis:>13.4f} {ratio:>8.2f}")

    OUT.mkdir(exist_ok=True)
    with open(OUT / "visualization.csv", "w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["path", "seconds_per_call", "seconds_per_visualization_step", "ratio_to_alone", "device"])
        for name, per_call, per_vis, ratio in table:
            writer.writerow([name, f"{per_call:.5f}", f"{per_vis:.5f}", f"{ratio:.3f}", str(device)])

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.6))
    names = [name for name, *_ in table][::-1]
    ax.barh(names, [per_call for _, per_call, _, _ in table][::-1], color="lightgray", label="per call")
    ax.barh(names, [per_vis for _, _, per_vis, _ in table][::-1], height=0.4, label="per visualization step")
    ax.set_xlabel("seconds (best of rounds, same run)")
    ax.set_title(f"activation maximization, efficientnet_lite0 at 224 px, {device}")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(OUT / "visualization.png", dpi=120)
    print(f"saved {OUT / 'visualization.csv'} and {OUT / 'visualization.png'}")


if __name__ == "__main__":
    main()
