"""The contract between what inception-hub writes (`export`, `finetune`) and what reads it back
(`load`, the server, Ray, `evaluate`): `inception_hub.json` (what the model is, where its weights
came from, its preprocessing) and `labels.txt`. A SavedModel keeps them in `assets.extra/`, which
TensorFlow ignores; the other formats' folders hold them beside the model file. Reading needs no
TensorFlow."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .catalog import CARDS, ModelSpec
from .errors import InceptionHubError
from .labels import imagenet_labels

METADATA = "assets.extra/inception_hub.json"
LABELS = "assets.extra/labels.txt"
INPUT_CONTRACT = "float32 [batch, height, width, 3] RGB in [0, 1]"
#: Every format `export` writes; `saved_model` and `tf1_hub` are tfhub.dev's own.
FORMATS = ("saved_model", "tf1_hub", "onnx", "openvino", "tflite")
#: The model file of each format that is not a SavedModel, in its export folder.
MODEL_FILES = {"onnx": "model.onnx", "openvino": "model.xml", "tflite": "model.tflite"}


def is_saved_model(path: str | os.PathLike) -> bool:
    """Whether `path` is a SavedModel folder (rather than a handle or a checkpoint)."""
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))


def is_export(path: str | os.PathLike) -> bool:
    """Whether `path` is a folder `export` or `finetune` wrote, in any format."""
    return is_saved_model(path) or _metadata_file(Path(path)).is_file()


def _metadata_file(p: Path) -> Path:
    flat = p / Path(METADATA).name
    return flat if flat.is_file() else p / METADATA


def write_metadata(
    spec: ModelSpec,
    moddir: Path,
    labels: list[str] | tuple[str, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    *,
    flat: bool = False,
    **extra_fields,
) -> dict:
    """Write what the module is, and its class names (the ImageNet ones for a classification
    spec), into `assets.extra/` (a SavedModel) or, `flat`, beside the model file. Returns the
    metadata written."""
    folder = moddir if flat else moddir / "assets.extra"
    folder.mkdir(parents=True, exist_ok=True)
    meta, labels = describe(spec, labels, image_size, **extra_fields)
    (folder / Path(METADATA).name).write_text(json.dumps(meta, indent=1) + "\n")
    if labels:
        (folder / Path(LABELS).name).write_text("\n".join(labels) + "\n")
    return meta


def describe(
    spec: ModelSpec,
    labels: list[str] | tuple[str, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    **extra_fields,
) -> tuple[dict, list[str] | tuple[str, ...] | None]:
    """The metadata of a module of `spec` (and its labels, the ImageNet ones by default)."""
    if labels is None and spec.kind == "classification":
        labels = imagenet_labels()
    size = list(image_size or spec.image_size)
    meta = {
        "handle": spec.handle,
        "architecture": spec.arch,
        "kind": spec.kind,
        "version": spec.version,
        "format": spec.hub_format,
        "default_image_size": size,
        "variable_input_size": spec.variable_size,
        "output_dim": len(labels) if labels else spec.output_dim,
        "input": INPUT_CONTRACT,
        "preprocessing": preprocessing(spec.arch, size),
        **extra_fields,
    }
    return meta, labels


def preprocessing(arch: str, size: list[int]) -> str:
    """How photos become the input, as `classify` and TF-Slim's evaluation do it."""
    return (
        "decode (JPEG: libjpeg-turbo's fast integer IDCT, as tf.io.decode_jpeg), pixels / 255, "
        f"central crop {CARDS[arch].central_fraction}, bilinear resize to {size[0]}x{size[1]} "
        "(TF1 ResizeBilinear: align_corners=False, half_pixel_centers=False)"
    )


def read_metadata(path: str | os.PathLike) -> dict:
    """What `write_metadata` wrote, with `labels` (a list, or None) read from labels.txt."""
    p = Path(path)
    meta_file = _metadata_file(p)
    if not meta_file.is_file():
        raise InceptionHubError(
            f"{p} is a SavedModel without inception-hub metadata ({METADATA}); load it with tf.saved_model.load"
        )
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, ValueError) as e:
        raise InceptionHubError(f"{meta_file} is unreadable ({e}); export the model again") from None
    labels_file = meta_file.parent / Path(LABELS).name
    meta["labels"] = labels_file.read_text().splitlines() if labels_file.is_file() else None
    return meta


def spec_of(meta: dict) -> ModelSpec:
    """The published module a SavedModel's metadata describes (its network, output and version)."""
    return ModelSpec(meta["architecture"], meta["kind"], meta["version"])
