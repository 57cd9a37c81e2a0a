"""What the server serves: models by name, their signatures, and how a batch is computed.

Each model has the signatures of the published modules (`catalog.signatures`): `serving_default`
(output `logits` for classifiers, `feature_vector` otherwise), `image_classification`
(classifiers; output `default`) and `image_feature_vector` (output `default`). Every signature
takes `images`: float32 `[N, H, W, 3]` in [0, 1], or encoded JPEG/PNG bytes that the server
decodes and preprocesses.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..accuracy import describe_weights, weights_origin
from ..catalog import Signature, signatures
from ..errors import InputError
from ..module import Module, open_source
from ..nets.layers import FEATURE_MAP, FEATURES, LOGITS
from ..source import resolve_source

__all__ = ["FEATURES", "FEATURE_MAP", "LOGITS", "ServedModel", "Signature", "build"]


@dataclass
class ServedModel:
    """One model: its name, signatures and one batch function per computation (what the
    signatures output, and a catalog classifier's `feature_map` for class activation maps)."""

    name: str
    module: Module
    compute: dict[str, Callable[[np.ndarray], np.ndarray]]
    version: int = 1
    signatures: dict[str, Signature] = field(default_factory=dict)
    compute_dims: dict[str, int] = field(default_factory=dict)
    #: Where the weights came from, in words (the official release, imported, a checkpoint...).
    weights: str = ""

    @property
    def image_size(self) -> tuple[int, int]:
        return self.module.expected_image_size

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """The only size a version-1 module takes; None when any size goes."""
        return None if self.module.spec.variable_size else self.image_size

    def output_dim(self, output: str) -> int:
        return self.compute_dims[output]


def build(
    name_or_path: str,
    checkpoint: str | None = None,
    backend: str | None = None,
    *,
    name: str | None = None,
    version: int = 1,
) -> ServedModel:
    """A served model from a handle or short name (`inception_v1`), or an exported folder.

    Named `name`, else after the folder, or the architecture (`inception_v1`,
    `inception_v1_feature_vector`); `version` is the one it is served as (a version folder's)."""
    source = resolve_source(name_or_path, checkpoint, backend=backend)
    module = open_source(source)
    if name is None and source.exported is not None:
        name = Path(source.exported).parent.name if source.model_file else Path(source.exported).name
    elif name is None:
        name = module.spec.arch + ("" if module.labels else "_feature_vector")
    compute = {FEATURES: module.feature_vector()}  # one set of weights for both outputs where possible
    if module.labels:
        compute[LOGITS] = module
    model = ServedModel(name, module, {k: _whole(m) for k, m in compute.items()}, version=version)
    with contextlib.suppress(InputError):  # class activation maps, for the model page, where it has them
        model.compute[FEATURE_MAP] = module.feature_maps()
    model.signatures = signatures("classification" if module.labels else "feature_vector")
    model.weights = describe_weights(weights_origin(name_or_path, checkpoint))
    probe = np.zeros((1, *model.image_size, 3), np.float32)  # also warms up (traces) each function
    model.compute_dims = {k: int(fn(probe).shape[-1]) for k, fn in model.compute.items()}
    return model


def _whole(module: Module) -> Callable[[np.ndarray], np.ndarray]:
    """Run a batch as one forward pass (the batcher already sized it)."""
    return lambda x: module(x, batch_size=max(len(x), 1))
