"""What inception-hub costs besides throughput: the CPU's usable peak, start-up, memory, install size,
and how far int8 moves the answers. Used by throughput.py (through measure.py and startup.py);
`python benchmarks/footprint.py install` measures the lean install alone.

- Peak: the best float32 GFLOP/s of the engines' own kernels (ONNX Runtime's 3x3 convolution, TF's
  and numpy's matmul). numpy's BLAS can be throttled (OPENBLAS_CORETYPE), so it is not the peak alone.
- Start-up: `inception-hub classify` on one image in a fresh process, wall time and peak RSS of the
  process, per backend and precision, caches warm (one untimed run first).
- Install: a fresh venv with `pip install <this checkout>` (the lean core), the size of its
  site-packages, and which distributions take the most.
- int8 agreement: how often the int8 model's top-1 equals, or is among, the fp32 model's.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import ROOT


def _best_gflops(run: Callable[[], object], flops: float, repeat: int) -> float:
    run()  # warm-up: thread pools, allocations, kernel choice
    best = float("inf")
    for _ in range(max(repeat, 3)):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return flops / best / 1e9


def _ort_conv(channels: int = 256, size: int = 56, batch: int = 8) -> tuple[Callable[[], object], float]:
    """A 3x3 SAME convolution in ONNX Runtime, the kernel most of these networks' time goes to."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((channels, channels, 3, 3), dtype=np.float32) * 0.05
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1])],
        "conv",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, channels, size, size])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, channels, size, size])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = rng.standard_normal((batch, channels, size, size), dtype=np.float32)
    onnx.checker.check_model(model)
    return (lambda: session.run(None, {"x": x})), 2.0 * batch * channels * channels * 9 * size * size


def measure_peak(n: int, repeat: int) -> dict:
    """float32 GFLOP/s of each kernel and their best, the peak that "% of peak" refers to."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((n, n), dtype=np.float32), rng.standard_normal((n, n), dtype=np.float32)
    out: dict = {"matmul_size": n}
    out["numpy_matmul_gflops"] = _best_gflops(lambda: a @ b, 2.0 * n**3, repeat)
    try:
        import tensorflow as tf

        ta, tb = tf.constant(a), tf.constant(b)
        out["tensorflow_matmul_gflops"] = _best_gflops(lambda: tf.linalg.matmul(ta, tb).numpy(), 2.0 * n**3, repeat)
    except ImportError:
        pass
    conv, flops = _ort_conv()
    out["onnxruntime_conv3x3_gflops"] = _best_gflops(conv, flops, repeat)
    kernels = {k: v for k, v in out.items() if k.endswith("_gflops")}
    out["best_kernel"] = max(kernels, key=kernels.get).removesuffix("_gflops")
    out["measured_gflops"] = max(kernels.values())
    return out


#: Runs a command and reports its wall time and peak RSS. A child forked from a large process starts
#: with that process's peak RSS on record, so the command is started from this small one instead.
_MEASURE = """
import os, resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, code)
"""


def _startup_env() -> dict[str, str]:
    """The environment a start-up is timed in: Python's bytecode cache on (as after `pip install`,
    which compiles it), kept in benchmarks/.cache rather than beside the sources."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": str(ROOT / "benchmarks" / ".cache" / "pycache")}


def _run_measured(cmd: list[str]) -> tuple[float, float, int, str]:
    """Wall seconds and peak RSS (MiB) of `cmd` in a fresh process, its exit status and stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cmd], capture_output=True, text=True, check=True, env=_startup_env()
    )
    seconds, rss, code = proc.stdout.split()
    return float(seconds), float(rss), int(code), proc.stderr


def measure_startup(image: str, checkpoint: Path | None, repeat: int, variants: list[tuple[str, str]]) -> list[dict]:
    """Cold `inception-hub classify IMAGE` per (backend, precision): best wall time and its peak RSS.
    Backend "default" leaves the choice to inception-hub (measured at its first use)."""
    exe = shutil.which("inception-hub", path=str(Path(sys.executable).parent)) or shutil.which("inception-hub")
    base = [exe] if exe else [sys.executable, "-m", "inception_hub.cli"]
    rows = []
    for backend, precision in variants:
        chosen = [] if backend == "default" else ["--backend", backend]
        cmd = [*base, "classify", image, "--model", "inception_v1", *chosen, "--precision", precision]
        cmd += ["--no-progress", "-k", "5"] + (["--checkpoint", str(checkpoint)] if checkpoint else [])
        runs, error = [], None
        for _ in range(repeat + 1):  # the first run fills the caches and is not counted
            seconds, rss, code, err = _run_measured(cmd)
            if code:
                error = (err.strip().splitlines() or [f"exit {code}"])[-1]
                break
            runs.append((seconds, rss))
        row: dict = {"backend": backend, "precision": precision, "command": " ".join(cmd)}
        if error:
            row["error"] = error
        else:
            best = min(runs[1:])
            row.update(best_s=best[0], peak_rss_mib=best[1], runs_s=[r[0] for r in runs[1:]])
        rows.append(row)
    return rows


def measure_install(spec: str = str(ROOT)) -> dict:
    """`pip install SPEC` into a fresh venv: site-packages MB, the largest distributions, and time."""
    with tempfile.TemporaryDirectory(prefix="inception_hub_install_") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        python = venv / "bin" / "python"
        baseline = _site_packages_bytes(python)
        start = time.perf_counter()
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", spec], check=True)
        seconds = time.perf_counter() - start
        site = _site_packages(python)
        sizes: dict[str, int] = {}
        for entry in site.iterdir():
            if entry.name in ("pip", "__pycache__") or entry.name.startswith("pip-"):
                continue
            key = entry.name.split("-")[0].removesuffix(".libs").lower()
            sizes[key] = sizes.get(key, 0) + _tree_bytes(entry)
        total = _site_packages_bytes(python) - baseline
        subprocess.run(
            [str(python), "-c", "import inception_hub.cli, sys; assert 'tensorflow' not in sys.modules"], check=True
        )
    largest = sorted(sizes.items(), key=lambda kv: -kv[1])[:8]
    return {
        "spec": "inception-hub (core)" if spec == str(ROOT) else spec,
        "site_packages_mb": total / 1e6,
        "largest_mb": {k: round(v / 1e6, 1) for k, v in largest},
        "install_s": seconds,
    }


def _tree_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _site_packages(python: Path) -> Path:
    code = "import sysconfig; print(sysconfig.get_path('purelib'))"
    return Path(subprocess.check_output([str(python), "-c", code], text=True).strip())


def _site_packages_bytes(python: Path) -> int:
    return _tree_bytes(_site_packages(python))


def agreement(exact: np.ndarray, approx: np.ndarray) -> dict:
    """Top-1 agreement, and how often approx's top-1 is within exact's top-5."""
    top5 = np.argsort(exact, 1)[:, -5:]
    return {
        "images": len(exact),
        "top1_agreement": float((exact.argmax(1) == approx.argmax(1)).mean()),
        "top1_in_fp32_top5": float(np.mean([t in row for t, row in zip(approx.argmax(1), top5, strict=True)])),
        "max_abs_logit_diff": float(np.abs(exact - approx).max()),
    }


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        raise SystemExit("usage: python benchmarks/footprint.py install")
    print(json.dumps(measure_install(), indent=2))
