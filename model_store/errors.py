"""The one error of the model store: a model that cannot be loaded, with a message that says why."""


class ModelLoadError(Exception):
    """A manifest, weights file, label file or layer name is wrong; raised at start-up, never per request."""
