"""Google's TF-Hub ImageNet Inception modules, rebuilt from the original TF-Slim checkpoints.

    import inception_hub
    clf = inception_hub.load("google/imagenet/inception_v1/classification/5")
    logits = clf(images)                       # float32 [N, H, W, 3] in [0, 1] -> [N, 1001]
    inception_hub.decode_predictions(logits, top=5)

TensorFlow is imported on first use of what needs it (`load`, `load_image`, ...), so the catalog
and the CLI's help stay quick. Exports: `inception_hub.export.export(handle, outdir)`;
fine-tuning: `inception_hub.finetune.train(data_dir, ...)`.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING

from ._version import __version__
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
    from .export import get_expected_image_size
    from .images import load_image
    from .module import Module, load


# Public names whose modules import TensorFlow: resolved on first access (PEP 562).
_LAZY = {
    "load": "module",
    "Module": "module",
    "load_image": "images",
    "get_expected_image_size": "export",
    "explain": "gradcam",  # imports Keras
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'inception_hub' has no attribute {name!r}")


def fetch(handle: str, source: str | os.PathLike | None = None, *, progress: bool = True) -> str:
    """Download (or import from `source`) the weights for a handle into the cache; returns the path."""
    from .weights import fetch as fetch_weights

    return str(fetch_weights(resolve(handle).arch, source, progress=progress))


__all__ = [
    "__version__",
    "CheckpointError",
    "CheckpointMismatchError",
    "ImageDecodeError",
    "InceptionHubError",
    "InputError",
    "Module",
    "ModelSpec",
    "Prediction",
    "UnknownHandleError",
    "WeightsUnavailableError",
    "all_specs",
    "decode_predictions",
    "explain",
    "fetch",
    "get_expected_image_size",
    "imagenet_labels",
    "load",
    "load_image",
    "resolve",
]
