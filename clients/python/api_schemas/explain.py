"""Wire models of `POST /v1/models/{model}/explain` and `/predict`."""

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt

MethodName = Literal[
    "cam",
    "grad_cam",
    "grad_cam_pp",
    "xgrad_cam",
    "layer_cam",
    "hires_cam",
    "eigen_cam",
    "score_cam",
    "ablation_cam",
    "grad_cam_elementwise",
    "eigen_grad_cam",
    "random_cam",
    "kpca_cam",
    "ss_cam",
    "is_cam",
    "smooth_grad_cam_pp",
    "shapley_cam",
    "finer_cam",
    "fullgrad",
    "saliency",
    "gradient_x_input",
    "guided_backprop",
    "deconvnet",
    "guided_grad_cam",
    "smoothgrad",
    "integrated_gradients",
    "occlusion",
    "deeplift",
    "deeplift_shap",
    "gradient_shap",
    "feature_ablation",
    "lime",
    "kernel_shap",
    "lrp",
    "attention_rollout",
    "transformer_attribution",
    "generic_attention",
]
Colormap = Literal["jet", "viridis", "inferno", "turbo"]
Include = Literal["map", "overlay", "logits"]
MapEncoding = Literal["list", "base64"]
OverlayFormat = Literal["png", "jpeg", "webp"]
Fill = Literal["black", "mean"]
BASE64_IMAGE = {"format": "byte", "contentEncoding": "base64", "contentMediaType": "image/*"}
"""JSON Schema annotations of a base64 image field (OpenAPI 3.1)."""
NoiseTunnelType = Literal["smoothgrad", "smoothgrad_sq", "vargrad"]
HeadFusion = Literal["mean", "max", "min"]
LRPComposite = Literal[
    "epsilon",
    "epsilon_plus",
    "epsilon_plus_flat",
    "epsilon_gamma_box",
    "epsilon_alpha2_beta1",
    "epsilon_alpha2_beta1_flat",
    "excitation_backprop",
]
Canonize = Literal["auto", "none"]
MetricName = Literal[
    "sparseness",
    "complexity",
    "effective_complexity",
    "pointing_game",
    "attribution_localisation",
    "top_k_intersection",
    "relevance_rank_accuracy",
    "relevance_mass_accuracy",
    "auc",
    "faithfulness_correlation",
    "region_perturbation",
    "selectivity",
    "pixel_flipping",
    "faithfulness_estimate",
    "monotonicity_correlation",
]
"""Quantus 0.6.0's metrics the service computes for an explanation (see `GET /v1/metrics`)."""

Task = Literal["classification", "multilabel", "embedding", "segmentation", "detection"]
"""What a model's output means: one label per image (softmax over classes), independent labels (a sigmoid each),
a vector that describes the image (explained by its cosine similarity to a reference image's), one label per
pixel (explained by a class's logits summed over its predicted pixels), or boxes with a label and a score each
(explained by a detection's box score)."""
DEFAULT_SCORE_THRESHOLD = 0.5
DEFAULT_THRESHOLD = 0.5
MAX_CLASSES = 64
"""The most classes one request can name (the service's own bound, MAX_CLASSES_PER_REQUEST, is at most this)."""
MAX_SEED = 2**32 - 1
"""Seeds are numpy's legacy range: random_cam and gradient_shap draw from `RandomState(seed)` as the reference
libraries do, so that the same seed gives the same answer."""


def _integral_floats_as_ints(value: object) -> object:
    """JSON Schema counts 3.0 as an integer; strict integers (which keep "3" a label) would refuse it."""
    if isinstance(value, list):
        return [_integral_floats_as_ints(item) for item in value]
    return int(value) if isinstance(value, float) and value.is_integer() else value


ClassIndex = Annotated[StrictInt, Field(ge=0, le=2**31 - 1)]
IntegralFloatsAsInts = BeforeValidator(_integral_floats_as_ints)


class ExplainParameters(BaseModel):
    """Parameters of an explain request: JSON fields, form fields or query parameters (lists may repeat)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    method: str | Annotated[list[str], Field(max_length=len(get_args(MethodName)))] | None = Field(
        default=None, description="One or several methods (see `GET /v1/methods`); default `grad_cam`."
    )
    # Strict: a JSON `true` is not class 1. Form and query values are strings and take the `str` branch.
    class_: Annotated[
        ClassIndex | str | Annotated[list[ClassIndex | str], Field(max_length=MAX_CLASSES)] | None,
        IntegralFloatsAsInts,
    ] = Field(
        default=None,
        alias="class",
        description="One or several classes, by index or label (case-insensitive); default the top-1 class.",
    )
    top_k: int | None = Field(
        default=None,
        ge=1,
        le=MAX_CLASSES,
        description="Explain the k best classes instead of `class` (multilabel models: at most k of the labels at "
        "or above `threshold`).",
    )
    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Multilabel models: the probability (sigmoid) a label must reach to be explained when no "
        "`class` is given, and to be listed in `positive_classes`; default 0.5.",
    )
    detection: Annotated[
        ClassIndex | str | Annotated[list[ClassIndex | str], Field(max_length=MAX_CLASSES)] | None,
        IntegralFloatsAsInts,
    ] = Field(
        default=None,
        description="Detection models: the detections to explain, by their index in the answer's `detections` "
        "(one or several, or comma-separated: `0,2`); default every detection, at most `top_k`.",
    )
    score_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Detection models: the score a box must reach to be one of the answer's `detections`; default 0.5.",
    )
    concept: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Embedding models: a stored concept vector by name (`GET /v1/models/{model}` lists them), the "
        "target of the explanations in place of a `reference` image.",
    )
    layer: str | None = Field(default=None, description="Target layer; default the model's default layer.")
    colormap: Colormap | None = Field(default=None, description="Overlay colormap; default `jet`.")
    alpha: float | None = Field(
        default=None, ge=0, le=1, allow_inf_nan=False, description="Heatmap opacity in the overlay; default 0.5."
    )
    include: Include | Annotated[list[Include], Field(max_length=len(get_args(Include)))] | None = Field(
        default=None, description="Outputs to include; default all of `map`, `overlay`, `logits`."
    )
    overlay_format: OverlayFormat | None = Field(
        default=None,
        description="File format of the overlays: `png` (default, lossless) in `overlay_png`, `jpeg` (quality 90) in "
        "`overlay_jpeg`, or `webp` (quality 85) in `overlay_webp`; JPEG and WebP are about 10x smaller.",
    )
    overlay_max_side: int | None = Field(
        default=None,
        ge=16,
        le=4096,
        description="Long side of the overlays in pixels; default and upper bound: the service's limit (512 unless "
        "configured). The picture is never enlarged.",
    )
    map_encoding: MapEncoding | None = Field(
        default=None,
        description="`list` (default): `map.data` as nested lists; `base64`: `map.data_base64`, the raw map as "
        "little-endian float32, row-major, lossless and about 4x smaller (best for input-resolution maps).",
    )
    bbox: bool | None = Field(
        default=None,
        description="Add the weakly supervised localization box of Zhou et al. to each explanation.",
    )
    bbox_threshold: float | None = Field(
        default=None, ge=0, le=1, description="Fraction of the map's maximum that the box region exceeds; default 0.2."
    )
    evaluate: bool | None = Field(
        default=None,
        description="Add faithfulness scores to each explanation (confidence change, deletion and insertion "
        "AUC); costs extra forward passes, counted against the service's bound.",
    )
    metrics: str | Annotated[list[str], Field(max_length=len(get_args(MetricName)))] | None = Field(
        default=None,
        description="One or several of Quantus's metrics to compute for each explanation (see `GET /v1/metrics`), "
        "at Quantus 0.6.0's defaults, which the metric parameters below change (under Quantus's names; each "
        "applies to every metric named that takes it); each explanation's `metrics` gives the values and the "
        "parameters used.",
    )
    target_box: str | None = Field(
        default=None,
        max_length=200,
        pattern=r"^\d+(\.\d+)?,\d+(\.\d+)?,\d+(\.\d+)?,\d+(\.\d+)?$",
        description="`x0,y0,x1,y1`: where the object is, in the pixels of the image as sent; the localisation "
        "metrics (`pointing_game`, `attribution_localisation`, ...) score the map against it.",
    )
    features_in_step: int | None = Field(
        default=None,
        ge=1,
        le=2**20,
        description="pixel_flipping, faithfulness_estimate, monotonicity_correlation: input values (channel, row, "
        "column) perturbed per step, in the order of their relevance; one forward pass per step (nr_samples for "
        "monotonicity_correlation). Quantus's default 1 is a pass per value (150,528 at "
        "224 px, beyond the cost bound): 1,568 makes 96 steps at 224 px.",
    )
    nr_samples: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="monotonicity_correlation: uniform draws per step, one forward pass each; default 100.",
    )
    patch_size: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="region_perturbation, selectivity: side of the square patches perturbed; default 8.",
    )
    regions_evaluation: int | None = Field(
        default=None, ge=1, le=4096, description="region_perturbation: patches perturbed, one per step; default 100."
    )
    nr_runs: int | None = Field(
        default=None,
        ge=2,
        le=4096,
        description="faithfulness_correlation: random subsets, one forward pass each; default 100.",
    )
    subset_size: int | None = Field(
        default=None,
        ge=1,
        le=2**20,
        description="faithfulness_correlation: input values in each random subset; default 224.",
    )
    normalise: bool | None = Field(
        default=None,
        description="Every metric: divide the attribution by its largest absolute value first; default true "
        "(Quantus's).",
    )
    abs: bool | None = Field(
        default=None, description="Every metric: take the attribution's absolute values first; default false."
    )
    samples: int | None = Field(
        default=None,
        ge=1,
        le=1024,
        description="smoothgrad: noisy samples, default 25; gradient_shap: random samples, default 25; "
        "deeplift_shap: baselines, default 16; lime, kernel_shap: perturbed images, default 256; ss_cam: noisy "
        "masks, is_cam: path steps, default 3; smooth_grad_cam_pp: noisy inputs, default 4.",
    )
    noise: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="smoothgrad: noise level as a fraction of the input range, default 0.15; gradient_shap: the "
        "same, default 0.",
    )
    seed: int | None = Field(
        default=None,
        ge=0,
        le=MAX_SEED,
        description="smoothgrad, gradient_shap, deeplift_shap, lime, kernel_shap, ss_cam, smooth_grad_cam_pp: seed "
        "of the random draws; random_cam: of its weights; default 0.",
    )
    nt_type: NoiseTunnelType | None = Field(
        default=None,
        description="smoothgrad: how the noisy samples are pooled, as captum's NoiseTunnel: `smoothgrad` (mean, "
        "the default), `smoothgrad_sq` (mean of squares) or `vargrad` (variance).",
    )
    steps: int | None = Field(default=None, ge=1, le=1024, description="integrated_gradients: steps; default 32.")
    baseline: Fill | None = Field(
        default=None, description="integrated_gradients: path start; deeplift: reference input; default `black`."
    )
    window: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="occlusion: patch side in pixels; feature_ablation, lime, kernel_shap: side of the grid's patches "
        "(the features); default 32.",
    )
    stride: int | None = Field(default=None, ge=1, le=4096, description="occlusion: patch step in pixels; default 16.")
    fill: Fill | None = Field(
        default=None, description="occlusion, feature_ablation, lime, kernel_shap: patch fill; default `mean`."
    )
    sigma: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="ss_cam: noise standard deviation on the normalised masks; default 2. "
        "smooth_grad_cam_pp: on the normalised input; default 0.3.",
    )
    eigen_smooth: bool | None = Field(
        default=None,
        description="grad_cam, grad_cam_pp, xgrad_cam, layer_cam, hires_cam, grad_cam_elementwise, random_cam: the "
        "first principal component of the weighted activations instead of their sum (pytorch-grad-cam's "
        "eigen_smooth); default false.",
    )
    aug_smooth: bool | None = Field(
        default=None,
        description="grad_cam, grad_cam_pp, xgrad_cam, layer_cam, hires_cam, grad_cam_elementwise, random_cam: the "
        "mean of the maps of six augmented inputs (horizontal flip x brightness 0.9, 1, 1.1; pytorch-grad-cam's "
        "aug_smooth), 6 extra passes per class; default false.",
    )

    head_fusion: HeadFusion | None = Field(
        default=None,
        description="attention_rollout: how a block's attention heads are fused, `mean` (the default), `max` or `min`.",
    )
    discard_ratio: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="attention_rollout: fraction of each fused attention matrix's smallest entries dropped before "
        "the rollout; default 0.",
    )
    composite: LRPComposite | None = Field(
        default=None,
        description="lrp: which rule each layer gets, as Zennit's composites of the same names: `epsilon` (the "
        "default: captum's rules, epsilon 1e-9 on every layer), `epsilon_plus` (z+ on convolutions, epsilon on "
        "linear layers), `epsilon_plus_flat` (and flat on the first layer), `epsilon_gamma_box` (gamma 0.25 on "
        "convolutions, z-box on the first), `epsilon_alpha2_beta1`, `epsilon_alpha2_beta1_flat`, "
        "`excitation_backprop` (z+ everywhere).",
    )
    canonize: Canonize | None = Field(
        default=None,
        description="lrp: `auto` (the default) merges each batch norm into the layer before it and gives residual "
        "additions a rule, on a copy of the model kept for LRP; `none` takes the model as it is (plain chains "
        "only).",
    )


class ExplainJSONRequest(ExplainParameters):
    """The JSON form of an explain request; the multipart form takes the same fields, `image` (and `reference` or
    `mask`) as files."""

    image: str = Field(
        min_length=1,
        json_schema_extra=BASE64_IMAGE,
        description="The image file (JPEG, PNG, WebP, GIF, BMP, TIFF), base64: standard or URL-safe alphabet, "
        "padding optional, whitespace ignored, an optional `data:<type>;base64,` prefix.",
    )
    reference: str | None = Field(
        default=None,
        min_length=1,
        json_schema_extra=BASE64_IMAGE,
        description="Embedding models (required there, refused elsewhere): a second image, base64 as `image`; the "
        "explanations target the cosine similarity of the two images' embeddings.",
    )
    mask: str | None = Field(
        default=None,
        min_length=1,
        json_schema_extra=BASE64_IMAGE,
        description="Segmentation models (refused elsewhere): an image of the image's size whose pixels that are not "
        "black mark a region, base64 as `image`; the explanations sum each class's logits over the region instead "
        "of over the pixels predicted as the class, and without `class` explain the classes with the most "
        "pixels in it.",
    )


class PredictParameters(BaseModel):
    """Predict takes one parameter beside the image; unknown names are refused."""

    model_config = ConfigDict(extra="forbid")

    threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Multilabel models: the probability a label must reach to be listed in `positive_classes`; "
        "default 0.5.",
    )
    score_threshold: float | None = Field(
        default=None,
        ge=0,
        le=1,
        allow_inf_nan=False,
        description="Detection models: the score a box must reach to be one of the answer's `detections`; default 0.5.",
    )


class PredictJSONRequest(PredictParameters):
    image: str = Field(
        min_length=1, json_schema_extra=BASE64_IMAGE, description="The image file, base64 (as for explain)."
    )


class ClassRef(BaseModel):
    index: int
    label: str


class TopClass(ClassRef):
    logit: float
    probability: float = Field(
        description="Softmax over the classes (classification), or the label's own sigmoid (multilabel)."
    )


class SegmentShare(ClassRef):
    share: float = Field(description="The fraction of the image's pixels predicted as this class.")


class Segmentation(BaseModel):
    mask_png: str = Field(
        description="Base64 PNG in palette mode at `size`: each pixel's value is its predicted class index (the "
        "palette colours the classes as PASCAL VOC's colour map does).",
        json_schema_extra={"format": "byte", "contentEncoding": "base64", "contentMediaType": "image/png"},
    )
    size: list[int] = Field(
        description="`[width, height]` of the mask: the image's, its long side at most the service's "
        "OVERLAY_MAX_SIDE (nearest-neighbour from the model's input size)."
    )
    classes: list[SegmentShare] = Field(description="The classes predicted somewhere in the image, most pixels first.")


class MapData(BaseModel):
    shape: list[int] = Field(
        description="`[h, w]`: the target layer's grid (7x7 for most models at 224 px), or the model's input "
        "size for input-resolution methods."
    )
    dtype: Literal["float32"] = "float32"
    data: list[list[float]] | None = Field(
        default=None, description="The raw map, row by row, before upsampling and normalisation (`map_encoding=list`)."
    )
    data_base64: str | None = Field(
        default=None, description="The raw map as base64 of little-endian float32, row-major (`map_encoding=base64`)."
    )
    image_extent: list[float] = Field(
        default=[1.0, 1.0],
        min_length=2,
        max_length=2,
        description="The fraction `[of the height, of the width]` of the map that the image covers, from its top-left "
        "corner: `[1, 1]`, except for a detection model's maps, whose input is letterboxed (the image keeps its "
        "aspect ratio, padded at the right and bottom): their rows and columns are those that cover the image, and "
        "the last ones may reach past it. Upsample the map's top-left `image_extent` onto the image.",
    )


class BoundingBox(BaseModel):
    """Pixel box `[x0, x1) x [y0, y1)` in the coordinates of the image as sent (after EXIF orientation)."""

    x0: int
    y0: int
    x1: int
    y1: int


class Evaluation(BaseModel):
    confidence_change: float = Field(
        description="p(class | only the top 20% of the map kept) - p(class | image); higher is more faithful."
    )
    deletion_auc: float = Field(
        description="Area under p(class) as the most salient pixels are removed; lower is better."
    )
    insertion_auc: float = Field(description="Area under p(class) as they are put back into a blur; higher is better.")


class MetricValue(BaseModel):
    value: float | None = Field(description="The metric's value; null where it is undefined (an all-zero map).")
    parameters: dict[str, bool | int | float | str] = Field(
        description="The parameters it was computed with, under Quantus's names, to reproduce it with Quantus."
    )


class DetectedBox(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    index: int = Field(description="The detection's index, which `detection` names.")
    class_: ClassRef = Field(alias="class")
    score: float
    box: list[float] = Field(
        description="`[x0, y0, x1, y1]` in the pixels of the image as sent (upright), mapped from the model's input."
    )


class Explanation(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    method: MethodName
    class_: ClassRef | None = Field(
        alias="class",
        description="The class explained (a detection model's: the detection's label); null for an embedding model "
        "(the target is the similarity).",
    )
    detection: int | None = Field(
        default=None,
        description="Detection models: the index of the detection explained (its box drawn on the overlay).",
    )
    layer: str | None = Field(description="The target layer; null for maps at the input resolution.")
    map: MapData | None = None
    overlay_png: str | None = Field(
        default=None,
        description="Base64 PNG (`overlay_format=png`, the default): the whole posted image (long side at most "
        "`overlay_max_side`) with the map upsampled, normalised to 0..1, colourised and blended on it.",
    )
    overlay_jpeg: str | None = Field(default=None, description="The overlay as base64 JPEG (`overlay_format=jpeg`).")
    overlay_webp: str | None = Field(default=None, description="The overlay as base64 WebP (`overlay_format=webp`).")
    bbox: BoundingBox | None = None
    evaluation: Evaluation | None = None
    metrics: dict[MetricName, MetricValue] | None = Field(
        default=None, description="The metrics the request named (`metrics`), by name."
    )


class PredictResponse(BaseModel):
    model: str
    task: Task = Field(description="What the logits mean (the model's manifest says).")
    input_size: list[int] = Field(description="`[height, width]` the image was resized to.")
    logits: list[float] | None = Field(
        default=None, description="One logit per class, in class-index order; an embedding model's embedding."
    )
    top_classes: list[TopClass] = Field(description="The best classes; empty for an embedding model.")
    positive_classes: list[TopClass] | None = Field(
        default=None,
        description="Multilabel models: every label whose probability reaches `threshold`, best first; null for "
        "classification.",
    )
    detections: list[DetectedBox] | None = Field(
        default=None,
        description="Detection models: the boxes whose score reaches `score_threshold`, best first; null for the "
        "other tasks (whose `logits` and `top_classes` a detection model's answer leaves out).",
    )
    segmentation: Segmentation | None = Field(
        default=None,
        description="Segmentation models: the predicted class of each pixel and each class's share of the image; "
        "null for the other tasks (whose `logits` and `top_classes` a segmentation model's answer leaves out).",
    )
    timings_ms: dict[str, float]


class ExplainResponse(PredictResponse):
    similarity: float | None = Field(
        default=None,
        description="Embedding models: the cosine similarity of the image's and the reference's embeddings, the "
        "score every explanation explains; null for the other tasks.",
    )
    explanations: list[Explanation] = Field(description="One per (method, class), methods outermost.")
