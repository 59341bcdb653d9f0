"""The registry of explanation methods, by canonical key, and the lookup of the spellings people type."""

import re

import torch

from service.core.errors import UnknownMethod
from service.methods.ablation_cam import AblationCAM
from service.methods.attention_rollout import AttentionRollout
from service.methods.base import GRADIENT_PASS_COST, Method, MethodInputs, MultiPassMethod, Need, NoOptions
from service.methods.cam import CAM
from service.methods.deconvnet import Deconvnet
from service.methods.deeplift import DeepLift
from service.methods.deeplift_shap import DeepLiftShap
from service.methods.eigen_cam import EigenCAM
from service.methods.eigen_grad_cam import EigenGradCAM
from service.methods.feature_ablation import FeatureAblation
from service.methods.finer_cam import FinerCAM
from service.methods.fullgrad import FullGrad
from service.methods.generic_attention import GenericAttention
from service.methods.grad_cam import GradCAM
from service.methods.grad_cam_elementwise import GradCAMElementWise
from service.methods.grad_cam_pp import GradCAMPlusPlus
from service.methods.gradient_shap import GradientShap
from service.methods.gradient_x_input import GradientXInput
from service.methods.guided_backprop import GuidedBackprop
from service.methods.guided_grad_cam import GuidedGradCAM
from service.methods.hires_cam import HiResCAM
from service.methods.integrated_gradients import IntegratedGradients
from service.methods.is_cam import ISCAM
from service.methods.kernel_shap import KernelShap
from service.methods.kpca_cam import KPCACAM
from service.methods.layer_cam import LayerCAM
from service.methods.lime import Lime
from service.methods.lrp import LRP
from service.methods.occlusion import Occlusion
from service.methods.random_cam import RandomCAM
from service.methods.saliency import Saliency
from service.methods.score_cam import ScoreCAM
from service.methods.shapley_cam import ShapleyCAM
from service.methods.smooth_grad_cam_pp import SmoothGradCAMPlusPlus
from service.methods.smoothgrad import SmoothGrad
from service.methods.ss_cam import SSCAM
from service.methods.transformer_attribution import TransformerAttribution
from service.methods.xgrad_cam import XGradCAM

METHODS: dict[str, Method] = {
    method.name: method
    for method in (
        CAM(),
        GradCAM(),
        GradCAMPlusPlus(),
        XGradCAM(),
        LayerCAM(),
        HiResCAM(),
        EigenCAM(),
        ScoreCAM(),
        AblationCAM(),
        GradCAMElementWise(),
        EigenGradCAM(),
        RandomCAM(),
        KPCACAM(),
        SSCAM(),
        ISCAM(),
        SmoothGradCAMPlusPlus(),
        ShapleyCAM(),
        FinerCAM(),
        FullGrad(),
        Saliency(),
        GradientXInput(),
        GuidedBackprop(),
        Deconvnet(),
        GuidedGradCAM(),
        SmoothGrad(),
        IntegratedGradients(),
        Occlusion(),
        DeepLift(),
        DeepLiftShap(),
        GradientShap(),
        FeatureAblation(),
        Lime(),
        KernelShap(),
        LRP(),
        AttentionRollout(),
        TransformerAttribution(),
        GenericAttention(),
    )
}


def _spelling_key(spelling: str) -> str:
    """'GradCAM++', 'grad-cam++', 'gradcam_pp' -> 'gradcampp'."""
    lowered = spelling.strip().lower().replace("++", "pp").replace("plusplus", "pp")
    return re.sub(r"[\s_\-]", "", lowered)


_BY_SPELLING = {_spelling_key(spelling): m.name for m in METHODS.values() for spelling in (m.name, *m.aliases)}


def find_applicable(module: torch.nn.Module) -> list[str]:
    """The methods that apply to `module`, found once per model and remembered by the methods that are slow to
    check (LRP traces and canonizes a copy): the worker calls it after loading, so that no request pays for it."""
    return [name for name, method in METHODS.items() if method.not_applicable_to(module) is None]


def resolve_method(spelling: str) -> Method:
    """The method a client means by `spelling` (canonical key or a common alias, any case).

    Raises:
        UnknownMethod: no method answers to it; the message lists the valid keys.
    """
    name = _BY_SPELLING.get(_spelling_key(spelling))
    if name is None:
        raise UnknownMethod(f"unknown method '{spelling}'; valid methods: {sorted(METHODS)} (see GET /v1/methods)")
    return METHODS[name]


__all__ = [
    "GRADIENT_PASS_COST",
    "METHODS",
    "Method",
    "MethodInputs",
    "MultiPassMethod",
    "Need",
    "NoOptions",
    "find_applicable",
    "resolve_method",
]
