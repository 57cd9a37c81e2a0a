"""The contract between what inception-hub writes (`export`, `finetune`) and what reads it back
(`load`, the server, Ray, `evaluate`): `inception_hub.json` (what the model is, where its weights
came from, its preprocessing) and `labels.txt`. A SavedModel keeps them in `assets.extra/`, which
TensorFlow ignores; the other formats' folders hold them beside the model file. Reading needs no
TensorFlow."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from .catalog import CARDS, ModelSpec
from .errors import InceptionHubError, InputError
from .labels import imagenet_labels, labels_text, parse_labels

METADATA = "assets.extra/inception_hub.json"
LABELS = "assets.extra/labels.txt"
INPUT_CONTRACT = "float32 [batch, height, width, 3] RGB in [0, 1]"


@dataclass(frozen=True)
class Format:
    """One format `export` writes, and how it is read back: everything known about it."""

    name: str  # as `export --format` names it
    title: str
    model_file: str | None  # the model in the export folder; None for a SavedModel
    backends: tuple[str, ...]  # what runs it, the default first
    precisions: tuple[str, ...]  # what it can be exported in (bf16 is an OpenVINO inference mode)
    recorded_as: str  # its `format` in inception_hub.json

    @property
    def saved_model(self) -> bool:
        """A SavedModel keeps the metadata in assets.extra/; the others beside the model file."""
        return self.model_file is None


#: Every format `export` writes, tfhub.dev's own two first.
FORMAT_RECORDS: dict[str, Format] = {
    f.name: f
    for f in (
        Format("saved_model", "TF2 SavedModel", None, ("tf",), ("fp32",), "tf2_saved_model"),
        Format("tf1_hub", "TF1 Hub module", None, ("tf",), ("fp32",), "tf1_hub"),
        Format("onnx", "ONNX model", "model.onnx", ("onnxruntime", "openvino"), ("fp32", "int8"), "onnx"),
        Format("openvino", "OpenVINO IR", "model.xml", ("openvino",), ("fp32", "bf16", "int8"), "openvino"),
        Format("tflite", "TFLite model", "model.tflite", ("tflite",), ("fp32", "int8"), "tflite"),
        # Runs in TF.js (a browser or Node), not in Python; int8 and fp16 quantize its weights only.
        Format("tfjs", "TF.js graph model", "model.json", ("tfjs",), ("fp32", "int8", "fp16"), "tfjs"),
        Format(
            "triton",
            "Triton model folder (ONNX)",
            "1/model.onnx",
            ("onnxruntime", "openvino"),
            ("fp32", "int8"),
            "triton",
        ),
    )
}
FORMATS = tuple(FORMAT_RECORDS)
#: Every precision some format is exported in (each format's own are in its record).
EXPORT_PRECISIONS = tuple(dict.fromkeys(p for f in FORMAT_RECORDS.values() for p in f.precisions))
#: The model file of each format that is not a SavedModel (a view of FORMAT_RECORDS).
MODEL_FILES = {f.name: f.model_file for f in FORMAT_RECORDS.values() if f.model_file}


def published_format(spec: ModelSpec) -> Format:
    """What tfhub.dev published for the handle's version: TF1 Hub for 1 and 3, else SavedModel."""
    return FORMAT_RECORDS["tf1_hub" if spec.hub_format == "tf1_hub" else "saved_model"]


def format_of(meta: dict) -> Format | None:
    """The format an export's metadata records (None: one this version does not know)."""
    return next((f for f in FORMAT_RECORDS.values() if f.recorded_as == meta.get("format")), None)


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
        (folder / Path(LABELS).name).write_text(labels_text(labels), encoding="utf-8")
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
    try:
        text = labels_file.read_text(encoding="utf-8") if labels_file.is_file() else None
        meta["labels"] = parse_labels(text, meta.get("output_dim")) if text is not None else None
    except (OSError, UnicodeDecodeError, InputError) as e:
        raise InceptionHubError(f"{labels_file}: {e}; export the model again") from None
    return meta


def spec_of(meta: dict) -> ModelSpec:
    """The published module a SavedModel's metadata describes (its network, output and version)."""
    return ModelSpec(meta["architecture"], meta["kind"], meta["version"])
