"""Which backend runs a model, and the runner for catalog weights on it.

The default is the fastest exact backend installed, in the order the model card gives.
"""

from __future__ import annotations

import importlib.util
import os

from ..catalog import CARDS, ModelSpec
from ..errors import InputError
from ..weights import Weights
from .base import BACKENDS, PRECISIONS, Runner, require_precision

_PACKAGES = {"tf": "tensorflow", "onnxruntime": "onnxruntime", "openvino": "openvino"}
#: The pip extra that installs each backend (ONNX Runtime comes with the core).
_EXTRAS = {"tf": "tf", "onnxruntime": "engine", "openvino": "engine"}


def available_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(_PACKAGES[b]) is not None]


def choose_backend(backend: str | None, precision: str = "fp32", arch: str = "inception_v1") -> str:
    """Validate an explicit choice, or pick the fastest exact backend installed for `arch`."""
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
    require_precision(precision)
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
