"""Class labels and the lookup of a class by index or by label (case-insensitive)."""

from dataclasses import dataclass, field
from pathlib import Path

from model_store.errors import ModelLoadError


class UnknownLabel(LookupError):
    """No class has this label."""


class AmbiguousLabel(LookupError):
    """Several classes answer to this label; `indices` lists them."""

    def __init__(self, label: str, indices: list[int]) -> None:
        super().__init__(label)
        self.indices = indices


@dataclass(frozen=True)
class LabelSet:
    """Labels in class-index order.

    A label is found by its full text ("tabby, tabby cat") or by any one of its comma-separated synonyms
    ("tabby"), ignoring case.
    """

    names: tuple[str, ...]
    _index: dict[str, tuple[int, ...]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        index: dict[str, list[int]] = {}
        for i, name in enumerate(self.names):
            keys = {name.strip().lower()} | {part.strip().lower() for part in name.split(",")}
            for key in keys - {""}:
                index.setdefault(key, []).append(i)
        object.__setattr__(self, "_index", {k: tuple(v) for k, v in index.items()})

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> str:
        return self.names[index]

    def find(self, label: str) -> int:
        """The class index of `label`.

        Raises:
            UnknownLabel: no class has it.
            AmbiguousLabel: several classes have it.
        """
        matches = self._index.get(label.strip().lower(), ())
        if not matches:
            raise UnknownLabel(label)
        if len(matches) > 1:
            raise AmbiguousLabel(label, list(matches))
        return matches[0]


def imagenet_labels() -> LabelSet:
    """The 1000 ImageNet-1k class descriptions, from timm's bundled class info."""
    from timm.data import ImageNetInfo

    info = ImageNetInfo()
    return LabelSet(tuple(info.index_to_description(i) for i in range(info.num_classes())))


def load_labels(spec: str | None, base_dir: Path, num_classes: int) -> LabelSet:
    """Labels named by a manifest: "imagenet", a text file with one label a line, or None ("class_<i>").

    Raises:
        ModelLoadError: the file is missing or its line count differs from the model's class count.
    """
    if spec is None:
        return LabelSet(tuple(f"class_{i}" for i in range(num_classes)))
    if spec == "imagenet":
        labels = imagenet_labels()
    else:
        path = (base_dir / spec).resolve()
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ModelLoadError(f"cannot read labels file {path}: {exc}") from exc
        labels = LabelSet(tuple(line.strip() for line in lines if line.strip()))
    if len(labels) != num_classes:
        raise ModelLoadError(f"labels '{spec}' has {len(labels)} entries but the model has {num_classes} classes")
    return labels
