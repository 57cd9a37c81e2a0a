"""Export a handle as the module tfhub.dev served: TF2 SavedModel (versions 4, 5) or TF1 Hub
format (versions 1, 3). Exports are written to a temporary folder and moved into place whole."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..atomic import atomic_dir
from ..catalog import ModelSpec, resolve
from ..errors import InceptionHubError
from ..metadata import METADATA, read_metadata, write_metadata
from ..weights import Weights, load_weights
from . import proto

__all__ = ["METADATA", "export", "get_expected_image_size", "read_metadata", "write_metadata"]


def export(
    handle: str | ModelSpec,
    outdir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    overwrite: bool = False,
    progress: bool = True,
    weights: Weights | None = None,
) -> Path:
    """Write the module for `handle` to `outdir` and return its path. `weights` already read
    (for several modules of one network) stand for the checkpoint."""
    spec = handle if isinstance(handle, ModelSpec) else resolve(handle)
    with atomic_dir(outdir, overwrite=overwrite) as staging:
        if weights is None:
            weights = load_weights(spec.arch, checkpoint, progress=progress)
        if spec.hub_format == "tf1_hub":
            from .tf1_hub import export_tf1_hub

            export_tf1_hub(spec, weights, staging)
        else:
            from .tf2 import export_tf2

            export_tf2(spec, weights, staging)
        write_metadata(spec, staging, weights_digest=weights.digest)
    return Path(outdir)


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
