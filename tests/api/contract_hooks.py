"""Schemathesis hooks of the contract test (`SCHEMATHESIS_HOOKS=tests.api.contract_hooks`): the few refusals of
a schema-valid request that no schema can express, and nothing else.

A failure is dropped only when the service answered with the one error body and one of these codes:

    invalid_image, invalid_base64, unsupported_image (422, 415)
        the image must be a real image file: a schema can say "base64" or "binary", not "decodes as a PNG"
        (the generator's base64 also lets through text no decoder accepts, such as a lone character)
    conflicting_parameters (400)
        a name given both in the query string and in the body, or `class` with `top_k`: two places at once
    unknown_class, unknown_layer, unknown_method, method_not_applicable (400)
        labels and layers are the model's own (GET /v1/models/{model} lists them); method names are resolved
        with their aliases and comma-separated lists; CAM applies at one layer only
    cost_exceeded, answer_too_large (400), and invalid_parameter whose message names a limit of the running
        service (`at most N classes per request`, `at most N per request` explanations, `overlay_max_side is at
        most`): bounds set by the service's settings; or a layer of the model that is not a convolution over the
        colour channels (filters); or `threshold` sent to a model that is not multilabel, `reference` or `concept` to
        one that is not an embedding model, `mask` to one that is not a segmentation model, or `detection` and
        `score_threshold` to one that is not a detection model (the model's task is in GET /v1/models/{model});
        or `metrics` and `target_box` that do not go together (a localisation metric needs the box, the box needs
        one, its x0 < x1 and y0 < y1, a metric through the model needs a classifier), or a metric name in a
        comma-separated list that is not one; a metric parameter without a metric named that takes it, or one
        the model's input does not admit (a features_in_step that does not divide its pixels, a patch_size or
        subset_size larger than it)
    idempotency_key_reused (422)
        an `Idempotency-Key` the generator sends again with another request: what the key was first used for
        is state, not schema
    503 with `Retry-After` (queue_full, too_many_jobs, ...)
        the documented overload answer, which a fast generator of long jobs provokes on purpose

and two findings that are not failures:

    a job still readable after DELETE (use_after_free)
        DELETE /v1/jobs/{id} cancels the job, which stays readable with its final status until its TTL
        (docs/jobs.md): the resource is the job's record, not the work
    a "schema-violating" multipart body whose mutation turned the `image` part into an extra field
        (`additionalProperties` ... `(was image)`): the generator still sends it as the declared file part,
        so the request is valid and rightly accepted
"""

import json
import re

import schemathesis

INHERENT_CODES = {
    "invalid_image",
    "invalid_base64",
    "unsupported_image",
    "conflicting_parameters",
    "unknown_class",
    "unknown_layer",
    "unknown_method",
    "method_not_applicable",
    "cost_exceeded",
    "answer_too_large",
    "idempotency_key_reused",
}
JOBS_PATH = "/v1/jobs/"
IMAGE_MADE_EXTRA = re.compile(r"`additionalProperties`[^\n]*\(was image\)")
SETTINGS_LIMIT = re.compile(
    r"at most \d+ classes per request|explanations; at most \d+ per request|overlay_max_side is at most \d+|"
    r"is not a convolution over the 3 colour channels|"
    r"'threshold' applies to multilabel models|'(reference|concept)' applies to embedding models|"
    r"'mask' applies to segmentation models|'(detection|score_threshold)' applies to detection models|"
    r"unknown metric|give target_box=|'target_box' is for the localisation metrics|with x0 < x1 and y0 < y1|"
    r"the metrics that run through the model apply to classifiers|"
    r"is a parameter of the metrics|features_in_step must divide|patch_size is at most the input's side|"
    r"subset_size is at most the input's"
)


def error_of(response) -> tuple[str, str] | None:  # type: ignore[no-untyped-def]
    """(code, message) of the one error body, or None when the answer is not one."""
    try:
        error = json.loads(response.content)["error"]
        return error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        return None


def is_inherent(failure, case, response) -> bool:  # type: ignore[no-untyped-def]
    kind = type(failure).__name__
    if kind == "UseAfterFree":
        return case.operation.path.startswith(JOBS_PATH)
    if kind == "AcceptedNegativeData":
        return bool(IMAGE_MADE_EXTRA.search(getattr(failure, "message", "") or ""))
    error = error_of(response)
    if error is None:
        return False
    code, message = error
    if kind == "ServerError":
        return response.status_code == 503 and "retry-after" in {k.lower() for k in response.headers}
    if kind != "RejectedPositiveData":
        return False
    return code in INHERENT_CODES or (code == "invalid_parameter" and bool(SETTINGS_LIMIT.search(message)))


@schemathesis.hook
def filter_failure(ctx, failure, case, response) -> bool:  # type: ignore[no-untyped-def]
    return not is_inherent(failure, case, response)
