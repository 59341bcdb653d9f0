"""What is served: models and methods."""

from fastapi import APIRouter

from api_schemas import MethodInfo, MethodList, MetricInfo, MetricList, ModelInfo, ModelList
from model_store import LoadedModel
from service.http.deps import API_KEY_REQUIRED, RuntimeDep
from service.http.routes.errors_doc import error_responses
from service.http.tasks import explains_task
from service.methods import METHODS, Need
from service.metrics import METRICS

router = APIRouter(prefix="/v1", tags=["catalog"], dependencies=API_KEY_REQUIRED, responses=error_responses(401))


def method_info(name: str) -> MethodInfo:
    method = METHODS[name]
    return MethodInfo(
        name=method.name,
        aliases=list(method.aliases),
        title=method.title,
        paper=method.paper,
        raw_map=method.raw_map,
        needs=sorted(need.value for need in method.needs),
        cost=method.cost,
        input_resolution=method.input_resolution,
        parameters=(["layer"] if method.uses_layer else []) + list(method.parameters),
        requires=method.requires,
        sanity_check=method.sanity_check,
    )


def model_info(model: LoadedModel) -> ModelInfo:
    scripted = model.scripted
    hook_needs = {Need.ACTIVATIONS, Need.GUIDED_GRADIENTS, Need.DECONV_GRADIENTS}
    applicable = [
        name
        for name, method in METHODS.items()
        if not (scripted and method.needs & hook_needs)
        and not (method.uses_layer and model.default_layer is None)
        and (Need.CLASSIFIER_WEIGHTS not in method.needs or model.cam_layer == model.default_layer)
        and method.not_applicable_to(model.module) is None
        and explains_task(method, model)
    ]
    return ModelInfo(
        name=model.name,
        source=model.source,
        input_size=list(model.preprocessing.input_size),
        num_classes=model.num_classes,
        task=model.task,
        default_layer=model.default_layer,
        classifier_layer=model.classifier_layer,
        layers=model.layers,
        methods=applicable,
        concepts=sorted(model.concepts),
        device=str(model.device),
    )


@router.get("/methods", response_model=MethodList)
async def list_methods() -> MethodList:
    """Every explanation method, with its paper, raw-map definition, needs and cost."""
    return MethodList(methods=[method_info(name) for name in METHODS])


@router.get("/metrics", response_model=MetricList)
async def list_metrics() -> MetricList:
    """Every metric a request may name in `metrics`: its paper, definition, parameters, which way is better, cost."""
    return MetricList(
        metrics=[
            MetricInfo(
                name=metric.name,
                title=metric.title,
                group=metric.group,
                paper=metric.paper,
                definition=metric.definition,
                better=metric.better,
                parameters=metric.parameters,
                cost=metric.cost,
            )
            for metric in METRICS.values()
        ]
    )


@router.get("/models", response_model=ModelList, responses=error_responses(503))
async def list_models(runtime: RuntimeDep) -> ModelList:
    """The warm models."""
    return ModelList(models=[model_info(worker.model) for worker in runtime.workers.values()])


@router.get("/models/{model}", response_model=ModelInfo, responses=error_responses(404, 503))
async def get_model(model: str, runtime: RuntimeDep) -> ModelInfo:
    """One warm model: input size, class count, default and usable layers, applicable methods."""
    return model_info(runtime.worker(model).model)
