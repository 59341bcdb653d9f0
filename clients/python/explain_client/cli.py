"""`explain`: the command line of the explain service, on top of `ExplainClient`.

    explain predict cat.jpg dog.png
    explain explain photos/*.jpg -m grad_cam -m cam --top-k 3 -o overlays/
    explain methods | explain models
    explain visualize --class flamingo --steps 256 -o flamingo.png
    explain job ID [--wait | --cancel]

`--url` and `--api-key` default to `$EXPLAIN_URL` and `$EXPLAIN_API_KEY`. A file that cannot be explained
prints the service's message and the others go on; the exit status is the worst of all files:

    0 success   2 usage   3 refused input (a 4xx, or a file that cannot be read)   4 API key missing or wrong
    5 unknown model or job   6 the service failed or is unavailable (5xx, after retries)
    7 the service cannot be reached, or no answer in time   8 a job failed or was cancelled
"""

import argparse
import base64
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from explain_client._retry import RetryPolicy
from explain_client.client import ExplainClient
from explain_client.errors import (
    APIError,
    AuthenticationError,
    ConnectionError,
    ExplainError,
    JobError,
    NotFoundError,
    TimeoutError,
)
from explain_client.models import Explanation

EXIT_OK = 0
EXIT_USAGE = 2  # argparse's own
EXIT_REFUSED = 3
EXIT_AUTH = 4
EXIT_NOT_FOUND = 5
EXIT_SERVICE = 6
EXIT_UNREACHABLE = 7
EXIT_JOB = 8
EXTENSIONS = {"png": "png", "jpeg": "jpg", "webp": "webp"}


def exit_code(error: BaseException) -> int:
    """The exit status for an error (see the module docstring)."""
    if isinstance(error, AuthenticationError):
        return EXIT_AUTH
    if isinstance(error, NotFoundError):
        return EXIT_NOT_FOUND
    if isinstance(error, APIError):
        return EXIT_SERVICE if error.status >= 500 else EXIT_REFUSED
    if isinstance(error, ConnectionError | TimeoutError):
        return EXIT_UNREACHABLE
    if isinstance(error, JobError):
        return EXIT_JOB
    if isinstance(error, OSError | ValueError | TypeError):
        return EXIT_REFUSED
    return 1


def describe(error: BaseException) -> str:
    if isinstance(error, APIError):
        return f"{error.message} ({error.status} {error.code}" + (
            f", request id {error.request_id})" if error.request_id else ")"
        )
    return str(error)


class Progress:
    """A one-line progress bar on stderr, drawn only when stderr is a terminal."""

    def __init__(self, total: int, label: str) -> None:
        self.total, self.label, self.done = total, label, 0
        self.enabled = total > 1 and sys.stderr.isatty()
        self._lock = threading.Lock()

    def update(self, done: int | None = None, total: int | None = None) -> None:
        with self._lock:
            self.done = self.done + 1 if done is None else done
            self.total = total or self.total
            if self.enabled or (total is not None and sys.stderr.isatty()):
                width = 30
                filled = int(width * self.done / max(self.total, 1))
                sys.stderr.write(f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {self.done}/{self.total}")
                if self.done >= self.total:
                    sys.stderr.write("\n")
                sys.stderr.flush()


def target_name(item: Any) -> str:
    """What an explanation explains, in a file name: its class index, `detection<i>` (detection models) or
    `similarity` (embedding models)."""
    if item.detection is not None:
        return f"detection{item.detection}"
    return str(item.class_.index) if item.class_ is not None else "similarity"


def top_classes_line(answer: Any, count: int = 3) -> str:
    """The best classes with their probabilities; a segmentation's classes with their shares of the pixels; a
    detection model's detections with their scores and boxes."""
    if getattr(answer, "detections", None) is not None:
        return (
            ", ".join(
                f"#{d.index} {d.class_.label} {d.score:.1%} at [{', '.join(f'{v:.0f}' for v in d.box)}]"
                for d in answer.detections[:count]
            )
            or "no detection"
        )
    if getattr(answer, "segmentation", None) is not None:
        return ", ".join(f"{c.label} ({c.index}) {c.share:.1%} of pixels" for c in answer.segmentation.classes[:count])
    return ", ".join(f"{c.label} ({c.index}) {c.probability:.1%}" for c in answer.top_classes[:count])


def for_each_file(paths: Sequence[str], jobs: int, label: str, work: Callable[[str], str]) -> int:
    """Run `work` on every file, `jobs` at a time; print its line or the error; the worst exit status."""
    progress = Progress(len(paths), label)
    worst = EXIT_OK

    def run(path: str) -> tuple[str, str, int]:
        try:
            return path, work(path), EXIT_OK
        except (ExplainError, OSError, ValueError, TypeError) as exc:
            return path, describe(exc), exit_code(exc)
        finally:
            progress.update()

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        for path, line, code in pool.map(run, paths):
            if code == EXIT_OK:
                print(f"{path}: {line}", flush=True)
            else:
                print(f"{path}: error: {line}", file=sys.stderr, flush=True)
            worst = max(worst, code)
    return worst


def default_model(client: ExplainClient, model: str | None) -> str:
    return model or client.models()[0].name


def cmd_predict(client: ExplainClient, args: argparse.Namespace) -> int:
    model = default_model(client, args.model)
    return for_each_file(
        args.images, args.jobs, "predict", lambda path: top_classes_line(client.predict(model, path), args.show)
    )


def parameter_spec(text: str) -> tuple[str, str]:
    """`name=value` -> (name, value); the value stays text, converted as the service converts form fields."""
    name, separator, value = text.partition("=")
    if not separator or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not '{text}'")
    return name.strip(), value.strip()


def metrics_text(explanation: Explanation) -> str:
    """ " (sparseness 0.331, auc 0.947)": the explanation's metrics, if any ("n/a" where undefined)."""
    if not explanation.metrics:
        return ""
    values = (f"{name} {'n/a' if m.value is None else f'{m.value:.3g}'}" for name, m in explanation.metrics.items())
    return f" ({', '.join(values)})"


def cmd_explain(client: ExplainClient, args: argparse.Namespace) -> int:
    model = default_model(client, args.model)
    options = {
        name: value
        for name, value in {
            "top_k": args.top_k,
            "layer": args.layer,
            "colormap": args.colormap,
            "alpha": args.alpha,
            "overlay_format": args.overlay_format,
            "overlay_max_side": args.overlay_max_side,
            "map_encoding": args.map_encoding,
            "bbox": args.bbox or None,
            "detection": args.detection,
            "score_threshold": args.score_threshold,
            "concept": args.concept,
            "metrics": args.metrics,
            "target_box": args.target_box,
        }.items()
        if value is not None
    } | dict(args.param or ())
    outdir = Path(args.output) if args.output else None
    if outdir is not None:
        outdir.mkdir(parents=True, exist_ok=True)

    def explain_one(path: str) -> str:
        answer = client.explain(
            model,
            path,
            method=args.method or None,
            classes=args.classes or None,
            reference=args.reference,
            mask=args.mask,
            **options,
        )
        written = []
        if outdir is not None:
            stem = Path(path).stem
            for item in answer.explanations:
                if item.overlay_format is None:
                    continue
                target = outdir / f"{stem}.{item.method}.{target_name(item)}.{EXTENSIONS[item.overlay_format]}"
                target.write_bytes(item.overlay_bytes())
                written.append(target.name)
            if answer.segmentation is not None:  # the predicted classes, beside the overlays
                (outdir / f"{stem}.mask.png").write_bytes(base64.b64decode(answer.segmentation.mask_png))
            (outdir / f"{stem}.json").write_text(answer.model_dump_json(by_alias=True, exclude_none=True))
        maps = ", ".join(
            f"{e.method}/{e.class_.label if e.class_ else 'similarity'}{metrics_text(e)}" for e in answer.explanations
        )
        found = (
            top_classes_line(answer, args.show) if answer.similarity is None else f"similarity {answer.similarity:.4f}"
        )
        return f"{found}; explained {maps}" + (
            f"; wrote {len(written)} overlays{', the mask' if answer.segmentation else ''} and {Path(path).stem}.json "
            f"to {outdir}"
            if outdir
            else ""
        )

    return for_each_file(args.images, args.jobs, "explain", explain_one)


def cmd_methods(client: ExplainClient, args: argparse.Namespace) -> int:
    for method in client.methods():
        print(f"{method.name:22} {method.title:28} {method.cost}")
    return EXIT_OK


def cmd_models(client: ExplainClient, args: argparse.Namespace) -> int:
    for model in client.models():
        size = "x".join(str(s) for s in model.input_size)
        print(f"{model.name:24} {size:9} {model.num_classes:6} classes  layer {model.default_layer}  {model.device}")
    return EXIT_OK


def follow(client: ExplainClient, job: Any, label: str) -> Any:
    progress = Progress(job.progress.total, label)
    return client.wait(job, on_progress=lambda s: progress.update(s.progress.done, s.progress.total))


def cmd_visualize(client: ExplainClient, args: argparse.Namespace) -> int:
    model = default_model(client, args.model)
    options = {k: v for k, v in {"steps": args.steps, "size": args.size, "seed": args.seed}.items() if v is not None}
    job = client.visualize(
        model, class_=args.class_, layer=args.layer, channel=args.channel, x=args.x, y=args.y, **options
    )
    print(f"job {job.id}", file=sys.stderr, flush=True)
    done = follow(client, job, "visualize")
    Path(args.output).write_bytes(done.result.image_bytes())
    print(f"wrote {args.output}: objective {done.result.objective:.4g}; the model sees {top_classes_line(done.result)}")
    return EXIT_OK


def cmd_job(client: ExplainClient, args: argparse.Namespace) -> int:
    if args.cancel:
        status = client.cancel(args.id)
    elif args.wait:
        status = follow(client, client.job(args.id), "job")
    else:
        status = client.job(args.id)
    print(f"{status.id} {status.kind} {status.model} {status.status} {status.progress.done}/{status.progress.total}")
    if status.error is not None:
        print(f"{status.error.code}: {status.error.message}")
    return EXIT_OK


def class_spec(text: str) -> int | str:
    return int(text) if text.isascii() and text.isdigit() else text


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="explain",
        description=__doc__.split("\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    main.add_argument("--url", help="the service (default $EXPLAIN_URL or http://127.0.0.1:8000)")
    main.add_argument("--api-key", help="API key (default $EXPLAIN_API_KEY)")
    main.add_argument("--timeout", type=float, default=120.0, help="seconds per request (default 120)")
    main.add_argument("--retries", type=int, default=3, help="retries on 429/503 and connection errors (default 3)")
    commands = main.add_subparsers(dest="command", required=True)

    def with_images(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
        sub.add_argument("--model", help="default: the service's first model")
        sub.add_argument("-j", "--jobs", type=int, default=4, help="requests at a time (default 4)")
        sub.add_argument("--show", type=int, default=3, help="top classes printed per image (default 3)")

    predict = commands.add_parser("predict", help="top classes of images")
    with_images(predict)
    predict.set_defaults(run=cmd_predict)

    explain = commands.add_parser("explain", help="explain images; write overlays and answers")
    with_images(explain)
    explain.add_argument("-m", "--method", action="append", help="a method (repeat for several; default grad_cam)")
    explain.add_argument(
        "-c",
        "--class",
        dest="classes",
        action="append",
        type=class_spec,
        help="a class index or label (repeat for several; default the top class)",
    )
    explain.add_argument("-k", "--top-k", type=int, help="explain the k best classes")
    explain.add_argument("--layer")
    explain.add_argument("--colormap", choices=["jet", "viridis", "inferno", "turbo"])
    explain.add_argument("--alpha", type=float, help="heatmap opacity 0..1")
    explain.add_argument("--overlay-format", choices=sorted(EXTENSIONS))
    explain.add_argument("--overlay-max-side", type=int)
    explain.add_argument("--map-encoding", choices=["list", "base64"])
    explain.add_argument("--bbox", action="store_true", help="add the localization box")
    explain.add_argument("--reference", metavar="IMAGE", help="embedding models: the image to compare with")
    explain.add_argument("--concept", help="embedding models: a stored concept to compare with, by name")
    explain.add_argument(
        "--detection", type=int, action="append", help="detection models: a detection to explain (repeat for several)"
    )
    explain.add_argument("--score-threshold", type=float, help="detection models: the score a detection reaches")
    explain.add_argument(
        "--mask", metavar="IMAGE", help="segmentation models: the region each class's logits are summed over"
    )
    explain.add_argument(
        "--metrics", action="append", help="a metric of each explanation, as Quantus's (repeat; see GET /v1/metrics)"
    )
    explain.add_argument("--target-box", metavar="X0,Y0,X1,Y1", help="where the object is, for localisation metrics")
    explain.add_argument(
        "-p",
        "--param",
        action="append",
        type=parameter_spec,
        metavar="NAME=VALUE",
        help="any other explain parameter, a method's or a metric's (composite=epsilon_plus_flat, "
        "features_in_step=1568); repeat for several",
    )
    explain.add_argument("-o", "--output", metavar="OUTDIR", help="write overlays and the answers (JSON) here")
    explain.set_defaults(run=cmd_explain)

    commands.add_parser("methods", help="list the explanation methods").set_defaults(run=cmd_methods)
    commands.add_parser("models", help="list the warm models").set_defaults(run=cmd_models)

    visualize = commands.add_parser("visualize", help="feature visualization of a class, channel or neuron (a job)")
    visualize.add_argument("--model")
    visualize.add_argument("--class", dest="class_", type=class_spec, help="class index or label")
    visualize.add_argument("--layer")
    visualize.add_argument("--channel", type=int)
    visualize.add_argument("--x", type=int)
    visualize.add_argument("--y", type=int)
    visualize.add_argument("--steps", type=int)
    visualize.add_argument("--size", type=int, nargs=2, metavar=("HEIGHT", "WIDTH"))
    visualize.add_argument("--seed", type=int)
    visualize.add_argument("-o", "--output", required=True, metavar="FILE.png")
    visualize.set_defaults(run=cmd_visualize)

    job = commands.add_parser("job", help="a job's status; --wait for it or --cancel it")
    job.add_argument("id")
    action = job.add_mutually_exclusive_group()
    action.add_argument("--wait", action="store_true")
    action.add_argument("--cancel", action="store_true")
    job.set_defaults(run=cmd_job)
    return main


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        with ExplainClient(
            args.url, api_key=args.api_key, timeout=args.timeout, retry=RetryPolicy(max_retries=args.retries)
        ) as client:
            return args.run(client, args)
    except (ExplainError, OSError, ValueError, TypeError) as exc:
        print(f"explain: error: {describe(exc)}", file=sys.stderr)
        return exit_code(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
