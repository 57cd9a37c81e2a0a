"""Every backend that runs the network, behind one runner interface: numpy `[N, H, W, 3]` in
[0, 1] in, numpy outputs out.

- `tf`: the network as a `tf.Module` (`engine/tf.py`), or a SavedModel inception-hub wrote.
- `onnxruntime`, `openvino`: the network converted to ONNX from the same definition
  (`engine/onnx.py`), fp32 exact; OpenVINO also runs bf16, faster and not exact.

The default is the fastest exact backend installed, in the order the model card gives.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..catalog import CARDS, ModelSpec
from ..errors import InputError
from ..weights import Weights

BACKENDS = ("tf", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
_PACKAGES = {"tf": "tensorflow", "onnxruntime": "onnxruntime", "openvino": "openvino"}
#: The pip extra that installs each backend (ONNX Runtime comes with the core).
_EXTRAS = {"tf": "tf", "onnxruntime": "engine", "openvino": "engine"}

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


def available_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(_PACKAGES[b]) is not None]


def choose_backend(backend: str | None, precision: str = "fp32", arch: str = "inception_v1") -> str:
    """Validate an explicit choice, or pick the fastest exact backend installed for `arch`."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    installed = available_backends()
    if backend is None:
        if precision == "bf16":
            backend = "openvino"
        else:
            usable = [b for b in CARDS[arch].engines if b in installed and not (precision == "int8" and b == "tf")]
            return usable[0]
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend not in installed:
        raise InputError(f"backend {backend} is not installed: pip install 'inception-hub[{_EXTRAS[backend]}]'")
    if precision == "bf16" and backend != "openvino":
        raise InputError("bf16 runs on the openvino backend only")
    if precision == "int8" and backend == "tf":
        raise InputError("int8 runs on the onnxruntime and openvino backends")
    return backend


def runner(
    spec: ModelSpec,
    weights: Weights,
    backend: str,
    precision: str = "fp32",
    threads: int | None = None,
    calibration: str | os.PathLike | None = None,
) -> Runner:
    """The network for `spec` with `weights` on `backend`. `threads` caps an engine's compute
    threads, for several models sharing a machine (default: every core). `calibration`: the
    photos an int8 model is calibrated on (default: the bundled set)."""
    if backend == "tf":
        if precision != "fp32":
            raise InputError(f"the tf backend runs fp32 only; {precision} needs backend='openvino'")
        from .tf import weights_runner

        return weights_runner(spec, weights, threads)
    from .onnx import RUNNERS, default_threads, int8_path, onnx_path

    if backend not in RUNNERS:
        raise InputError(f"no engine runner for backend {backend!r}")
    path = int8_path(spec, weights, calibration) if precision == "int8" else onnx_path(spec, weights)
    settings = {"spinning": CARDS[spec.arch].onnxruntime_spinning} if backend == "onnxruntime" else {}
    return RUNNERS[backend](path, precision, threads or default_threads(), **settings)
