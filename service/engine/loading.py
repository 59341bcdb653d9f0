"""Where the served models come from: the store's manifests, loaded on the device of the `device` setting."""

from functools import partial

import torch

from model_store import ModelStore
from service.core.settings import Settings
from service.engine.worker import ModelLoader


def resolve_device(name: str) -> torch.device:
    """The device of the `device` setting: `auto` is CUDA when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def model_loaders(settings: Settings) -> dict[str, ModelLoader]:
    """A loader of every model named in the settings, each run by its model's worker thread.

    Raises:
        ModelLoadError: a manifest is wrong (at once; a model that cannot be loaded fails its worker's start).
    """
    store = ModelStore.discover(settings.model_store_dir)
    device = resolve_device(settings.device)
    return {name: partial(store.load, name, device) for name in settings.models}
