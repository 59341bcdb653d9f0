"""The request path against the model's own speed, in one run (the machine is shared and noisy: read ratios).

1. The in-process limit: the built-in model in this process, batches of 1, 4 and 8: the forward pass alone, and
   forward + Grad-CAM's backward to the layer (`run_batch`, what the default request costs the worker). The
   ratios are to batch 8 (the issue's yardstick); the model's fastest batch size is reported beside it.
2. A real server process (`python -m service`), closed-loop clients at each concurrency, for each scenario:
   the default request (grad_cam; map, overlay, logits) on a 640x480 JPEG, `include=map`, the 9-overlay request
   (cam, grad_cam, grad_cam_pp x top-3), 1920x1080 and 4032x3024 JPEGs, and /predict.

Prints a table (requests/s, latency percentiles, ratio to the in-process limit, median time per stage from the
answers' `Server-Timing`), checks the targets, and writes bench/out/request_path.csv and .png.

Usage: python bench/request_path.py [--seconds 6] [--concurrency 1 4 16 64] [--device cpu]
"""

import argparse
import asyncio
import csv
import io
import statistics
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).parents[1]))

from model_store import ModelStore  # noqa: E402
from service.engine.explainer import run_batch  # noqa: E402
from service.engine.work import ExplainJob  # noqa: E402
from service.methods import METHODS  # noqa: E402
from tests.load import closed_loop, percentile  # noqa: E402
from tests.real_server import real_server  # noqa: E402

OUT = Path(__file__).parent / "out"
MODEL = "efficientnet_lite0"
STAGES = ("decode", "queue", "inference", "encode", "serialise")


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    image: str  # key of the JPEGs below


SCENARIOS = (
    Scenario("default", f"/v1/models/{MODEL}/explain", "640x480"),
    Scenario("include=map", f"/v1/models/{MODEL}/explain?include=map", "640x480"),
    Scenario("9 overlays", f"/v1/models/{MODEL}/explain?method=cam,grad_cam,grad_cam_pp&top_k=3", "640x480"),
    Scenario("1920x1080", f"/v1/models/{MODEL}/explain", "1920x1080"),
    Scenario("4032x3024", f"/v1/models/{MODEL}/explain", "4032x3024"),
    Scenario("predict", f"/v1/models/{MODEL}/predict", "640x480"),
)


def jpegs() -> dict[str, bytes]:
    """scikit-image's chelsea photo as camera-like JPEGs (quality 90) of three sizes."""
    from skimage import data

    photo = Image.fromarray(data.chelsea())
    encoded = {}
    for width, height in ((640, 480), (1920, 1080), (4032, 3024)):
        buffer = io.BytesIO()
        photo.resize((width, height), Image.Resampling.BICUBIC).save(buffer, format="JPEG", quality=90)
        encoded[f"{width}x{height}"] = buffer.getvalue()
    return encoded


def multipart(jpeg: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + jpeg
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, f"multipart/form-data; boundary={boundary}"


def best_seconds(fn, rounds: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def in_process_limit(device: str, image: bytes) -> dict[str, float]:
    """Seconds per batch of the forward pass, and of forward + Grad-CAM backward, at batch 1, 4 and 8."""
    model = ModelStore.discover().load(MODEL, torch.device(device))
    tensor = model.preprocessing.to_tensor(Image.open(io.BytesIO(image)).convert("RGB"))
    timings = {}
    for batch in (1, 4, 8):
        stacked = torch.stack([tensor] * batch).to(model.device)

        def forward(stacked: torch.Tensor = stacked) -> None:
            with torch.inference_mode():
                model.module(stacked)
            if model.device.type == "cuda":
                torch.cuda.synchronize()

        jobs = [ExplainJob(tensor, (METHODS["grad_cam"],), None, 1, model.default_layer, float("inf"), "bench")] * batch
        timings[f"forward b{batch}"] = best_seconds(forward)
        timings[f"grad_cam b{batch}"] = best_seconds(lambda jobs=jobs: run_batch(model, jobs))
    return timings


def stage_medians(stages: dict[str, list[float]]) -> dict[str, float]:
    return {name: statistics.median(stages[name]) if stages.get(name) else float("nan") for name in STAGES}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per cell (after 1 s warm-up)")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    images = jpegs()
    limit = in_process_limit(args.device, images["640x480"])
    limit_rps = 8 / limit["grad_cam b8"]
    one_image_ms = limit["grad_cam b1"] * 1000
    print(f"in-process limit on {args.device}, torch threads {torch.get_num_threads()}:")
    for name, seconds in limit.items():
        batch = int(name.rsplit("b", 1)[1])
        print(f"  {name:<14} {seconds * 1000:8.1f} ms/batch {batch / seconds:8.1f} img/s")

    rows = []
    with real_server({"models": MODEL, "log_level": "warning", "device": args.device}, module="service") as server:
        batch_limit = f'explain_batch_limit{{model="{MODEL}"}}'
        print(
            f"\nthe server starts with batches of up to {server.metrics()[batch_limit]:.0f} images (the size measured "
            "fastest when its model was warmed); column 'batch': the size after each cell (trials while serving)"
        )
        for scenario in SCENARIOS:
            body, content_type = multipart(images[scenario.image])
            for clients in args.concurrency:
                load = dict(port=server.port, path=scenario.path, body=body, content_type=content_type)
                asyncio.run(closed_loop(**load, clients=clients, duration_s=1.0, timeout_s=120))
                result = asyncio.run(closed_loop(**load, clients=clients, duration_s=args.seconds, timeout_s=120))
                ok = result.latencies.get(200, [])
                failed = result.total - len(ok)
                row = {
                    "scenario": scenario.name,
                    "clients": clients,
                    "rps": len(ok) / result.duration_s,
                    "p50_ms": percentile(ok, 50) * 1000 if ok else float("nan"),
                    "p95_ms": percentile(ok, 95) * 1000 if ok else float("nan"),
                    "p99_ms": percentile(ok, 99) * 1000 if ok else float("nan"),
                    "failed": failed,
                    "bytes": result.answer_bytes // max(len(ok), 1),
                    "batch": server.metrics()[batch_limit],
                }
                row["per_limit"] = row["rps"] / limit_rps
                row |= {f"{k}_ms": v for k, v in stage_medians(result.stages).items()}
                rows.append(row)
                print_row(row, header=len(rows) == 1)

    write_outputs(rows, limit, args.device)
    fastest_rps = max(int(name.rsplit("b", 1)[1]) / seconds for name, seconds in limit.items() if "grad_cam" in name)
    check_targets(rows, limit_rps, one_image_ms, fastest_rps)


def print_row(row: dict, header: bool) -> None:
    if header:
        stages = "".join(f"{s:>10}" for s in STAGES)
        print(
            f"\n{'scenario':<12}{'clients':>8}{'rps':>8}{'p50':>8}{'p95':>8}{'p99':>8}{'/limit':>8}{'KB':>8}"
            f"{'batch':>6}{stages}"
        )
    stages = "".join(f"{row[f'{s}_ms']:>10.1f}" for s in STAGES)
    print(
        f"{row['scenario']:<12}{row['clients']:>8}{row['rps']:>8.1f}{row['p50_ms']:>8.0f}{row['p95_ms']:>8.0f}"
        f"{row['p99_ms']:>8.0f}{row['per_limit']:>8.2f}{row['bytes'] / 1024:>8.0f}{row['batch']:>6.0f}{stages}"
        + (f"  ({row['failed']} failed)" if row["failed"] else "")
    )


def write_outputs(rows: list[dict], limit: dict[str, float], device: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    OUT.mkdir(exist_ok=True)
    with open(OUT / "request_path.csv", "w", newline="") as file:
        writer = csv.DictWriter(file, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    scenarios = list(dict.fromkeys(r["scenario"] for r in rows))
    fig, (throughput, latency) = plt.subplots(1, 2, figsize=(13, 4.5))
    for name in scenarios:
        mine = [r for r in rows if r["scenario"] == name]
        throughput.plot([r["clients"] for r in mine], [r["rps"] for r in mine], marker="o", label=name)
        latency.plot([r["clients"] for r in mine], [r["p50_ms"] for r in mine], marker="o", label=f"{name} p50")
        latency.plot([r["clients"] for r in mine], [r["p99_ms"] for r in mine], ls=":", color="grey", lw=0.8)
    throughput.axhline(8 / limit["grad_cam b8"], color="k", lw=0.8, ls="--", label="in-process limit (b8)")
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xlabel("concurrent clients (closed loop)")
    throughput.set_ylabel("answers / s")
    latency.set_ylabel("latency (ms); dotted: p99")
    latency.set_yscale("log")
    throughput.legend(fontsize=8)
    latency.legend(fontsize=7)
    fig.suptitle(f"{MODEL} on {device}: the service over HTTP against the in-process limit")
    fig.tight_layout()
    fig.savefig(OUT / "request_path.png", dpi=120)
    print(f"\nsaved {OUT / 'request_path.csv'} and {OUT / 'request_path.png'}")


def check_targets(rows: list[dict], limit_rps: float, one_image_ms: float, fastest_rps: float) -> None:
    def cell(scenario: str, clients: int) -> dict | None:
        return next((r for r in rows if r["scenario"] == scenario and r["clients"] == clients), None)

    default16, default1 = cell("default", 16), cell("default", 1)
    nine16, big1 = cell("9 overlays", 16), cell("4032x3024", 1)
    checks = []
    if default16:
        checks.append(("default at 16 clients / limit >= 0.75", default16["rps"] / limit_rps, 0.75))
    if default1:
        checks.append(("p50 at 1 client - one image in-process <= 15 ms", default1["p50_ms"] - one_image_ms, 15))
    if nine16 and default16:
        checks.append(("9 overlays / default rps at 16 clients >= 0.5", nine16["rps"] / default16["rps"], 0.5))
    if big1 and default1:
        checks.append(("4032x3024 / 640x480 p50 at 1 client <= 1.5", big1["p50_ms"] / default1["p50_ms"], 1.5))
    print()
    for label, value, bound in checks:
        ok = value <= bound if "<=" in label else value >= bound
        print(f"{'met ' if ok else 'MISS'}  {label}: {value:.2f}")
    if default16:
        print(f"      default at 16 clients / the fastest in-process batch size: {default16['rps'] / fastest_rps:.2f}")


if __name__ == "__main__":
    main()
