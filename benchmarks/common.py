"""What the benchmark scripts share: where things live, the synthetic weights, the sample photos,
the machine's facts and how results are written.

The scripts run as `python benchmarks/NAME.py`, which puts this folder first on sys.path, so
`from common import ...` finds this file without installing anything.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"
CACHE = BENCHMARKS / ".cache"
RESULTS = BENCHMARKS / "results"
SHARED = ROOT.parent / "shared"
PHOTOS = SHARED / "images" / "imagenet-sample"
REFERENCE = SHARED / "reference"
#: Input side of each network at its default size.
SIZES = {"inception_v1": 224, "inception_resnet_v2": 299}
#: How the engines were timed (a results file's config "timing"); earlier files timed each engine's runs in a row.
INTERLEAVED = "interleaved rounds"


class Skip(Exception):
    """An optional engine or decoder that cannot run here; the message says why."""


def log(message: str) -> None:
    """Progress goes to stderr, so that stdout holds only the results."""
    print(message, file=sys.stderr, flush=True)


def optional(module: str, install: str) -> Any:
    """Import an optional package, or raise Skip saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Skip(f"{module} is not importable ({e}); {install}") from e


# ---------------------------------------------------------------------------------------- weights, cache


def own_cache() -> None:
    """Keep everything the benchmarks cache out of git without touching the repository's .gitignore."""
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")


def synth_module(reference: Path = REFERENCE) -> ModuleType:
    """The reference data's `synth_checkpoint.py`, which makes weights with the official names and shapes."""
    spec = importlib.util.spec_from_file_location("synth_checkpoint", reference / "synth_checkpoint.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {reference / 'synth_checkpoint.py'}; pass --reference-dir")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def ensure_checkpoint(arch: str, directory: Path = CACHE / "checkpoints", reference: Path = REFERENCE) -> Path:
    """The synthetic TF-Slim checkpoint for `arch` (official names and shapes, seed 0), written once."""
    path = directory / f"{arch}.ckpt"
    if path.is_file():
        return path
    synth = synth_module(reference)
    log(f"writing synthetic checkpoint {path}")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{arch}.ckpt.tmp"
    synth.write_checkpoint(synth.synth_weights(arch, 0), str(tmp), "v1")
    os.replace(tmp, path)  # a run stopped halfway leaves no checkpoint that looks complete
    return path


def load_module(arch: str, checkpoint: Path | str | None, backend: str | None, precision: str = "fp32") -> Any:
    """inception-hub's module for `arch`, without a progress bar."""
    import inception_hub

    return inception_hub.load(arch, checkpoint=checkpoint, backend=backend, precision=precision, progress=False)


# ------------------------------------------------------------------------------------------------ photos


def photos(folder: Path | str = PHOTOS, limit: int | None = None) -> list[str]:
    """The first `limit` images of `folder` (all by default) in sorted order, as inception-hub's own walker
    finds them, so a benchmark reads the files the CLI would."""
    from inception_hub.files import find_images

    return sorted(find_images([folder])[0])[:limit]


# ----------------------------------------------------------------------------------------------- machine


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    name = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        text = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    return name


def cpu_count() -> int:
    """The CPUs this process may run on (its affinity), which is what the engines' thread pools get."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def machine_info(distributions: Iterable[str] = ()) -> dict:
    """CPU (its model, capabilities and class as inception_hub.cpu sees them), CPU count, Python and
    the installed versions of `distributions`, recorded beside the results."""
    from inception_hub.cpu import cpu

    versions = {}
    for dist in distributions:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    here = cpu()
    return {
        "cpu": cpu_name(),
        "cpus": cpu_count(),
        "cpu_describe": here.describe(),
        "isa": here.isa,
        "python": platform.python_version(),
        "versions": versions,
    }


def describe_cpu(machine: dict) -> str:
    """The CPU line of a results dict: `cpu().describe()` where recorded, else the model and count."""
    return machine.get("cpu_describe") or f"{machine['cpu']} ({machine['cpus']} CPUs; capabilities not recorded)"


# ----------------------------------------------------------------------------------------------- results


def write_json(path: Path | str, data: Any, indent: int = 2) -> None:
    """Write results as JSON (its folder created), ending with a newline."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=indent) + "\n")
