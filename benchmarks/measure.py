"""How throughput.py measures: timing loops (best of repeated runs, each at least --min-time long),
model-only and end-to-end rates per engine, the choice among an engine's end-to-end variants, the
measured float32 peak and each rate as a fraction of it, and int8's agreement with fp32.

Engines are timed in interleaved rounds: each round builds each engine in turn, times it (batch 1,
batch 32, then a pass end to end), and releases it before the next is built, so none pays for
another's memory (all of Inception-ResNet-V2's engines at once, each with its batch-32 buffers,
outgrow 24 GB) and a burst of other load on the host, or the CPU's clock changing, hits every
engine alike instead of one. The best and the median of the rounds are kept. Between engines the
process pauses briefly, so thread pools that spin after their work (PyTorch's OpenMP) are asleep
before the next engine starts.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from common import SIZES, Skip, load_module, log
from engines import Engine, engine_builders

from inception_hub.cpu import cpu

#: FLOPs per image at the default size, a multiply-add counted as 2.
FLOPS = {"inception_v1": 3.0e9, "inception_resnet_v2": 26.3e9}
NOMINAL_PEAK_GFLOPS = 467.0  # the figure given for this machine; the measured one is used for fractions


def best_rate(step: Callable[[], int], repeat: int, min_time: float, max_calls: int = 10_000) -> dict:
    """images/s of `step` (which returns how many images it did): `repeat` runs, each calling it until
    `min_time` seconds have passed (so fast calls are not timed one by one), at most `max_calls` times."""
    rates = []
    for _ in range(repeat):
        done, start = 0, time.perf_counter()
        for _ in range(max_calls):
            done += step()
            if time.perf_counter() - start >= min_time:
                break
        rates.append(done / (time.perf_counter() - start))
    return {"best": max(rates), "median": float(np.median(rates)), "runs": rates}


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin every thread of this process to one CPU (threads started meanwhile inherit it), so that a decoder
    runs at its single-core rate whatever thread pools its library keeps (TensorFlow's, OpenCV's)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    saved = os.sched_getaffinity(0)
    core = min(saved)

    def pin(cpus: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):  # a thread may end while we walk the list
                os.sched_setaffinity(int(tid), cpus)

    pin({core})
    try:
        yield core
    finally:
        pin(saved)


def measure_end_to_end(run: Callable[[list[str]], int], paths: list[str], repeat: int) -> dict:
    """Files in, top-5 out: images/s over all `paths`, best of `repeat` passes."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = run(paths)
        elapsed = time.perf_counter() - start
        if done != len(paths):
            raise RuntimeError(f"classified {done} of {len(paths)} images")
        rates.append(done / elapsed)
    return {"best": max(rates), "median": float(np.median(rates)), "runs": rates}


#: Seconds between two engines' turns: long enough for spinning thread pools to go to sleep.
SETTLE_S = 0.3


def measure_engines(
    builders: list[tuple[str, Callable[[], Engine]]], images: np.ndarray, paths: list[str], args: argparse.Namespace
) -> tuple[list[dict], dict[str, str]]:
    """Time every engine in interleaved rounds: `args.repeat` rounds of model-only batch 1 and
    batch 32, the first `args.e2e_repeat` of them with a pass end to end. Returns the records and
    the engines skipped (with why)."""
    records: dict[str, dict[str, Any]] = {}
    skipped: dict[str, str] = {}
    for round_ in range(max(args.repeat, args.e2e_repeat)):
        for label, build in builders:
            if label in skipped:
                continue
            try:
                start = time.perf_counter()
                engine = build()
                if label not in records:
                    records[label] = new_record(engine, time.perf_counter() - start, paths[: args.probe_images])
                record = records[label]
                if round_ < args.repeat:
                    for batch in (1, 32):
                        record[f"b{batch}"].append(model_only_rate(engine, images[:batch], args.min_time))
                if round_ < args.e2e_repeat:
                    record["e2e"] += measure_end_to_end(engine.end_to_end[record["variant"]], paths, 1)["runs"]
            except Skip as e:
                skipped[label] = str(e)
                log(f"  {label}: skipped: {e}")
            except Exception as e:  # a long run should not die on one engine: record what went wrong
                skipped[label] = f"failed: {type(e).__name__}: {e}"
                log(f"  {label}: failed: {type(e).__name__}: {e}")
            engine = None  # released before the next is built
            gc.collect()
            time.sleep(SETTLE_S)
    out = []
    for label, record in records.items():
        if label in skipped:
            continue
        del record["variant"]
        for what in ("b1", "b32", "e2e"):
            rates = record[what]
            record[what] = {"best": max(rates), "median": float(np.median(rates)), "runs": rates}
        log(
            f"  {record['name']}: model-only b1 {record['b1']['best']:.1f}, b32 {record['b32']['best']:.1f}, "
            f"end-to-end {record['e2e']['best']:.1f} img/s (best of {len(record['b1']['runs'])} and "
            f"{len(record['e2e']['runs'])} rounds)"
        )
        out.append(record)
    return out, skipped


def new_record(engine: Engine, build_s: float, probe: list[str]) -> dict[str, Any]:
    """An engine's record at its first turn, with the end-to-end variant its passes run."""
    record: dict[str, Any] = {"name": engine.name, "group": engine.group, "build_s": build_s}
    record.update({"b1": [], "b32": [], "e2e": []})
    if len(engine.end_to_end) > 1:
        record["variant"] = pick_variant(engine, probe, record)
    else:
        record["variant"], *_ = engine.end_to_end
        record["name"] += f" ({record['variant']})" if record["variant"] else ""
    return record


def model_only_rate(engine: Engine, images: np.ndarray, min_time: float) -> float:
    """Model-only images/s on preprocessed `images`, after two untimed calls (tracing, compiling)."""
    x = engine.prepare(images)
    for _ in range(2):
        engine.infer(x)
    return best_rate(lambda: (engine.infer(x), len(images))[1], 1, min_time)["best"]


def pick_variant(engine: Engine, probe: list[str], record: dict) -> str:
    """The fastest end-to-end variant (e.g. DataLoader num_workers) on a few images, so only it makes the
    long passes; the probe rates are kept in `record` and the winner is named in the engine's name."""
    rates = {name: measure_end_to_end(run, probe, 1)["best"] for name, run in engine.end_to_end.items()}
    best = max(rates, key=rates.__getitem__)
    record["e2e_probe"] = {"images": len(probe), "rates": rates, "chosen": best}
    record["name"] = f"{engine.name} ({best})"
    log(f"  {engine.name}: probe on {len(probe)} images {', '.join(f'{k} {v:.1f}' for k, v in rates.items())} img/s")
    return best


def benchmark_model(arch: str, checkpoint: Path | None, paths: list[str], args: argparse.Namespace) -> dict:
    from inception_hub.images import load_image

    size = SIZES[arch]
    log(f"== {arch} at {size}x{size}, {len(paths)} images, on {cpu().describe()}")
    choices = measure_choices(arch, checkpoint) if "project" not in args.skip else {}
    first = [load_image(p, (size, size)) for p in paths[:32]]
    images = np.stack([first[i % len(first)] for i in range(32)])  # fewer than 32 images: repeat them
    engines, skipped = measure_engines(engine_builders(arch, checkpoint, args), images, paths, args)
    mark_choices(engines, choices)
    add_ratios(engines, FLOPS[arch], args.peak_gflops, arch)
    out = {"image_size": size, "flops_per_image": FLOPS[arch], "engines": engines, "skipped": skipped}
    out["choices"] = choices
    if any("int8" in e["name"] for e in engines):
        out["int8_agreement"] = int8_agreement(arch, checkpoint, paths)
    return out


def measure_choices(arch: str, checkpoint: Path | None) -> dict:
    """What inception-hub runs by default (fp32) and for precision "fast" on this CPU, and why: the
    choice measured at first use (here, unless this cache has measured it already) or the card's."""
    from inception_hub.errors import InputError

    out = {}
    for precision in ("fp32", "fast"):
        try:
            choice = load_module(arch, checkpoint, None, precision).choice
        except InputError as e:  # fast on a CPU without VNNI or bf16
            out[precision] = {"error": str(e)}
            log(f"  {precision}: {e}")
            continue
        out[precision] = {
            "backend": choice.backend,
            "precision": choice.precision,
            "how": choice.how,
            "why": choice.why(),
            "rates": choice.rates,
            "agreement": choice.agreement,
            "photos": choice.photos,
        }
        log(f"  chosen for {precision}: {choice.backend} {choice.precision} ({choice.why()})")
    return out


def mark_choices(engines: list[dict], choices: dict) -> None:
    """Name the rows inception-hub picks: "(default)" for fp32, "(fast)" for precision fast."""
    for label, key in (("default", "fp32"), ("fast", "fast")):
        c = choices.get(key) or {}
        name = f"inception-hub {c.get('backend')} {c.get('precision')}"
        for e in engines:
            if e["name"] == name:
                e["name"] += f" ({label})"
                e["chosen"] = e.get("chosen", []) + [label]


def int8_agreement(arch: str, checkpoint: Path | None, paths: list[str]) -> dict:
    """int8 against fp32 on every benchmark image, per engine (footprint.agreement)."""
    from footprint import agreement

    from inception_hub.images import load_image

    size = SIZES[arch]
    x = np.stack([load_image(p, (size, size)) for p in paths])
    out = {}
    for backend in ("onnxruntime", "openvino"):
        exact = load_module(arch, checkpoint, backend)(x, batch_size=32)
        out[backend] = agreement(exact, load_module(arch, checkpoint, backend, "int8")(x, batch_size=32))
        log(f"  int8 on {backend}: {out[backend]}")
    return out


def add_ratios(engines: list[dict], flops: float, peak_gflops: float, arch: str) -> None:
    """Each engine's rate relative to the TF-Hub way, to the best peer and to the default fp32 engine,
    and as a fraction of peak; end-to-end also as a fraction of the engine's own batch-32 model-only rate."""
    from inception_hub.engine import choose_backend

    default = f"inception-hub {choose_backend(None, 'fp32', arch)} fp32"
    for e in engines:
        e["e2e"]["of_own_b32"] = e["e2e"]["best"] / e["b32"]["best"]
    for metric in ("e2e", "b1", "b32"):
        fp32 = next((e[metric]["best"] for e in engines if e["name"].startswith(default)), None)
        for e in engines:
            e[metric]["vs_default_fp32"] = e[metric]["best"] / fp32 if fp32 else None
        hub = next((e[metric]["best"] for e in engines if e["group"] == "tf-hub"), None)
        peers = [e[metric]["best"] for e in engines if e["group"] == "peer"]
        for e in engines:
            rate = e[metric]["best"]
            e[metric]["vs_tfhub"] = rate / hub if hub else None
            e[metric]["vs_best_peer"] = rate / max(peers) if peers else None
            e[metric]["fraction_of_peak"] = rate * flops / (peak_gflops * 1e9) if peak_gflops else None


def measure_peak(n: int, repeat: int) -> dict:
    """The best of the engines' own float32 kernels (footprint.measure_peak)."""
    from footprint import measure_peak as peak

    out = peak(n, repeat)
    out["nominal_gflops"] = NOMINAL_PEAK_GFLOPS
    kernels = ", ".join(f"{k.removesuffix('_gflops')} {v:.0f}" for k, v in out.items() if k.endswith("_gflops"))
    log(f"== peak: {kernels} GFLOP/s float32")
    return out
