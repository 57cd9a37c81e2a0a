"""The accuracy harness behind `inception-hub evaluate`: labelled photos through one model in
several variants (backends, precisions, exported formats), each photo decoded once.

Data layouts (the class of a photo is its ImageNet wnid, or for a fine-tuned model one of its
own class names):
- a folder per class: `DATA/n01440764/*.JPEG` (ImageNet's train layout, and the val set sorted);
- a flat folder with a CSV of file name and class: `DATA/*.JPEG` + `DATA/labels.csv` (a header is
  skipped; a second column such as `LOC_val_solution.csv`'s "n01751748 x y ..." gives its first
  word; names without an extension find their file);
- files named `<wnid>_anything.JPEG`.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import itertools
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import is_hidden, is_image_name, walk
from .labels import imagenet_labels, imagenet_wnids
from .module import Module

WNID = re.compile(r"n\d{8}")


@dataclass(frozen=True)
class Sample:
    path: str
    key: str  # a wnid or a class name


def find_samples(data: str | os.PathLike, csv_file: str | os.PathLike | None = None) -> list[Sample]:
    """The labelled photos under `data`, sorted by path, in whichever layout it has."""
    root = Path(data)
    if root.is_file() and root.suffix.lower() == ".csv":
        root, csv_file = root.parent, root
    if not root.is_dir():
        raise InputError(f"{data} is not a folder of photos (or a CSV of file names and classes)")
    if csv_file is None:
        found = sorted(root.glob("*.csv"))
        if len(found) > 1:
            raise InputError(f"{root} holds several CSV files; name the one to use with --csv")
        csv_file = found[0] if found else None
    if csv_file is not None:
        samples = _from_csv(root, Path(csv_file))
    else:
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not is_hidden(p))
        samples = [Sample(str(f), folder.name) for folder in folders for f in _images(folder)]
        if not folders:
            samples = [Sample(str(f), f.name.split("_")[0]) for f in _images(root) if WNID.fullmatch(f.name[:9])]
    if not samples:
        raise InputError(
            f"no labelled photos in {data}: use a folder per class, a CSV of file name and class, "
            "or files named <wnid>_....JPEG"
        )
    return sorted(samples, key=lambda s: s.path)


def _images(folder: Path) -> list[Path]:
    return [Path(p) for p in walk(folder)]


def _from_csv(root: Path, table: Path) -> list[Sample]:
    try:
        rows = list(csv.reader(table.read_text(encoding="utf-8-sig").splitlines()))
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read {table}: {e}") from None
    present = {p.name: p for p in root.iterdir() if p.is_file()}
    stems = {p.stem: p for p in present.values() if is_image_name(p)}
    samples = []
    for i, row in enumerate(rows):
        if len(row) < 2 or not row[1].split():
            continue
        name, key = row[0].strip(), row[1].split()[0]
        path = present.get(name) or stems.get(name)
        if path is None:
            if i == 0:  # a header
                continue
            path = root / name  # reported as unreadable, not dropped
        samples.append(Sample(str(path), key))
    return samples


def limit_samples(samples: Sequence[Sample], limit: int | None) -> list[Sample]:
    """`limit` samples spread evenly over the sorted list, so every part of it is represented."""
    if limit is None or limit >= len(samples):
        return list(samples)
    picks = np.linspace(0, len(samples) - 1, limit).round().astype(int)
    return [samples[i] for i in picks]


def class_indices(labels: Sequence[str]) -> Callable[[str], int | None]:
    """A photo's class key to the model's output index: wnids for ImageNet classifiers, class
    names for fine-tuned ones (and ImageNet label names)."""
    by_name = {name: i for i, name in enumerate(labels)}
    by_wnid = {w: i for i, w in enumerate(imagenet_wnids())} if tuple(labels) == imagenet_labels() else {}
    return lambda key: by_wnid.get(key, by_name.get(key))


@dataclass
class Variant:
    """One way of running the model: its name (`onnxruntime/int8`, `tflite/fp32`), the loaded
    module, the model time it took and its hits so far."""

    name: str
    module: Module
    backend: str
    precision: str
    format: str | None
    seconds: float = 0.0
    weights: dict = field(default_factory=dict)  # where they came from: see weights_origin
    pending: list[np.ndarray] = field(default_factory=list)  # logits not yet scored
    top1: int = 0
    top5: int = 0


def variants(
    model: str,
    checkpoint: str | None,
    backends: Sequence[str | None],
    precisions: Sequence[str],
    formats: Sequence[str | None],
    stack: contextlib.ExitStack,
    *,
    calibration: str | None = None,
    progress: bool = True,
    note: Callable[[str], None] = print,
) -> list[Variant]:
    """Every valid combination, loaded; the invalid ones are named through `note` and left out.
    Exports go into a temporary folder that lives as long as `stack`."""
    from .catalog import LATEST_VERSION, resolve
    from .export import check_format, export
    from .metadata import FORMAT_RECORDS, is_export
    from .module import load

    out, workdir = [], None
    for fmt, backend, precision in _combinations(formats, backends, precisions):
        cal = calibration if precision == "int8" else None
        try:
            if fmt is None:
                module = load(
                    model, checkpoint, backend=backend, precision=precision, calibration=cal, progress=progress
                )
            else:
                if is_export(model):
                    raise InputError(f"{model} is already exported; --format needs a handle")
                spec = resolve(model)
                if FORMAT_RECORDS[fmt].saved_model:  # this network in that format, at any size
                    spec = dataclasses.replace(spec, version=LATEST_VERSION if fmt == "saved_model" else 3)
                check_format(spec, fmt, precision, None)
                workdir = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="evaluate_")))
                folder = workdir / f"{fmt}-{precision}-{backend}"
                export(spec, folder, checkpoint, format=fmt, precision=precision, calibration=cal, progress=progress)
                module = load(folder, backend=backend)
        except InputError as e:
            note(f"left out {'/'.join(x for x in (fmt, backend, precision) if x)}: {e}")
            continue
        parts = [fmt] if fmt else []
        parts += [module.backend] if module.backend != fmt else []
        name = "/".join([*parts, precision])
        out.append(Variant(name, module, module.backend, precision, fmt))
    if not out:
        raise InputError("none of the requested backend, precision and format combinations can run")
    origin = weights_origin(model, checkpoint)  # every variant runs the same weights (exports too)
    for v in out:
        v.weights = origin
    return out


def weights_origin(model: str, checkpoint: str | None) -> dict:
    """Where the weights of `model` come from, so a score is never read as the release's when it
    is not: `origin` "checkpoint" (a --checkpoint file), "export" (inside an exported or
    fine-tuned folder), or the cache's record ("release", "imported": `fetch --from`, or
    "unknown"), with `source` (the file, folder or download) where known."""
    from .source import resolve_source
    from .weights import provenance

    source = resolve_source(model, checkpoint)
    if source.exported is not None:
        return {"origin": "export", "source": os.path.abspath(source.name)}
    if checkpoint is not None:
        return {"origin": "checkpoint", "source": os.path.abspath(checkpoint)}
    record = provenance(source.spec.arch) or {}
    origin = record.get("origin") if record.get("origin") in ("release", "imported") else "unknown"
    return {"origin": origin, "source": record.get("source"), "weights_digest": record.get("weights_digest")}


def describe_weights(origin: dict) -> str:
    """`weights_origin`'s record in words, as `inception-hub models` puts it."""
    where = origin.get("source")
    return {
        "release": "the official release (cached)",
        "imported": f"imported from {where}, not the official release (cached)",
        "checkpoint": f"the checkpoint {where}",
        "export": f"those inside {where}",
    }.get(origin.get("origin"), "cached; where they came from was not recorded")


def _combinations(formats, backends, precisions) -> list[tuple[str | None, str | None, str]]:
    """Each format with each precision, on each of `backends` that runs it (on its own runtime
    when none of them does); no format: each backend with each precision."""
    from .metadata import FORMAT_RECORDS

    out = []
    for fmt in formats:
        runs = FORMAT_RECORDS[fmt].backends if fmt else None
        usable = [b for b in backends if runs is None or b in runs] or [None]
        out += [(fmt, b, p) for b in usable for p in precisions]
    return out


@dataclass
class Report:
    images: int
    seconds: float
    variants: list[dict]
    agreement: list[dict]
    skipped: list[dict]
    unknown: list[dict]

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def evaluate(
    runs: Sequence[Variant],
    samples: Sequence[Sample],
    *,
    batch_size: int = 32,
    workers: int | None = None,
    on_progress: Callable[[int], None] = lambda n: None,
) -> Report:
    """Run every variant on the same decoded photos and score them."""
    from .pipeline import run

    first = runs[0].module
    if not first.labels:
        raise InputError(f"{first.handle} outputs feature vectors; evaluate a classification model")
    index_of = class_indices(first.labels)
    keyed = [(s, index_of(s.key)) for s in samples]
    unknown = [{"path": s.path, "class": s.key} for s, i in keyed if i is None]
    known = {s.path: i for s, i in keyed if i is not None}
    if not known:
        raise InputError(f"none of the photos' classes (e.g. {samples[0].key!r}) is a class of {first.handle}")
    fanout = _Fanout(runs)
    pairs = {(i, j): [0, 0.0] for i, j in itertools.combinations(range(len(runs)), 2)}  # agreeing, max diff
    truth, skipped, scored = [], [], 0
    started = time.perf_counter()
    for result in run(fanout, list(known), batch_size=batch_size, workers=workers):
        on_progress(1)
        if result.error is not None:
            skipped.append({"path": result.path, "reason": result.error})
            continue
        truth.append(known[result.path])
        if len(truth) == fanout.rows:  # every computed batch has its labels: score and drop it
            _tally(runs, pairs, np.array(truth, np.int64))
            scored += len(truth)
            truth, fanout.rows = [], 0
    seconds = time.perf_counter() - started
    rows = [_score(v, scored) for v in runs]
    agreement = [
        {
            "a": runs[i].name,
            "b": runs[j].name,
            "top1_agreement": agree / scored if scored else None,
            "max_logit_difference": diff if scored else None,
        }
        for (i, j), (agree, diff) in pairs.items()
    ]
    return Report(scored, seconds, rows, agreement, skipped, unknown)


def _tally(runs: Sequence[Variant], pairs: dict, labels: np.ndarray) -> None:
    logits = []
    for v in runs:
        lg = np.concatenate(v.pending)
        v.pending = []
        top5 = np.argsort(-lg, axis=1, kind="stable")[:, :5]
        v.top1 += int((top5[:, 0] == labels).sum())
        v.top5 += int((top5 == labels[:, None]).any(1).sum())
        logits.append(lg)
    for (i, j), acc in pairs.items():
        acc[0] += int((logits[i].argmax(1) == logits[j].argmax(1)).sum())
        acc[1] = max(acc[1], float(np.abs(logits[i] - logits[j]).max()))


def _score(v: Variant, n: int) -> dict:
    return {
        "name": v.name,
        "backend": v.backend,
        "precision": v.precision,
        "format": v.format,
        "images": n,
        "top1": v.top1 / n if n else None,
        "top5": v.top5 / n if n else None,
        "images_per_s": n / v.seconds if v.seconds else None,
        "weights": v.weights,
    }


class _Fanout:
    """Looks like one module to the pipeline; runs each variant on the batch, keeping its logits
    until they are scored and timing its model alone (decoding is shared, so not part of any
    variant's rate). `rows`: images computed and not yet scored."""

    def __init__(self, runs: Sequence[Variant]) -> None:
        sizes = {tuple(v.module.expected_image_size) for v in runs}
        if len(sizes) > 1:
            raise InputError(f"the variants expect different image sizes {sorted(sizes)}; evaluate them separately")
        self.runs = runs
        self.expected_image_size = runs[0].module.expected_image_size
        self.spec = runs[0].module.spec  # one network: one card, so one preprocessing
        self.output_dim = 0
        self.rows = 0

    def __call__(self, x: np.ndarray, batch_size: int = 32) -> np.ndarray:
        for v in self.runs:
            started = time.perf_counter()
            v.pending.append(v.module(x, batch_size=batch_size))
            v.seconds += time.perf_counter() - started
        self.rows += len(x)
        return np.zeros((len(x), 0), np.float32)
