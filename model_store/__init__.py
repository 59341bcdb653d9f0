"""Where models come from: manifests, loaders, labels, preprocessing and the default target layer.

No HTTP and no queue here: `ModelStore.load(name, device)` returns a warm, frozen `LoadedModel`.
"""

from model_store.errors import ModelLoadError
from model_store.labels import LabelSet
from model_store.manifest import ModelManifest, read_manifest
from model_store.preprocessing import Preprocessing
from model_store.store import LoadedModel, ModelStore

__all__ = [
    "LabelSet",
    "LoadedModel",
    "ModelLoadError",
    "ModelManifest",
    "ModelStore",
    "Preprocessing",
    "read_manifest",
]
