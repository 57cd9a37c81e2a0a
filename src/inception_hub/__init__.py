"""Google's TF-Hub ImageNet Inception modules, rebuilt from the original TF-Slim checkpoints.

    import inception_hub
    clf = inception_hub.load("google/imagenet/inception_v1/classification/5")
    logits = clf(images)                       # float32 [N, H, W, 3] in [0, 1] -> [N, 1001]
    inception_hub.decode_predictions(logits, top=5)

TensorFlow is imported on first use of `load`, so the catalog and CLI help stay quick.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from .catalog import ModelSpec, all_specs, resolve
from .errors import (
    CheckpointError,
    CheckpointMismatchError,
    ImageDecodeError,
    InceptionHubError,
    InputError,
    UnknownHandleError,
    WeightsUnavailableError,
)
from .labels import Prediction, decode_predictions, imagenet_labels

if TYPE_CHECKING:
    from .module import Module

__version__ = "0.1.0"


def load(
    handle: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    kind: str | None = None,
    progress: bool = True,
) -> Module:
    """Load a module by handle, or a folder written by `export` or `finetune`; see
    `inception_hub.module.load`."""
    from .module import load as _load

    return _load(handle, checkpoint, kind=kind, progress=progress)


def load_image(path: str | os.PathLike, size: tuple[int, int], central_fraction: float | None = 0.875):
    """Decode an image file and apply TF-Slim's eval preprocessing: float32 [H, W, 3] in [0, 1]."""
    from .images import load_image as _load_image

    return _load_image(path, size, central_fraction=central_fraction)


def export(
    handle: str, outdir: str | os.PathLike, checkpoint: str | os.PathLike | None = None, *, overwrite: bool = False
) -> str:
    """Write a handle as the module tfhub.dev served; see `inception_hub.export.export`."""
    from .export import export as _export

    return str(_export(handle, outdir, checkpoint, overwrite=overwrite))


def get_expected_image_size(path_or_handle: str | os.PathLike) -> tuple[int, int]:
    """(height, width) a module (handle or exported folder) was trained for."""
    from .export import get_expected_image_size as _get

    return _get(path_or_handle)


def fetch(handle: str, source: str | os.PathLike | None = None, *, progress: bool = True) -> str:
    """Download (or import from `source`) the weights for a handle into the cache; returns the path."""
    from .weights import fetch as _fetch

    return str(_fetch(resolve(handle).arch, source, progress=progress))


__all__ = [
    "CheckpointError",
    "CheckpointMismatchError",
    "ImageDecodeError",
    "InceptionHubError",
    "InputError",
    "ModelSpec",
    "Prediction",
    "UnknownHandleError",
    "WeightsUnavailableError",
    "all_specs",
    "decode_predictions",
    "export",
    "fetch",
    "get_expected_image_size",
    "imagenet_labels",
    "load",
    "load_image",
    "resolve",
]
