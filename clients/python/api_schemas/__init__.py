"""Pydantic wire models of the HTTP API (v1): requests, responses and the one error body.

Nothing here imports torch, numpy or PIL: these are the shapes on the wire, shared by the service and by
clients that want typed responses.
"""

from api_schemas.catalog import HealthStatus, MethodInfo, MethodList, ModelInfo, ModelList
from api_schemas.errors import ErrorBody, ErrorDetail
from api_schemas.explain import (
    DEFAULT_SCORE_THRESHOLD,
    DEFAULT_THRESHOLD,
    BoundingBox,
    ClassRef,
    Colormap,
    DetectedBox,
    Evaluation,
    ExplainJSONRequest,
    ExplainParameters,
    ExplainResponse,
    Explanation,
    Include,
    MapData,
    MapEncoding,
    MethodName,
    OverlayFormat,
    PredictJSONRequest,
    PredictParameters,
    PredictResponse,
    Segmentation,
    SegmentShare,
    Task,
    TopClass,
)

__all__ = [
    "DEFAULT_SCORE_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "DetectedBox",
    "BoundingBox",
    "Evaluation",
    "MapEncoding",
    "ClassRef",
    "Colormap",
    "ErrorBody",
    "ErrorDetail",
    "Explanation",
    "ExplainJSONRequest",
    "ExplainParameters",
    "ExplainResponse",
    "HealthStatus",
    "Include",
    "MapData",
    "MethodInfo",
    "MethodList",
    "MethodName",
    "OverlayFormat",
    "ModelInfo",
    "ModelList",
    "PredictJSONRequest",
    "PredictParameters",
    "PredictResponse",
    "Segmentation",
    "SegmentShare",
    "Task",
    "TopClass",
]
