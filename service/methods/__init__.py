"""The registry of explanation methods, by canonical key, and the lookup of the spellings people type."""

import re

from service.errors import UnknownMethod
from service.methods.base import LayerInputs, Method, Need
from service.methods.cam import CAM
from service.methods.grad_cam import GradCAM
from service.methods.grad_cam_pp import GradCAMPlusPlus

METHODS: dict[str, Method] = {method.name: method for method in (CAM(), GradCAM(), GradCAMPlusPlus())}


def _spelling_key(spelling: str) -> str:
    """'GradCAM++', 'grad-cam++', 'gradcam_pp' -> 'gradcampp'."""
    lowered = spelling.strip().lower().replace("++", "pp").replace("plusplus", "pp")
    return re.sub(r"[\s_\-]", "", lowered)


_BY_SPELLING = {_spelling_key(spelling): m.name for m in METHODS.values() for spelling in (m.name, *m.aliases)}


def resolve_method(spelling: str) -> Method:
    """The method a client means by `spelling` (canonical key or a common alias, any case).

    Raises:
        UnknownMethod: no method answers to it; the message lists the valid keys.
    """
    name = _BY_SPELLING.get(_spelling_key(spelling))
    if name is None:
        raise UnknownMethod(f"unknown method '{spelling}'; valid methods: {sorted(METHODS)} (see GET /v1/methods)")
    return METHODS[name]


__all__ = ["METHODS", "LayerInputs", "Method", "Need", "resolve_method"]
