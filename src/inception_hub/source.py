"""One road from what a user names to what gets loaded: `resolve_source` turns a handle, short
name or SavedModel folder into a `Source` once, with every check that does not need the weights.
`load`, the CLI, the server and the Ray actors all start here, so they accept the same things
and refuse them with the same messages."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .catalog import ModelSpec, resolve
from .errors import CheckpointError, InputError, UnknownHandleError
from .labels import imagenet_labels
from .metadata import format_of, is_export, read_metadata, spec_of
from .weights import Weights, load_weights

TASKS = ("classify", "embed")


@dataclass(frozen=True)
class Source:
    """A resolved model: the published module it is (`spec`), where its weights are (the
    catalog's cache or `checkpoint`, or a SavedModel folder), and how to run it."""

    spec: ModelSpec
    name: str  # the handle, or the SavedModel folder
    labels: tuple[str, ...] | None
    image_size: tuple[int, int]
    checkpoint: str | None = None
    saved_model: str | None = None
    model_file: str | None = None  # an ONNX, OpenVINO or TFLite export's model
    backend: str = "tf"
    precision: str = "fp32"
    calibration: str | None = None  # the photos an int8 model is calibrated on (None: the bundled set)
    #: (precision, backend) as asked, where the backend or the precision ("fast") is left to be
    #: measured when the model is opened (`engine.settle`); None when both were given.
    request: tuple[str, str | None] | None = None

    def with_kind(self, kind: str) -> Source:
        """The same weights giving `kind` ("feature_vector": a classifier's pooled features)."""
        if kind == self.spec.kind:
            return self
        if kind == "feature_vector":
            return replace(self, spec=self.spec.with_kind(kind), labels=None)
        if self.exported is None:
            return replace(self, spec=self.spec.with_kind(kind), labels=imagenet_labels())
        raise InputError(f"{self.name} outputs feature vectors; it has no classification head")

    @property
    def exported(self) -> str | None:
        """The model file of an exported or fine-tuned folder (which holds its own weights)."""
        return self.saved_model or self.model_file

    def weights(self, *, progress: bool = True) -> Weights:
        """The validated weights of a catalog model (read from the cache or the checkpoint)."""
        if self.exported is not None:
            raise InputError(f"{self.name} is an exported model: its weights are inside it")
        return load_weights(self.spec.arch, self.checkpoint, progress=progress)

    def lazy_weights(self, *, progress: bool = True) -> Weights | LazyWeights:
        """The weights, read only when their values are needed (not when the engine model built
        from them is cached), where their digest is known without reading them; else read now."""
        from .engine.records import known_digest

        if self.exported is None and (digest := known_digest(self.spec.arch, self.checkpoint)) is not None:
            checkpoint = os.path.abspath(self.checkpoint) if self.checkpoint is not None else None
            return LazyWeights(digest, lambda: self.weights(progress=progress), checkpoint)
        return self.weights(progress=progress)

    def identity(self, weights: Weights | None = None) -> str:
        """Which model this is, for job manifests: the weights' digest (from the records where
        they are known, so without reading them), or the SavedModel's folder and modification time."""
        if self.saved_model is not None:
            return f"{self.saved_model}|{(Path(self.saved_model) / 'saved_model.pb').stat().st_mtime_ns}"
        if self.model_file is not None:
            return f"{self.model_file}|{Path(self.model_file).stat().st_mtime_ns}"
        return (weights if weights is not None else self.lazy_weights(progress=False)).digest


class LazyWeights(Mapping):
    """Weights known by their `digest` and read on first access to a value: an engine model
    cached for that digest runs without them. Reading checks that they still are those weights."""

    def __init__(self, digest: str, read: Callable[[], Weights], checkpoint: str | None = None) -> None:
        self.digest, self.checkpoint = digest, checkpoint
        self._read = read
        self._weights: Weights | None = None

    def read(self) -> Weights:
        if self._weights is None:
            weights = self._read()
            if weights.digest != self.digest:
                raise CheckpointError(
                    f"{self.checkpoint or 'the cached weights'} changed without changing name, size or time; "
                    "run `inception-hub cache --remove engines` and load again"
                )
            self._weights = weights
        return self._weights

    def __getitem__(self, name: str) -> np.ndarray:
        return self.read()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.read())

    def __len__(self) -> int:
        return len(self.read())


def resolve_source(
    handle: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    kind: str | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    task: str | None = None,
    calibration: str | os.PathLike | None = None,
) -> Source:
    """Resolve `handle` (a handle, its tfhub.dev URL, a short name, or a folder written by
    `export` or `finetune`) once. `kind="feature_vector"` asks for the pooled features of a
    classifier; `task` ("classify" or "embed") refuses a model that cannot do it. The backend is
    validated here, or the fastest exact one is chosen: as measured on this CPU, or the card's
    first until it is measured when the model is opened. `precision="fast"` picks the fastest of
    bf16 and int8 that the CPU runs natively the same way."""
    from .engine import FAST, plan

    if task is not None and task not in TASKS:
        raise InputError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if task == "embed":
        kind = "feature_vector"
    if calibration is not None and precision not in ("int8", FAST):
        raise InputError("a calibration folder applies to precision int8 only (or fast, which may run int8)")
    if _names_a_folder(handle):
        source = _export_source(os.fspath(handle), checkpoint, backend, precision)
    else:
        spec = resolve(os.fspath(handle))
        choice = plan(spec.arch, precision, backend)
        source = Source(
            spec,
            spec.handle,
            imagenet_labels() if spec.num_classes else None,
            spec.image_size,
            checkpoint=os.fspath(checkpoint) if checkpoint is not None else None,
            backend=choice.backend,
            precision=choice.precision,
            calibration=os.fspath(calibration) if calibration is not None else None,
            request=(precision, backend) if backend is None or precision == FAST else None,
        )
    if task == "classify" and not source.labels:
        raise InputError(
            f"{source.name} outputs feature vectors; use `inception-hub embed` for it, or a classification model"
        )
    return source.with_kind(kind) if kind else source


def _names_a_folder(handle: str | os.PathLike) -> bool:
    """Whether `handle` means an export folder. A string that is also a handle or short name
    (`inception_v1`) means the catalog's module even where a folder of that name sits in the
    working directory: write it as a path (`./inception_v1`) to mean the folder."""
    if not is_export(handle):
        return False
    if not isinstance(handle, str) or handle.startswith((".", "/", "~")) or os.path.isabs(handle):
        return True
    try:
        resolve(handle)
    except UnknownHandleError:
        return True
    return False


def _export_source(path: str, checkpoint, backend: str | None, precision: str) -> Source:
    if checkpoint is not None:
        raise InputError(f"{path} is an exported model with its own weights; drop the checkpoint argument")
    meta = read_metadata(path)
    fmt = format_of(meta)
    labels = tuple(meta["labels"]) if meta.get("labels") else None
    common = (spec_of(meta), path, labels, tuple(meta["default_image_size"]))
    if fmt is None:
        raise InputError(
            f"{path} holds a {meta.get('format')!r} model, which this version cannot run; upgrade inception-hub"
        )
    if fmt.saved_model:
        if backend not in (None, "tf") or precision != "fp32":
            raise InputError(f"{path} is a SavedModel: it runs on the tf backend in fp32")
        return Source(*common, saved_model=str(Path(path).resolve()))
    backends = fmt.backends
    if backends == ("tfjs",):
        raise InputError(
            f"{path} is a TF.js graph model: it runs in TF.js (a browser or Node: tf.loadGraphModel on its "
            "model.json), not in Python; export another format (onnx, saved_model, ...) for Python"
        )
    if backend not in (None, *backends):
        raise InputError(f"{path} is a {fmt.name} model: it runs on {' or '.join(backends)}, not {backend}")
    exported = meta.get("precision", "fp32")
    if precision == "fast":
        raise InputError(f"{path} was exported in {exported} and runs in it; precision fast is for catalog models")
    if precision not in ("fp32", exported):
        raise InputError(f"{path} was exported in {exported} and runs in it; export it again for {precision}")
    model_file = Path(path).resolve() / fmt.model_file
    if not model_file.is_file():
        raise InputError(f"{path} has no {fmt.model_file}; export the model again")
    backend = backend or backends[0]
    _require(backend)
    return Source(*common, model_file=str(model_file), backend=backend, precision=exported)


def _require(backend: str) -> None:
    import importlib.util

    if backend == "tflite":
        if importlib.util.find_spec("ai_edge_litert") is None and importlib.util.find_spec("tensorflow") is None:
            raise InputError("a TFLite model needs LiteRT: pip install 'inception-hub[tflite]'")
    elif importlib.util.find_spec(backend) is None:
        raise InputError(f"backend {backend} is not installed: pip install 'inception-hub[engine]'")
