"""Make the generated OpenAPI document exact: what FastAPI derives from the routes, plus what it cannot know.

`exact_openapi(schema, api_keys_enabled)` rewrites FastAPI's document in place, generically (from the document
itself, so new routes, methods and fields need nothing here):

- inline JSON schemas of request bodies (pydantic's `$defs`) are moved into `components/schemas`, so that every
  `$ref` resolves from the document's root;
- with API keys off (the default), every secured operation also accepts an empty security requirement `{}`
  (OpenAPI's way of saying that authentication is optional); with keys on, the requirement stays mandatory;
- every operation can answer 500 with the one error body (a bug, logged with the request id);
- a 202 answer that carries a job links to the job's operations (`$response.body#/id` as `job_id`), so that a
  client or a stateful test can follow it.
"""

from typing import Any

from api_schemas import ErrorBody

DEFS_REF = "#/$defs/"
COMPONENTS_REF = "#/components/schemas/"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
INTERNAL_ERROR = {
    "description": "A bug (`internal_error`, `method_failed`); it was logged with the request id.",
    "content": {"application/json": {"schema": {"$ref": COMPONENTS_REF + ErrorBody.__name__}}},
}
JOB_PATH_PREFIX = "/v1/jobs/{job_id}"


def exact_openapi(schema: dict[str, Any], api_keys_enabled: bool) -> dict[str, Any]:
    """Rewrite FastAPI's OpenAPI document in place (see the module docstring) and return it."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    job_operations = {
        operation["operationId"]: path
        for path, item in schema["paths"].items()
        if path.startswith(JOB_PATH_PREFIX)
        for method, operation in item.items()
        if method in HTTP_METHODS
    }
    for operation in _operations(schema):
        for media in operation.get("requestBody", {}).get("content", {}).values():
            if "schema" in media:
                media["schema"] = _hoist_defs(media["schema"], components)
        for parameter in operation.get("parameters", []):
            parameter["schema"] = _hoist_defs(parameter.get("schema", {}), components)
        if operation.get("security") and not api_keys_enabled and {} not in operation["security"]:
            operation["security"].append({})
        responses = operation.setdefault("responses", {})
        responses.setdefault("500", INTERNAL_ERROR)
        accepted = responses.get("202")
        if accepted is not None and _refers_to(accepted, "JobStatus"):
            accepted["links"] = {
                operation_id: {"operationId": operation_id, "parameters": {"job_id": "$response.body#/id"}}
                for operation_id in job_operations
            }
    return schema


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        operation
        for item in schema.get("paths", {}).values()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def _hoist_defs(node: Any, components: dict[str, Any]) -> Any:
    """`node` with its `$defs` moved into `components` and `#/$defs/X` references rewritten to them."""
    if isinstance(node, dict):
        for name, definition in node.pop("$defs", {}).items():
            components.setdefault(name, _hoist_defs(definition, components))
        return {key: _hoist_defs(value, components) for key, value in node.items()}
    if isinstance(node, list):
        return [_hoist_defs(item, components) for item in node]
    if isinstance(node, str) and node.startswith(DEFS_REF):  # a `$ref` or a discriminator's mapping
        return COMPONENTS_REF + node[len(DEFS_REF) :]
    return node


def _refers_to(node: Any, name: str) -> bool:
    if isinstance(node, dict):
        return node.get("$ref") == COMPONENTS_REF + name or any(_refers_to(v, name) for v in node.values())
    if isinstance(node, list):
        return any(_refers_to(item, name) for item in node)
    return False
