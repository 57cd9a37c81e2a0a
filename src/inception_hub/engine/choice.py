"""Which engine, and for precision "fast" which precision, runs a network fastest on this CPU.

At first use per network, precision and CPU, the candidates (`choose.candidates`) are timed on a
few batches, interleaved so that a burst of other load hits them all alike, and the choice is
cached beside the engine models (`engines/choices.json`), keyed by the CPU's facts and the
engines' versions: a new CPU or engine measures again. A challenger must beat the card's first
choice by MARGIN, so noise does not flip the choice. The card's order is the fallback: before
the first measurement, where only one candidate is installed, and where INCEPTION_HUB_MEASURE=0
turns measuring off. For "fast", the choice also records its top-1 agreement with fp32 on the
bundled photos, per weights.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_file
from ..catalog import ModelSpec
from ..cpu import CpuInfo, cpu
from ..errors import InceptionHubError, InputError
from ..weights import cache_lock, folder
from .base import FAST, Infer, Runner
from .choose import available_backends, candidates, package

ENV = "INCEPTION_HUB_MEASURE"
FILE = "choices.json"
#: Bump when what is measured changes, so cached choices are measured again.
VERSION = 1
#: Images per timed call, timed seconds per choice (all candidates), and timed calls per candidate at least.
BATCH = 4
BUDGET_S = 1.5
MIN_RUNS = 2
#: How much faster than the card's first choice a challenger must be measured to replace it.
MARGIN = 1.05
#: Crops of the bundled photos that "fast"'s agreement with fp32 is measured on.
AGREEMENT_PHOTOS = 32

Timer = Callable[[Mapping[str, Infer], np.ndarray], dict[str, float]]
Build = Callable[[ModelSpec, str, str], Runner]


@dataclass(frozen=True)
class Choice:
    """The engine and precision a request runs on, and why: `how` is "measured" (with `rates`,
    images/s per "backend/precision" at batch BATCH) or "card order" (with a `note` saying why)."""

    backend: str
    precision: str
    how: str = "card order"
    note: str = ""
    rates: dict[str, float] = field(default_factory=dict)
    reference: str = ""  # for "fast": the fp32 engine its rate is compared with, also in `rates`
    agreement: float | None = None  # for "fast": top-1 agreement with fp32 on the bundled photos
    photos: int = 0

    @property
    def measured(self) -> bool:
        return self.how == "measured"

    def why(self) -> str:
        """The reason in a few words: the measured rates, or why the card's order holds."""
        if not self.measured:
            return "card order" + (f" ({self.note})" if self.note else "")
        shown = [k for k in sorted(self.rates, key=self.rates.__getitem__, reverse=True) if k != self.reference]
        one = len({k.split("/")[1] for k in shown}) == 1  # then the precision goes without saying
        text = "measured " + ", ".join(
            f"{k.split('/')[0] if one else k.replace('/', ' ')} {self.rates[k]:.1f}" for k in shown
        )
        if self.reference in self.rates:
            text += f"; fp32 on {self.reference.split('/')[0]} {self.rates[self.reference]:.1f}"
        return text + f" img/s (batch {BATCH})"

    def summary(self) -> str:
        """One line for precision "fast": what it runs, how much faster, how close to fp32."""
        line = f"precision fast: {self.precision} on {self.backend}"
        mine, ref = self.rates.get(f"{self.backend}/{self.precision}"), self.rates.get(self.reference)
        line += f", {mine / ref:.1f}x fp32's rate here" if mine and ref else f" ({self.why()})"
        if self.agreement is not None:
            line += f"; top-1 agreement with fp32 {self.agreement:.0%} on {self.photos} crops of the bundled photos"
        return line


def measuring() -> bool:
    """Whether choices are measured (INCEPTION_HUB_MEASURE unset or not 0/false/no/off)."""
    return os.environ.get(ENV, "").strip().lower() not in ("0", "false", "no", "off")


def request_name(arch: str, precision: str, backend: str | None = None) -> str:
    return f"{arch}/{precision}" + (f"/{backend}" if backend else "")


def key(info: CpuInfo | None = None) -> dict[str, Any]:
    """What a measured choice depends on: the CPU's facts and the installed engines' versions."""
    info = info or cpu()
    engines = {b: engine_version(package(b)) for b in available_backends()}
    return {"version": VERSION, "cpu": info.model, "isa": info.isa, "cores": info.cores, "engines": engines}


def engine_version(pkg: str) -> str:
    """An installed package's version, from its `.dist-info` folder's name (reading the package
    metadata the standard way costs more than the rest of a start-up)."""
    spec = importlib.util.find_spec(pkg)
    if spec is not None and spec.submodule_search_locations:
        site = Path(next(iter(spec.submodule_search_locations))).parent
        found = _dist_infos(str(site)).get(pkg.lower().replace("-", "_"))
        if found:
            return found
    from importlib import metadata

    try:
        return metadata.version(pkg)
    except metadata.PackageNotFoundError:  # a package another distribution provides (onnxruntime-gpu)
        dists = metadata.packages_distributions().get(pkg)
        return f"{dists[0]}-{metadata.version(dists[0])}" if dists else "unknown"


@functools.cache
def _dist_infos(site: str) -> dict[str, str]:
    out = {}
    with os.scandir(site) as entries:
        for entry in entries:
            if entry.name.endswith(".dist-info"):
                name, _, version = entry.name.removesuffix(".dist-info").partition("-")
                out[name.lower().replace("-", "_")] = version
    return out


def _path() -> Path:
    return folder("engines") / FILE


def _read() -> dict[str, Any]:
    try:
        entries = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def _entry(name: str, current: dict[str, Any]) -> dict[str, Any] | None:
    entry = _read().get(name)
    return entry if isinstance(entry, dict) and entry.get("key") == current else None


def _save(name: str, entry: dict[str, Any]) -> None:
    """Store one request's entry (under the lock, so entries of other requests are kept)."""
    entries = _read()
    entries[name] = entry
    try:
        with atomic_file(_path()) as f:
            f.write((json.dumps(entries, indent=1, sort_keys=True) + "\n").encode())
    except OSError as e:
        warnings.warn(f"cannot cache the engine choice in {_path().parent} ({e.strerror or e})", stacklevel=3)


#: Why a choice follows the card's order.
ONLY = "the only candidate"
OFF = f"measuring is off: {ENV}=0"
FIRST_USE = "not measured yet"


def plan(arch: str, precision: str = "fp32", backend: str | None = None, info: CpuInfo | None = None) -> Choice:
    """The choice for a request as known now, without measuring: the cached measurement for this
    CPU and these engines, else the card's first candidate."""
    pairs = candidates(arch, precision, backend, info)
    if not pairs:
        raise InputError(f"no installed backend runs {arch} in {precision}: pip install 'inception-hub[engine]'")
    if len(pairs) == 1:
        return Choice(*pairs[0], note=ONLY)
    if not measuring():
        return Choice(*pairs[0], note=OFF)
    entry = _entry(request_name(arch, precision, backend), key(info))
    if entry is None or not entry.get("rates") or (entry.get("backend"), entry.get("precision")) not in pairs:
        return Choice(*pairs[0], note=FIRST_USE)
    return Choice(
        entry["backend"], entry["precision"], "measured", "", dict(entry["rates"]), entry.get("reference", "")
    )


def choose_backend(backend: str | None, precision: str = "fp32", arch: str = "inception_v1") -> str:
    """Validate an explicit choice, or pick the fastest exact backend installed for `arch`: the
    measured one where this CPU has been measured, else the card's first."""
    return plan(arch, precision, backend).backend


def settle(
    spec: ModelSpec,
    weights: Any,
    precision: str,
    backend: str | None,
    build: Build,
    *,
    calibration: str | os.PathLike | None = None,
    timer: Timer | None = None,
    info: CpuInfo | None = None,
) -> tuple[Choice, Runner | None]:
    """The choice for a request, measured now if it has not been (timing `build`'s runners with
    `timer`, default `time_runs`), and for "fast" with its agreement with fp32 for these weights
    (`weights.digest`). Returns the runner of the choice where measuring built it, so that it is
    not built twice."""
    choice = plan(spec.arch, precision, backend, info)
    name, current = request_name(spec.arch, precision, backend), key(info)
    agreement = _agreement_key(choice, weights.digest, calibration) if precision == FAST else None
    if choice.note != FIRST_USE and (agreement is None or agreement in _agreements(name, current)):
        return _agreed(choice, _agreements(name, current).get(agreement)), None
    built: dict[tuple[str, str, str], Runner] = {}

    def get(s: ModelSpec, b: str, p: str) -> Runner:
        if (s.kind, b, p) not in built:
            built[s.kind, b, p] = build(s, b, p)
        return built[s.kind, b, p]

    with contextlib.ExitStack() as stack:
        with contextlib.suppress(OSError):  # a read-only cache: measured here, for this process
            stack.enter_context(cache_lock("engine-choice"))  # one measures; the others wait, then read it
        if choice.note == FIRST_USE:
            choice = plan(spec.arch, precision, backend, info)
        if choice.note == FIRST_USE:
            entry = _measure(spec, precision, backend, get, timer or time_runs, info)
            kept = {"agreement": _agreements(name, current)} if precision == FAST else {}
            _save(name, {**entry, "key": current, **kept})
            choice = plan(spec.arch, precision, backend, info)
        if precision == FAST:
            agreement = _agreement_key(choice, weights.digest, calibration)
            found = _agreements(name, current)
            if agreement not in found:
                found[agreement] = _measure_agreement(spec, choice, get, info)
                _save(name, {**(_entry(name, current) or {"key": current}), "agreement": found})
            choice = _agreed(choice, found[agreement])
    return choice, built.get((spec.kind, choice.backend, choice.precision))


def _agreement_key(choice: Choice, digest: str, calibration: str | os.PathLike | None) -> str:
    """Agreement depends on the engine, the precision, the weights and the int8 calibration."""
    photos = os.path.abspath(calibration) if calibration is not None else "bundled"
    return f"{choice.backend}/{choice.precision}/{digest[:16]}/{photos}"


def recorded_agreement(choice: Choice, arch: str, digest: str, backend: str | None = None) -> Choice:
    """`choice` (of precision "fast") with its agreement with fp32 for the weights `digest`, where
    it has been measured (with the bundled calibration)."""
    name = request_name(arch, FAST, backend)
    return _agreed(choice, _agreements(name, key()).get(_agreement_key(choice, digest, None)))


def _agreements(name: str, current: dict[str, Any]) -> dict[str, Any]:
    found = (_entry(name, current) or {}).get("agreement")
    return dict(found) if isinstance(found, dict) else {}


def _agreed(choice: Choice, found: dict[str, Any] | None) -> Choice:
    if not found:
        return choice
    return replace(choice, agreement=found.get("top1"), photos=found.get("photos", 0))


def _measure(spec: ModelSpec, precision: str, backend: str | None, get, timer: Timer, info) -> dict[str, Any]:
    """Time every candidate (and for "fast" the fp32 choice, for reference): the entry to cache.
    An entry without rates (nothing could be timed) is measured again at the next use."""
    pairs = candidates(spec.arch, precision, backend, info)
    reference = f"{plan(spec.arch, 'fp32', None, info).backend}/fp32" if precision == FAST else ""
    runs: dict[str, Infer] = {}
    for name in [f"{b}/{p}" for b, p in pairs] + ([reference] if reference else []):
        b, p = name.split("/")
        try:
            runs[name] = get(spec, b, p).run
        except InceptionHubError:
            raise  # the request's own problem (a missing calibration folder, ...): every engine has it
        except Exception as e:  # one engine that cannot build here leaves the others to choose from
            warnings.warn(f"{b} in {p} could not be timed ({type(e).__name__}: {e})", stacklevel=4)
    timed = ", ".join(n.replace("/", " ") for n in runs)
    print(f"choosing the engine for {spec.arch} {precision} on this CPU, once: timing {timed}", file=sys.stderr)
    x = np.random.default_rng(0).random((BATCH, *spec.image_size, 3), dtype=np.float32)
    rates = {k: float(v) for k, v in (timer(runs, x) if runs else {}).items() if v}
    timed = {f"{b}/{p}": rates[f"{b}/{p}"] for b, p in pairs if f"{b}/{p}" in rates}
    when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    if not timed:
        return {"when": when}
    first = f"{pairs[0][0]}/{pairs[0][1]}"
    best = max(timed, key=timed.__getitem__)
    if first in timed and timed[best] < MARGIN * timed[first]:
        best = first
    b, p = best.split("/")
    return {"backend": b, "precision": p, "rates": rates, "reference": reference, "batch": BATCH, "when": when}


def _measure_agreement(spec: ModelSpec, choice: Choice, get, info) -> dict[str, Any]:
    """Top-1 agreement of the fast choice with fp32, on seeded crops of the bundled photos, with
    the classifier of the same weights (a feature vector has no top-1 of its own)."""
    from .quantize import Calibration, calibration_files

    classifier = spec if spec.num_classes else spec.with_kind("classification")
    photos = Calibration(calibration_files(None), classifier.image_size, count=AGREEMENT_PHOTOS, seed=1)
    x = np.concatenate([photos.batch(i) for i in range(len(photos))])
    reference = choice.reference or f"{plan(spec.arch, 'fp32', None, info).backend}/fp32"
    exact = get(classifier, reference.split("/")[0], "fp32").run(x)
    fast = get(classifier, choice.backend, choice.precision).run(x)
    return {"top1": float((exact.argmax(1) == fast.argmax(1)).mean()), "photos": len(x)}


def time_runs(runs: Mapping[str, Infer], x: np.ndarray, budget: float = BUDGET_S) -> dict[str, float]:
    """Images/s of each run on `x`: the best of interleaved rounds, at least MIN_RUNS and until
    `budget` seconds have passed, after one untimed call each (compiling, allocating)."""
    for run in runs.values():
        run(x)
    best = dict.fromkeys(runs, 0.0)
    start, rounds = time.perf_counter(), 0
    while rounds < MIN_RUNS or (time.perf_counter() - start < budget and rounds < 100):
        for name, run in runs.items():
            t = time.perf_counter()
            run(x)
            best[name] = max(best[name], len(x) / (time.perf_counter() - t))
        rounds += 1
    return best
