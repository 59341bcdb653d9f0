"""Reading a posted image and its body fields, whatever the content type.

    multipart/form-data          file field `image`, other fields are parameters
    application/json             {"image": "<base64>", ...parameters}
    image/* or application/octet-stream   the body is the image file

The body is counted as it streams and refused past the limit (413), whatever Content-Length says. A JSON body
is parsed, and its base64 image decoded, in the CPU pool (`run_cpu`): 10 MB of them would hold the event loop
for tens of milliseconds.
"""

import json
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request

from api_schemas import ExplainParameters
from api_schemas.features import ActivationsParameters
from service.core.errors import BadRequest, InvalidImage, InvalidParameter, PayloadTooLarge, UnsupportedMediaType
from service.imaging.encoding import decode_base64_image

RAW_IMAGE_TYPES = ("application/octet-stream",)
RunCpu = Callable[..., Awaitable[Any]]
"""`ServiceRuntime.run_cpu`: runs a function in the CPU pool."""
MAX_JSON_SEPARATORS = 4096
"""Commas a JSON body may hold: its parameters take a few hundred values at most (34 methods, 64 classes) and
a base64 image none, so a body of millions of values is refused as it arrives, before it is parsed (a parse of
10 MB of them takes a quarter of a second of CPU)."""


class JsonFields(dict[str, Any]):
    """Body fields that came as JSON values (typed), not as form text: their JSON types are checked against the
    schema (`service.http.parameters.check_json_types`)."""


def most_form_fields(*models: type[BaseModel]) -> int:
    """The most fields a schema-valid multipart body of any of `models` holds: one per field, `maxItems` per
    list field (a list is sent as repeated fields), and the image part."""
    most = 0
    for model in models:
        fields = 1
        for schema in model.model_json_schema(by_alias=True)["properties"].values():
            fields += max((branch.get("maxItems", 1) for branch in schema.get("anyOf", [schema])), default=1)
        most = max(most, fields)
    return most


MAX_FORM_FIELDS = most_form_fields(ExplainParameters, ActivationsParameters)
"""Fields a multipart body may hold: as many as the schema allows, no more (the parser stops at once past it)."""


async def read_body(request: Request, max_bytes: int, json_values: bool = False) -> bytes:
    """The whole body, or 413 as soon as more than `max_bytes` have been announced or received. With
    `json_values`, a JSON body is refused (400 `invalid_json`, and the connection closed) as soon as it has
    received more separators than parameters take, without reading the rest of it."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"body of {declared} bytes is over the limit of {max_bytes} bytes")
    chunks: list[bytes] = []
    received = separators = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
        if json_values:
            separators += chunk.count(b",")
            if separators > MAX_JSON_SEPARATORS:
                raise BadRequest(
                    f"the JSON body holds {separators} values or more; parameters take at most {MAX_JSON_SEPARATORS}",
                    code="invalid_json",
                    headers={"Connection": "close"},  # the rest of the body is not read
                )
        chunks.append(chunk)
    return b"".join(chunks)


SECOND_FILES = ("reference", "mask")
"""The optional second file of a request, an image: an embedding model's `reference`, or the `mask` of the pixels a
segmentation model's explanations sum over. A file part, or base64 text in JSON, returned among the fields (bytes
from a file part) for the route to take out."""


def take_file(fields: dict[str, Any], name: str) -> bytes | None:
    """Take the second file `name` (one of `SECOND_FILES`) out of a request's fields: its bytes, or None.

    Raises:
        InvalidImage: base64 text that does not decode.
        InvalidParameter: a JSON value that is not text.
    """
    value = fields.pop(name, None)
    if value is None or isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise InvalidParameter(f"'{name}' must be an image file: a file part, or base64 text in JSON")
    return _image_from_base64(name, value)


def _image_from_base64(name: str, text: str) -> bytes:
    """The file bytes of an image sent as base64 text in the JSON field `name`.

    Raises:
        InvalidImage: text that does not decode (`invalid_base64`).
    """
    try:
        return decode_base64_image(text)
    except ValueError as exc:
        raise InvalidImage(f"'{name}' is not valid base64: {exc}", code="invalid_base64") from exc


async def read_posted_image(request: Request, max_bytes: int, run_cpu: RunCpu) -> tuple[bytes, dict[str, Any]]:
    """(image file bytes, body fields other than the image) of a request.

    Raises:
        PayloadTooLarge: body over `max_bytes`.
        UnsupportedMediaType: a content type that is none of the three forms.
        BadRequest: malformed JSON or multipart, or no image in it.
        InvalidImage: the base64 text does not decode.
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "multipart/form-data":
        return await _read_multipart(request, max_bytes)
    body = await read_body(request, max_bytes, json_values=media_type == "application/json")
    if media_type == "application/json":
        return await run_cpu(_read_json, body)
    if media_type.startswith("image/") or media_type in RAW_IMAGE_TYPES:
        return body, {}
    raise UnsupportedMediaType(
        f"unsupported content type '{media_type or '(none)'}'; send multipart/form-data with a file field "
        "'image', application/json with a base64 'image', or the image itself as image/*"
    )


async def read_json_object(request: Request, max_bytes: int, run_cpu: RunCpu) -> dict[str, Any]:
    """The JSON object of an `application/json` body.

    Raises:
        PayloadTooLarge: body over `max_bytes`.
        UnsupportedMediaType: another content type.
        BadRequest: malformed JSON, or not an object (`invalid_json`).
    """
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise UnsupportedMediaType(f"unsupported content type '{media_type or '(none)'}'; send application/json")
    return await run_cpu(_parse_json_object, await read_body(request, max_bytes, json_values=True))


def _parse_json_object(body: bytes) -> dict[str, Any]:
    """The JSON object of a body that `read_body(..., json_values=True)` read (its separators already counted)."""
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # also over-deep nesting and integers of > 4300 digits
        raise BadRequest(f"malformed JSON: {exc}", code="invalid_json") from exc
    if not isinstance(document, dict):
        raise BadRequest("the JSON body must be an object", code="invalid_json")
    return document


def _read_json(body: bytes) -> tuple[bytes, dict[str, Any]]:
    document = _parse_json_object(body)
    image = document.pop("image", None)
    if not isinstance(image, str):
        raise BadRequest("the JSON body needs 'image': the image file as a base64 string", code="missing_image")
    return _image_from_base64("image", image), JsonFields(document)


async def _read_multipart(request: Request, max_bytes: int) -> tuple[bytes, dict[str, Any]]:
    body = await read_body(request, max_bytes)

    async def replay() -> dict[str, Any]:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=1 + len(SECOND_FILES), max_fields=MAX_FORM_FIELDS)
    except StarletteHTTPException as exc:
        raise BadRequest(f"malformed multipart body: {exc.detail}", code="invalid_multipart") from exc
    try:
        if len(form.getlist("image")) > 1:
            raise BadRequest("the multipart body has several 'image' parts; send one", code="invalid_multipart")
        image = form.get("image")
        if not isinstance(image, UploadFile):
            raise BadRequest("the multipart body needs a file field 'image'", code="missing_image")
        data = await image.read()
        fields: dict[str, Any] = {}
        for key in form.keys():
            if key == "image":
                continue
            values = form.getlist(key)
            if key in SECOND_FILES and len(values) == 1 and isinstance(values[0], UploadFile):
                fields[key] = await values[0].read()  # a second image (reference or mask): bytes, not text
                continue
            if not all(isinstance(v, str) for v in values):
                raise InvalidParameter(f"field '{key}' must be text, not a file")
            fields[key] = values[0] if len(values) == 1 else values
        return data, fields
    finally:
        await form.close()
