"""What every backend gives: a `Runner` around batch functions (`Infer`), numpy in, numpy out."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

BACKENDS = ("tf", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")

Infer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Runner:
    """A loaded model: `run` computes its output; `features()` and `maps()`, where given,
    build the feature-vector twin on the same loaded weights (a classifier's pooled features)
    and the final end point's map those features pool."""

    run: Infer
    features: Callable[[], Infer] | None
    backend: str
    net: Any = None  # the tf.Module, on the tf backend
    maps: Callable[[], Infer] | None = None  # a classifier's final end point [N, h, w, C]
