"""Which backends can serve a request, and the runner for catalog weights on one of them.

A request names a precision (fp32, bf16, int8, or "fast": the fastest of bf16 and int8 the CPU
runs natively) and perhaps a backend. `candidates` lists the (backend, precision) pairs that
could serve it, in the model card's order; `engine.choice` measures which is fastest here.
"""

from __future__ import annotations

import importlib.util
import os
from typing import TYPE_CHECKING

from ..catalog import CARDS, ModelSpec
from ..cpu import CpuInfo, cpu
from ..errors import InputError
from .base import BACKENDS, FAST, PRECISIONS, Runner, require_precision

if TYPE_CHECKING:
    from collections.abc import Mapping

    import numpy as np

_PACKAGES = {"tf": "tensorflow", "onnxruntime": "onnxruntime", "openvino": "openvino"}
#: The pip extra that installs each backend (ONNX Runtime comes with the core).
_EXTRAS = {"tf": "tf", "onnxruntime": "engine", "openvino": "engine"}


def available_backends() -> list[str]:
    return [b for b in BACKENDS if importlib.util.find_spec(_PACKAGES[b]) is not None]


def package(backend: str) -> str:
    """The Python package a backend is."""
    return _PACKAGES[backend]


def fast_precisions(info: CpuInfo | None = None) -> list[str]:
    """The precisions faster than fp32 that the CPU runs natively, in the order tried when nothing
    is measured: int8 where it has VNNI (or AMX), bf16 where it has AVX512_BF16 (or AMX-BF16)."""
    info = info or cpu()
    offered = [p for p, native in (("int8", info.vnni), ("bf16", info.bf16)) if native]
    if not offered:
        raise InputError(
            f"precision fast runs int8 or bf16 where the CPU computes them natively, and this CPU ({info.model}) "
            "has neither VNNI (or AMX) nor bf16 instructions: use fp32 (exact), or precision int8 "
            "(7-bit weights here, usually still faster than fp32)"
        )
    return offered


def candidates(
    arch: str, precision: str, backend: str | None = None, info: CpuInfo | None = None
) -> list[tuple[str, str]]:
    """The (backend, precision) pairs that can serve a request on this machine, the card's
    fastest first. An explicit backend is checked (installed, runs the precision)."""
    if precision not in (*PRECISIONS, FAST):
        raise InputError(f"unknown precision {precision!r}; use one of {', '.join((*PRECISIONS, FAST))}")
    if backend is not None and backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if precision == FAST:
        precisions = fast_precisions(info)
        if backend is not None:
            _installed(backend)
            runs = [p for p in precisions if _runs(backend, p)]
            if not runs:
                raise InputError(
                    f"the {backend} backend runs none of the fast precisions this CPU offers ({', '.join(precisions)})"
                )
            return [(backend, p) for p in runs]
        return [pair for p in precisions for pair in candidates(arch, p, None, info)]
    require_precision(precision, info)
    if backend is None:
        installed = available_backends()
        if precision == "bf16":
            backend = "openvino"  # the only one: checked below
        else:
            # TensorFlow is never chosen unasked: importing it costs seconds and a GB in every process
            # (the lean commands and the server must not load it); --backend tf still runs on it.
            lean = [b for b in CARDS[arch].engines if b != "tf"]
            return [(b, precision) for b in lean if b in installed and _runs(b, precision)]
    _installed(backend)
    if precision == "bf16" and backend != "openvino":
        raise InputError("bf16 runs on the openvino backend only")
    if precision == "int8" and backend == "tf":
        raise InputError("int8 runs on the onnxruntime and openvino backends")
    return [(backend, precision)]


def _runs(backend: str, precision: str) -> bool:
    return (
        precision == "fp32" or (precision == "int8" and backend != "tf") or (backend, precision) == ("openvino", "bf16")
    )


def _installed(backend: str) -> None:
    if importlib.util.find_spec(_PACKAGES[backend]) is None:
        raise InputError(f"backend {backend} is not installed: pip install 'inception-hub[{_EXTRAS[backend]}]'")


def runner(
    spec: ModelSpec,
    weights: Mapping[str, np.ndarray],
    backend: str,
    precision: str = "fp32",
    threads: int | None = None,
    calibration: str | os.PathLike | None = None,
) -> Runner:
    """The network for `spec` with `weights` (a `Weights`, or anything with its `digest` that
    reads them on first use) on `backend`. `threads` caps an engine's compute threads, for
    several models sharing a machine (default: every core). `calibration`: the photos an int8
    model is calibrated on (default: the bundled set)."""
    if backend == "tf":
        if precision != "fp32":
            raise InputError(f"the tf backend runs fp32 only; {precision} needs backend='openvino'")
        from ..quiet import import_tensorflow

        import_tensorflow()  # without its start-up chatter, wherever the tf backend is chosen
        from .tf import weights_runner

        return weights_runner(spec, weights, threads)
    from .onnx import RUNNERS, default_threads, int8_path, onnx_path

    if backend not in RUNNERS:
        raise InputError(f"no engine runner for backend {backend!r}")
    path = int8_path(spec, weights, calibration) if precision == "int8" else onnx_path(spec, weights)
    settings = {"spinning": CARDS[spec.arch].onnxruntime_spinning} if backend == "onnxruntime" else {}
    return RUNNERS[backend](path, precision, threads or default_threads(), **settings)
