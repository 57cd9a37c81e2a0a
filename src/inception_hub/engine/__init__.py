"""Fast CPU inference: the network converted to ONNX from the one definition, run by ONNX
Runtime or OpenVINO.

The converted model is cached beside the weights (`$INCEPTION_HUB_CACHE/engines/`), keyed by the
weights it came from, and written atomically. fp32 on either engine matches the TF-Slim reference
within 1e-4. OpenVINO's bf16 mode is opt-in (`precision="bf16"`): faster, not exact.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import threading
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..catalog import ModelSpec
from ..errors import InputError
from ..weights import cache_dir, digest

BACKENDS = ("tf", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16")
#: Fastest exact (fp32) engine first, per network, as benchmarks/throughput.py measured them on the
#: project's 2-core machine (end-to-end and batch-32 model-only agree on the order).
PREFERENCE = {
    "inception_v1": ("onnxruntime", "openvino", "tf"),
    "inception_resnet_v2": ("openvino", "onnxruntime", "tf"),
}
_PACKAGES = {"tf": "tensorflow", "onnxruntime": "onnxruntime", "openvino": "openvino"}


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
            return next(b for b in PREFERENCE[arch] if b in installed)
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
    if backend not in installed:
        raise InputError(f"backend {backend} is not installed: pip install 'inception-hub[engine]'")
    if precision == "bf16" and backend != "openvino":
        raise InputError("bf16 runs on the openvino backend only")
    return backend


def onnx_path(spec: ModelSpec, weights: Mapping[str, np.ndarray], source: str | None) -> Path:
    """The converted model for these weights, converting once. The cache key is the weights
    file `source` (path, size, mtime) when given, else a digest of the weights themselves."""
    src = Path(source) if source else None
    if src is not None and src.exists():
        stat = src.stat()
        ident = f"{src.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    else:
        ident = digest(weights)
    key = hashlib.sha256(f"{ident}|{spec.kind}|v1".encode()).hexdigest()[:16]
    path = cache_dir() / "engines" / spec.arch / f"{spec.kind}-{key}.onnx"
    if not path.is_file():
        from ..nets.onnx_builder import build_onnx

        with atomic_file(path) as f:
            f.write(build_onnx(spec.arch, spec.num_classes, weights))
    return path


def runner(
    spec: ModelSpec,
    weights: Mapping[str, np.ndarray],
    backend: str,
    precision: str = "fp32",
    source: str | None = None,
    threads: int | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """numpy [N, H, W, 3] in [0, 1] -> numpy outputs, on the chosen engine. `threads`: the
    engine's compute threads (default: every core this process may use)."""
    path = onnx_path(spec, weights, source)
    threads = threads or _threads()
    if backend == "onnxruntime":
        return _onnxruntime(path, threads)
    if backend == "openvino":
        return _openvino(path, precision, threads)
    raise InputError(f"no engine runner for backend {backend!r}")


def _threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _onnxruntime(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_outputs()[0].name
    return lambda x: session.run([name], {"images": np.ascontiguousarray(x, np.float32)})[0]


def _openvino(path: Path, precision: str, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    import openvino as ov

    core = ov.Core()
    # OpenVINO would otherwise run fp32 models in bf16 on CPUs that have it: exact needs f32.
    config = {
        "INFERENCE_PRECISION_HINT": "f32" if precision == "fp32" else "bf16",
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
        "CACHE_DIR": str(path.parent / "openvino_cache"),
    }
    compiled = core.compile_model(str(path), "CPU", config)
    local = threading.local()  # an infer request is not shareable between threads

    def run(x: np.ndarray) -> np.ndarray:
        request = getattr(local, "request", None)
        if request is None:
            request = local.request = compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(x, np.float32)})
        return request.get_output_tensor(0).data.copy()

    return run
