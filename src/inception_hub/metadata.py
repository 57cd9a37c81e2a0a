"""The contract between what inception-hub writes as a SavedModel (`export`, `finetune`) and
what reads one back (`load`, the server, Ray): `assets.extra/inception_hub.json` and
`assets.extra/labels.txt`, which TensorFlow itself ignores. Reading needs no TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .catalog import ModelSpec
from .errors import InceptionHubError
from .labels import imagenet_labels

METADATA = "assets.extra/inception_hub.json"
LABELS = "assets.extra/labels.txt"
INPUT_CONTRACT = "float32 [batch, height, width, 3] RGB in [0, 1]"


def is_saved_model(path: str | os.PathLike) -> bool:
    """Whether `path` is a SavedModel folder (rather than a handle or a checkpoint)."""
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))


def write_metadata(
    spec: ModelSpec,
    moddir: Path,
    labels: list[str] | tuple[str, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    **extra_fields,
) -> None:
    """What the module is, and its class names (the ImageNet ones for a classification spec)."""
    extra = moddir / "assets.extra"
    extra.mkdir(parents=True, exist_ok=True)
    if labels is None and spec.kind == "classification":
        labels = imagenet_labels()
    meta = {
        "handle": spec.handle,
        "architecture": spec.arch,
        "kind": spec.kind,
        "version": spec.version,
        "format": spec.hub_format,
        "default_image_size": list(image_size or spec.image_size),
        "variable_input_size": spec.variable_size,
        "output_dim": len(labels) if labels else spec.output_dim,
        "input": INPUT_CONTRACT,
        **extra_fields,
    }
    (moddir / METADATA).write_text(json.dumps(meta, indent=1) + "\n")
    if labels:
        (moddir / LABELS).write_text("\n".join(labels) + "\n")


def read_metadata(path: str | os.PathLike) -> dict:
    """What `write_metadata` wrote, with `labels` (a list, or None) read from labels.txt."""
    p = Path(path)
    meta_file = p / METADATA
    if not meta_file.is_file():
        raise InceptionHubError(
            f"{p} is a SavedModel without inception-hub metadata ({METADATA}); load it with tf.saved_model.load"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise InceptionHubError(f"{meta_file} is unreadable ({e}); export the model again") from None
    labels_file = p / LABELS
    meta["labels"] = labels_file.read_text().splitlines() if labels_file.is_file() else None
    return meta


def spec_of(meta: dict) -> ModelSpec:
    """The published module a SavedModel's metadata describes (its network, output and version)."""
    return ModelSpec(meta["architecture"], meta["kind"], meta["version"])
