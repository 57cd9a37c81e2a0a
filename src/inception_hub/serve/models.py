"""What the server serves: models by name, their signatures, and how a batch is computed.

Each model has the signatures of the published modules: `serving_default` (output `logits` for
classifiers, `feature_vector` otherwise), `image_classification` (classifiers; output `default`)
and `image_feature_vector` (output `default`). Every signature takes `images`: float32
`[N, H, W, 3]` in [0, 1], or encoded JPEG/PNG bytes that the server decodes and preprocesses.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..module import Module, is_saved_model, load, tf_runner

LOGITS, FEATURES = "logits", "feature_vector"


@dataclass(frozen=True)
class Signature:
    name: str
    output: str  # which computation: LOGITS or FEATURES
    output_key: str  # the name of the output tensor in the response


@dataclass
class ServedModel:
    """One model: its name, signatures and one batch function per computation."""

    name: str
    module: Module
    compute: dict[str, Callable[[np.ndarray], np.ndarray]]
    version: int = 1
    signatures: dict[str, Signature] = field(default_factory=dict)
    compute_dims: dict[str, int] = field(default_factory=dict)

    @property
    def image_size(self) -> tuple[int, int]:
        return self.module.expected_image_size

    def output_dim(self, output: str) -> int:
        return self.compute_dims[output]


def build(name_or_path: str, checkpoint: str | None = None, backend: str | None = None) -> ServedModel:
    """A served model from a handle or short name (`inception_v1`), or an exported folder.

    Named after the folder, or the architecture (`inception_v1`, `inception_v1_feature_vector`)."""
    if is_saved_model(name_or_path):
        module = load(name_or_path)
        features = load(name_or_path, kind="feature_vector")
        name = Path(name_or_path).resolve().name
    else:
        module = load(name_or_path, checkpoint, backend=backend)
        if module.backend == "tf" and module.labels:
            net = module.net  # one set of weights for both outputs
            features = Module(
                dataclasses.replace(module.spec, kind="feature_vector"),
                tf_runner(lambda x: net.run(x)[1]["global_pool"]),
                labels=None,
            )
        else:
            features = load(name_or_path, checkpoint, kind="feature_vector", backend=backend)
        name = module.spec.arch + ("" if module.labels else "_feature_vector")
    compute = {FEATURES: features}
    if module.labels:
        compute[LOGITS] = module
    return _with_signatures(ServedModel(name, module, {k: _whole(m) for k, m in compute.items()}))


def _whole(module: Module) -> Callable[[np.ndarray], np.ndarray]:
    """Run a batch as one forward pass (the batcher already sized it)."""
    return lambda x: module(x, batch_size=max(len(x), 1))


def _with_signatures(model: ServedModel) -> ServedModel:
    sigs = {}
    if LOGITS in model.compute:
        sigs["serving_default"] = Signature("serving_default", LOGITS, "logits")
        sigs["image_classification"] = Signature("image_classification", LOGITS, "default")
    else:
        sigs["serving_default"] = Signature("serving_default", FEATURES, "feature_vector")
    sigs["image_feature_vector"] = Signature("image_feature_vector", FEATURES, "default")
    model.signatures = sigs
    probe = np.zeros((1, *model.image_size, 3), np.float32)  # also warms up (traces) each function
    model.compute_dims = {k: int(fn(probe).shape[-1]) for k, fn in model.compute.items()}
    return model
