"""Export a handle as the module tfhub.dev served: TF2 SavedModel (versions 4, 5) or TF1 Hub
format (versions 1, 3). Exports are written to a temporary folder and moved into place whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_dir
from ..catalog import ModelSpec, resolve
from ..errors import InceptionHubError
from ..labels import imagenet_labels
from ..weights import load_weights
from . import proto

METADATA = "assets.extra/inception_hub.json"


def export(
    handle: str | ModelSpec,
    outdir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Write the module for `handle` to `outdir` and return its path."""
    spec = handle if isinstance(handle, ModelSpec) else resolve(handle)
    with atomic_dir(outdir, overwrite=overwrite) as staging:
        weights = load_weights(spec.arch, checkpoint, progress=progress)
        if spec.hub_format == "tf1_hub":
            from .tf1_hub import export_tf1_hub

            export_tf1_hub(spec, weights, staging)
        else:
            from .tf2 import export_tf2

            export_tf2(spec, weights, staging)
        write_metadata(spec, staging)
    return Path(outdir)


def write_metadata(
    spec: ModelSpec,
    moddir: Path,
    labels: list[str] | tuple[str, ...] | None = None,
    image_size: tuple[int, int] | None = None,
    **extra_fields,
) -> None:
    """`assets.extra/` (ignored by TensorFlow): what the module is, and its class names."""
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
        "input": "float32 [batch, height, width, 3] RGB in [0, 1]",
        **extra_fields,
    }
    (extra / "inception_hub.json").write_text(json.dumps(meta, indent=1) + "\n")
    if labels:
        (extra / "labels.txt").write_text("\n".join(labels) + "\n")


def read_metadata(path: str | os.PathLike) -> dict:
    """What `write_metadata` wrote, with `labels` (a list, or None) read from labels.txt."""
    p = Path(path)
    meta_file = p / METADATA
    if not meta_file.is_file():
        raise InceptionHubError(
            f"{p} is a SavedModel without inception-hub metadata ({METADATA}); load it with tf.saved_model.load"
        )
    meta = json.loads(meta_file.read_text())
    labels_file = p / "assets.extra" / "labels.txt"
    meta["labels"] = labels_file.read_text().splitlines() if labels_file.is_file() else None
    return meta


def get_expected_image_size(path_or_handle: str | os.PathLike) -> tuple[int, int]:
    """(height, width) a module was trained for: from a handle, a TF1 module's
    `image_module_info` attachment, or an exported SavedModel's metadata."""
    p = Path(path_or_handle)
    if not p.exists():
        return resolve(str(path_or_handle)).image_size
    if (p / "tfhub_module.pb").is_file():
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel.FromString((p / "saved_model.pb").read_bytes())
        for mg in sm.meta_graphs:
            for item in mg.collection_def["hub_module_attachments"].bytes_list.value:
                key, size = proto.read_image_size(item)
                if size:
                    return size
    meta = p / METADATA
    if meta.is_file():
        return tuple(json.loads(meta.read_text())["default_image_size"])
    raise InceptionHubError(f"{p} has no image size information (not a module exported by inception-hub)")
