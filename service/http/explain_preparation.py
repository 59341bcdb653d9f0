"""An explain request made ready for the worker: planned, checked, decoded and bounded. The explain route does
it for each request, and a replica does it again for a job it takes from the Redis queue (from the request's
parameters and posted bytes kept with the job), so that both run the same work."""

import asyncio
from dataclasses import dataclass

from api_schemas import ExplainParameters
from model_store import LoadedModel
from service.core.errors import AnswerTooLarge
from service.engine.work import ExplainJob
from service.engine.worker import ModelWorker
from service.http.parameters import ExplainPlan, plan_explanation
from service.http.request_body import RunCpu
from service.http.responses import estimate_explain_bytes
from service.http.runtime import ServiceRuntime
from service.http.tasks import check_mask, check_reference
from service.imaging.decoding import DecodedImage, decode_mask, display_picture, open_rgb
from service.metrics import METRICS


@dataclass(frozen=True)
class PostedFiles:
    """The bytes an explain request posts: the image, and a reference or a mask where its model takes one."""

    image: bytes
    reference: bytes | None = None
    mask: bytes | None = None


@dataclass(frozen=True)
class PreparedExplain:
    work: ExplainJob
    image: DecodedImage
    plan: ExplainPlan
    answer_bytes: int
    """The answer's estimated size."""


def plan_request(runtime: ServiceRuntime, worker: ModelWorker, params: ExplainParameters) -> ExplainPlan:
    """The request's plan (methods, classes, layer, cost), before any image is decoded.

    Raises:
        InvalidParameter, CostExceeded: what `plan_explanation` refuses.
    """
    settings = runtime.settings
    return plan_explanation(
        params,
        worker.model,
        settings.max_classes_per_request,
        settings.max_request_cost,
        settings.evaluation_steps,
        settings.overlay_max_side,
        settings.max_explanations_per_request,
    )


async def prepare_explain(
    runtime: ServiceRuntime,
    worker: ModelWorker,
    run_cpu: RunCpu,
    params: ExplainParameters,
    plan: ExplainPlan,
    files: PostedFiles,
    owner: str,
    request_id: str,
    deadline: float,
) -> PreparedExplain:
    """Check what the request posts against its model, decode it (in the CPU pool), bound its answer and make
    the worker's job.

    Raises:
        BadRequest, InvalidParameter: a reference or mask the model does not take (or lacks).
        UnsupportedImage, ImageTooLarge: what decoding refuses.
        AnswerTooLarge: the answer would weigh more than `MAX_ANSWER_BYTES`.
    """
    settings = runtime.settings
    concept = check_reference(worker.model, files.reference, params.concept)
    check_mask(worker.model, files.mask)
    with_display = "overlay" in plan.include
    image = await decode_posted(runtime, run_cpu, worker, files.image, plan.overlay_max_side, with_display)
    reference = None
    if files.reference is not None:
        reference = (
            await decode_posted(runtime, run_cpu, worker, files.reference, plan.overlay_max_side, False)
        ).tensor
    region = None
    if files.mask is not None:
        input_size = worker.model.preprocessing.input_size
        region = await run_cpu(decode_mask, files.mask, image.size, input_size, settings.max_image_pixels)
    answer_bytes = bound_answer(plan, worker.model, image, settings.max_answer_bytes)
    work = ExplainJob(
        image=image.tensor,
        methods=plan.methods,
        classes=plan.classes,
        top_k=plan.top_k,
        threshold=plan.threshold,
        reference=reference,
        concept=concept,
        region=region,
        score_threshold=plan.score_threshold,
        layer=plan.layer,
        deadline=deadline,
        request_id=request_id,
        options=plan.options,
        evaluate=plan.evaluate,
        metrics=tuple((name, parameters) for name, parameters in plan.metrics.items() if METRICS[name].runs_model),
        extra_passes=plan.extra_passes,
        owner=owner,
    )
    return PreparedExplain(work, image, plan, answer_bytes)


async def decode_posted(
    runtime: ServiceRuntime,
    run_cpu: RunCpu,
    worker: ModelWorker,
    data: bytes,
    display_max_side: int,
    with_display: bool,
) -> DecodedImage:
    """Decode the posted bytes for the worker's model, in the CPU pool: the model's input and the picture that
    overlays are drawn on (when `with_display`) are resized side by side."""
    preprocessing = worker.model.preprocessing
    with worker.incoming(), runtime.decoding(len(data)):
        rgb, size = await run_cpu(open_rgb, data, preprocessing, runtime.settings.max_image_pixels, display_max_side)
        if not with_display:
            return DecodedImage(await run_cpu(preprocessing.to_tensor, rgb), None, size)
        tensor, display = await asyncio.gather(
            run_cpu(preprocessing.to_tensor, rgb), run_cpu(display_picture, rgb, display_max_side)
        )
        return DecodedImage(tensor, display, size)


def bound_answer(plan: ExplainPlan, model: LoadedModel, image: DecodedImage, max_bytes: int) -> int:
    """The answer's estimated bytes; a request whose answer would weigh more than `max_bytes` is refused before
    any work.

    Raises:
        AnswerTooLarge: with the estimate, the bound and what shrinks the answer.
    """
    overlay_size = None if image.display is None else (image.display.shape[1], image.display.shape[0])
    estimate = estimate_explain_bytes(plan, model, overlay_size)
    if estimate > max_bytes:
        mib = 1024 * 1024
        raise AnswerTooLarge(
            f"the answer would take about {estimate / mib:.1f} MiB ({len(plan.methods)} methods x "
            f"{plan.class_count} classes); the bound is "
            f"{max_bytes / mib:.1f} MiB. Shrink it with map_encoding=base64, overlay_format=jpeg or webp, a smaller "
            "overlay_max_side, include= without overlay or map, or fewer methods and classes"
        )
    return estimate
