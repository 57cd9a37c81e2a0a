"""What every backend gives: a `Runner` around batch functions (`Infer`), numpy in, numpy out;
and which precisions the CPU at hand runs natively."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..cpu import CpuInfo, cpu
from ..errors import InputError

BACKENDS = ("tf", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
#: A precision to ask for: the fastest of bf16 and int8 that the CPU runs natively, by measurement.
FAST = "fast"

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


def require_precision(precision: str, info: CpuInfo | None = None) -> None:
    """Refuse a precision the CPU would only emulate: bf16 needs AVX512_BF16 or AMX-BF16 (without
    them OpenVINO runs the model in fp32 or emulates bf16, slower than fp32 and no more exact)."""
    info = info or cpu()
    if precision == "bf16" and not info.bf16:
        raise InputError(
            f"this CPU ({info.model}) has no bf16 instructions (AVX512_BF16 or AMX-BF16), so bf16 would "
            "not be faster: use fp32 (exact), or int8 for speed"
        )
