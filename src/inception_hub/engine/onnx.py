"""The inference engines: the network converted to ONNX from the one definition, run by ONNX
Runtime or OpenVINO.

The converted model is cached under `$INCEPTION_HUB_CACHE/engines/`, keyed by the digest of the
weights it came from and written atomically; beside it, ONNX Runtime's optimised graph of it, per
CPU class and ONNX Runtime version, so that a session starts without optimising again. fp32 on
either engine matches the TF-Slim reference within 1e-4. OpenVINO's bf16 mode is opt-in
(`precision="bf16"`): faster, not exact. So is int8 (`precision="int8"`, see `quantize`), on
either engine.
"""

from __future__ import annotations

import atexit
import os
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..atomic import atomic_file, umask
from ..catalog import ModelSpec
from ..cpu import cpu
from ..nets.layers import FEATURE_MAP, FEATURES, LOGITS
from ..weights import Weights, folder, record_checkpoint
from ..weights.cache import OPENVINO_COMPILED, ORT_GRAPHS
from .base import Infer, Runner, require_precision
from .quantize import Recipe, recipe_for
from .records import remember

#: Bump when the generated graph changes, so cached models are rebuilt.
GRAPH_VERSION = 3


def onnx_path(spec: ModelSpec, weights: Weights) -> Path:
    """The converted model for these weights, converting once. Where the cache cannot be
    written (read-only, full), the model goes to a temporary file that lives with the process."""
    path = folder("engines") / spec.arch / f"{spec.kind}-{weights.digest[:16]}-g{GRAPH_VERSION}.onnx"
    if path.is_file():
        remember(spec.arch, weights.digest, weights.checkpoint)
        return path
    from ..nets.onnx_builder import build_onnx

    return _store(path, build_onnx(spec.arch, spec.num_classes, weights), weights)


def int8_path(
    spec: ModelSpec, weights: Weights, calibration: str | os.PathLike | None = None, recipe: Recipe | None = None
) -> Path:
    """The int8 model for these weights, calibrated on the photos in `calibration` (default: the
    bundled set) with `recipe` (default: the one for this CPU), quantized once and cached beside
    the fp32 model."""
    from .quantize import Calibration, calibration_files, calibration_key, quantize

    recipe = recipe or recipe_for(cpu())
    fp32 = onnx_path(spec, weights)
    files = calibration_files(calibration)
    path = fp32.with_name(f"{fp32.stem}-int8-{calibration_key(files)}-{recipe.key}.onnx")
    if path.is_file():
        return path
    return _store(path, quantize(fp32, Calibration(files, spec.image_size), recipe), weights)


def _store(path: Path, model: bytes, weights: Weights) -> Path:
    try:
        with atomic_file(path) as f:
            f.write(model)
        if weights.checkpoint is not None:
            record_checkpoint(weights.digest, weights.checkpoint)
            remember(path.parent.name, weights.digest, weights.checkpoint)  # <arch>/<model>
        return path
    except OSError as e:
        note = f"cannot cache the engine model in {path.parent} ({e.strerror or e}); using a temporary copy"
        warnings.warn(note, stacklevel=4)
        tmp = tempfile.NamedTemporaryFile(prefix="inception_hub_", suffix=".onnx", delete=False)  # noqa: SIM115
        with tmp:
            tmp.write(model)
        atexit.register(Path(tmp.name).unlink, missing_ok=True)
        return Path(tmp.name)


def default_threads() -> int:
    """Every core this process may use."""
    return cpu().cores


def optimized_path(path: Path, version: str) -> Path:
    """Where ONNX Runtime's optimised graph of `path` is cached (beside it, as OpenVINO's compiled
    models are): its layout-dependent rewrites are for one CPU class and ONNX Runtime version."""
    return path.parent / ORT_GRAPHS / f"{path.stem}-ort{version}-{cpu().isa}.onnx"


def onnxruntime_runner(path: Path, precision: str, threads: int, spinning: bool = True) -> Runner:
    del precision  # the model is fp32 or int8 (QDQ) already; choose_backend refuses bf16
    import onnxruntime as ort

    def options(level) -> ort.SessionOptions:
        o = ort.SessionOptions()
        o.intra_op_num_threads = threads
        o.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        o.graph_optimization_level = level
        return o

    session = _cached_session(ort, path, options)

    def output(name: str) -> Infer:
        return lambda x: session.run([name], {"images": np.ascontiguousarray(x, np.float32)})[0]

    return _runner([o.name for o in session.get_outputs()], output, "onnxruntime")


def _cached_session(ort, path: Path, options):
    """A session on the cached optimised graph, which loads without optimising; else one that
    optimises `path` and, where the cache is writable, saves the graph for the next start."""
    providers = ["CPUExecutionProvider"]
    optimized = optimized_path(path, ort.__version__)
    if optimized.is_file():
        try:
            return ort.InferenceSession(str(optimized), options(ort.GraphOptimizationLevel.ORT_DISABLE_ALL), providers)
        except Exception:  # noqa: BLE001 - unreadable: optimise the model again and replace it
            optimized.unlink(missing_ok=True)
    o = options(ort.GraphOptimizationLevel.ORT_ENABLE_ALL)
    staged = None
    if folder("engines") in path.parents and os.access(path.parent, os.W_OK):  # never beside an export
        # Staged as a hidden .tmp file (what a killed run leaves is cleaned) and renamed once whole.
        optimized.parent.mkdir(exist_ok=True)
        fd, staged = tempfile.mkstemp(prefix=f".{optimized.name}.", suffix=".tmp", dir=optimized.parent)
        os.fchmod(fd, 0o666 & ~umask())  # readable by the cache's other users, as atomic_file makes files
        os.close(fd)
        o.optimized_model_filepath = staged
        o.log_severity_level = 3  # no warning that the graph suits this CPU only: its name says which CPU
    try:
        session = ort.InferenceSession(str(path), o, providers)
        if staged is not None and os.path.getsize(staged):
            os.replace(staged, optimized)
    finally:
        if staged is not None:
            Path(staged).unlink(missing_ok=True)
    return session


def openvino_compile_config(precision: str) -> dict[str, str]:
    """The properties `ov.Core().compile_model(model_file, "CPU", properties)` needs to run an ONNX
    or OpenVINO model exported in `precision` as it was exported. OpenVINO runs an fp32 model in
    bf16 on CPUs with AVX512_BF16 unless the compile call asks for f32, and takes no such request
    from the model file. int8 asks for f32 too: its quantized layers come from the model."""
    return {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}


def openvino_runner(path: Path, precision: str, threads: int) -> Runner:
    import openvino as ov

    require_precision(precision)  # a bf16 export loaded on a CPU without bf16
    core = ov.Core()
    # OpenVINO would otherwise run fp32 models in bf16 on CPUs that have it: exact needs f32.
    config = {
        **openvino_compile_config(precision),
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_NUM_THREADS": threads,
    }
    if os.access(path.parent, os.W_OK):  # OpenVINO's compiled-model cache, beside the model
        config["CACHE_DIR"] = str(path.parent / OPENVINO_COMPILED)
    compiled = core.compile_model(str(path), "CPU", config)
    local = threading.local()  # an infer request is not shareable between threads
    names = output_names(compiled.outputs)

    def output(name: str) -> Infer:
        index = names.index(name)

        def run(x: np.ndarray) -> np.ndarray:
            request = getattr(local, "request", None)
            if request is None:
                request = local.request = compiled.create_infer_request()
            request.infer({0: np.ascontiguousarray(x, np.float32)})
            return request.get_output_tensor(index).data.copy()

        return run

    return _runner(names, output, "openvino")


def output_names(outputs) -> list[str]:
    """The name of each OpenVINO output. A tensor can carry several (the graph output's and the
    node's that made it, e.g. {"Add_261", "logits"}) in a set whose order varies between runs:
    take the model's own output name where it is one, else the smallest, never an arbitrary one."""
    ours = {LOGITS, FEATURES, FEATURE_MAP}
    return [min(sorted(names & ours) or sorted(names)) for names in (set(o.get_names()) for o in outputs)]


def _runner(names: list[str], output: Callable[[str], Infer], backend: str) -> Runner:
    """The model's first output, its `feature_vector` output as the feature twin (a
    classifier's pooled features, computed by the same loaded model), and its `feature_map`."""
    features = (lambda: output(FEATURES)) if len(names) > 1 and FEATURES in names else None
    maps = (lambda: output(FEATURE_MAP)) if FEATURE_MAP in names else None
    return Runner(output(names[0]), features, backend, maps=maps)


RUNNERS = {"onnxruntime": onnxruntime_runner, "openvino": openvino_runner}
