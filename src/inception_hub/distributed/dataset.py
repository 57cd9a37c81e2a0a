"""The streaming Ray Data pipeline: blocks of image paths (or a dataset of paths and bytes) ->
a pool of actors that each load the model once, then decode and run batch after batch -> rows.
Ray Data's backpressure keeps a bounded number of blocks in flight, so memory does not grow with
the number of images. The weights are read once, by the driver, and reach every actor through
the object store: workers need the package, not the checkpoint."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..catalog import CENTRAL_FRACTION
from ..errors import InputError
from ..source import TASKS, Source, resolve_source
from .cluster import connect, ray_module

if TYPE_CHECKING:
    import ray.data

DEFAULT_BATCH_SIZE = 32
#: CPUs (engine and decoding threads) per model actor, unless nodes are smaller.
DEFAULT_CPUS_PER_WORKER = 4
#: Paths per input block: how finely the work is spread over the actors.
BLOCK_ROWS = 128


# The model, as the actors receive it -----------------------------------------------------------


def task_source(
    task: str,
    handle: str | os.PathLike | Source,
    checkpoint: str | os.PathLike | None = None,
    *,
    backend: str | None = None,
    precision: str = "fp32",
    calibration: str | os.PathLike | None = None,
) -> Source:
    """The model for `task`, resolved once: a handle, short name or exported folder with its
    settings, or a `Source` already resolved (`resolve_source`), which carries its own."""
    if not isinstance(handle, Source):
        return resolve_source(
            handle, checkpoint, backend=backend, precision=precision, task=task, calibration=calibration
        )
    if (checkpoint, backend, precision, calibration) != (None, None, "fp32", None):
        raise InputError(
            f"{handle.name} is resolved already: it carries its checkpoint, backend, precision and calibration"
        )
    if task not in TASKS:
        raise InputError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
    if task == "classify" and not handle.labels:
        raise InputError(
            f"{handle.name} outputs feature vectors; embed with it, or classify with a classification model"
        )
    return handle.with_kind("feature_vector") if task == "embed" else handle


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """A resolved model and its weights (by object reference once shared); a SavedModel folder
    travels by path and must exist on every node."""

    source: Source
    weights: tuple = ()  # (Weights,) here; (ObjectRef,) once shared, nested so Ray passes the reference
    identity: str = ""

    @classmethod
    def prepare(
        cls,
        task: str,
        handle: str | os.PathLike | Source,
        checkpoint: str | os.PathLike | None = None,
        *,
        backend: str | None = None,
        precision: str = "fp32",
        calibration: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> ModelSource:
        """Resolve the handle (see `task_source`) and read and check the weights, once, in this
        process (and quantize an int8 model here, once, into the cache the local actors share)."""
        source = task_source(task, handle, checkpoint, backend=backend, precision=precision, calibration=calibration)
        if source.exported is not None:
            return cls(source, (), source.identity())
        weights = source.weights(progress=progress)
        if source.precision == "int8":
            from ..engine.onnx import int8_path

            int8_path(source.spec, weights, source.calibration)
        return cls(source, (weights,), weights.digest)

    def shared(self) -> ModelSource:
        """This source with its weights in the object store, for the actors to fetch."""
        if not self.weights or isinstance(self.weights[0], ray_module().ObjectRef):
            return self
        return dataclasses.replace(self, weights=(ray_module().put(self.weights[0]),))

    def load(self, threads: int | None = None):
        """Build the module (in the actor)."""
        from ..module import open_source

        if self.source.saved_model is not None and threads:
            import tensorflow as tf

            # RuntimeError: TF already ran something in this process; it keeps its pool.
            with contextlib.suppress(RuntimeError):
                tf.config.threading.set_intra_op_parallelism_threads(threads)
        if self.source.exported is not None:
            return open_source(self.source, threads=threads)
        weights = self.weights[0]
        if isinstance(weights, ray_module().ObjectRef):
            weights = ray_module().get(weights)
        return open_source(self.source, weights, threads=threads)


# The actor --------------------------------------------------------------------------------------


class _Predictor:
    """A Ray Data actor: loads the module once, then turns batches of paths (or `bytes`) into
    output rows. Decoding happens here too, on the actor's threads: a separate task stage would
    need CPUs of its own, and with actors holding every CPU it would never be scheduled."""

    def __init__(
        self, source: ModelSource, task: str, top_k: int, threads: int, central_fraction: float | None
    ) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.module = source.load(threads)
        self.task = task
        self.top_k = top_k
        self.central_fraction = central_fraction
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        from ..batch import decode, run_batch
        from ..outputs import error_column, feature_column, top_k_columns

        size = self.module.expected_image_size
        sources = [s if isinstance(s, bytes) else str(s) for s in batch.get("bytes", batch["path"])]
        decoded = list(self.pool.map(lambda s: decode(s, size, central_fraction=self.central_fraction), sources))
        outputs, ok = run_batch(self.module, decoded)
        columns = {k: _arrow(v) for k, v in batch.items() if k != "bytes"}
        if self.task == "embed":
            columns["features"] = feature_column(outputs, ok, self.module.output_dim)
        else:
            columns.update(top_k_columns(outputs, ok, self.top_k, self.module.labels))
        columns["error"] = error_column([None if good else d for d, good in zip(decoded, ok, strict=True)])
        return pa.table(columns)


def _arrow(values: np.ndarray) -> pa.Array:
    return pa.array(list(values)) if values.dtype == object else pa.array(values)


# The public pipeline --------------------------------------------------------------------------


def embed(
    paths_or_dataset: Iterable[str | os.PathLike] | ray.data.Dataset,
    handle: str | os.PathLike = "inception_v1/feature_vector",
    **options: Any,
) -> ray.data.Dataset:
    """Feature vectors for images, as a lazy Ray Dataset with columns `path`, `features` (null
    where the image could not be read) and `error` (why; null otherwise).

    `paths_or_dataset`: files, folders or globs, or a Ray Dataset with a `path` column and
    optionally `bytes` (e.g. `ray.data.read_binary_files(uri, include_paths=True)`, for storage the
    workers cannot open by path); its other columns pass through. A classification handle gives
    its pooled features. Options: see `pipeline`."""
    return pipeline("embed", paths_or_dataset, handle, **options)


def classify(
    paths_or_dataset: Iterable[str | os.PathLike] | ray.data.Dataset,
    handle: str | os.PathLike = "inception_v1",
    *,
    top_k: int = 5,
    **options: Any,
) -> ray.data.Dataset:
    """Top-k classes for images, as a lazy Ray Dataset with columns `path`, `labels`, `indices`,
    `scores` (softmax probabilities; null where the image could not be read) and `error`."""
    return pipeline("classify", paths_or_dataset, handle, top_k=top_k, **options)


def pipeline(
    task: str,
    paths_or_dataset: Iterable[str | os.PathLike] | ray.data.Dataset,
    handle: str | os.PathLike | Source | ModelSource,
    *,
    checkpoint: str | os.PathLike | None = None,
    top_k: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int | tuple[int, int] | None = None,
    cpus_per_worker: float | None = None,
    threads_per_worker: int | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    calibration: str | os.PathLike | None = None,
    central_fraction: float | None = CENTRAL_FRACTION,
    address: str | None = None,
    progress: bool = True,
) -> ray.data.Dataset:
    """The streaming Ray Data pipeline behind `embed` and `classify`. `handle`: a handle, short
    name or exported folder, or a `Source` or `ModelSource` already resolved.

    num_workers: model actors, a number or a (min, max) range to autoscale in (default: as many as
    the cluster's CPUs allow, all started at once). cpus_per_worker: Ray CPUs each actor reserves
    (default: 4, or a whole node if nodes are smaller). threads_per_worker: the engine's and the
    decoder's threads in each actor (default: cpus_per_worker, rounded up). address: see
    `connect`; a local cluster is started if none is attached."""
    if top_k < 1:
        raise InputError(f"top_k must be at least 1, got {top_k}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    connect(address)
    ray = ray_module()
    source = (
        handle
        if isinstance(handle, ModelSource)
        else ModelSource.prepare(
            task, handle, checkpoint, backend=backend, precision=precision, calibration=calibration, progress=progress
        )
    ).shared()
    ours = not isinstance(paths_or_dataset, ray.data.Dataset) or "bytes" not in paths_or_dataset.schema().names
    ds = _as_dataset(paths_or_dataset)
    if cpus_per_worker is None:
        # A few threads per actor: one model copy per core would cost memory, and one actor per
        # big node would scale poorly across cores. Never more than a node has, or it never starts.
        node_cpus = [n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")]
        cpus_per_worker = max(1, min(DEFAULT_CPUS_PER_WORKER, int(max(node_cpus, default=1))))
    if num_workers is None:
        # Actors may take every CPU; a dataset that reads files first keeps one for its read tasks.
        cpus = ray.cluster_resources().get("CPU", 1) - (0 if ours else 1)
        num_workers = (1, max(1, int(cpus // cpus_per_worker)))
    lo, hi = (num_workers, num_workers) if isinstance(num_workers, int) else num_workers
    threads = threads_per_worker or max(1, int(np.ceil(cpus_per_worker)))
    return ds.map_batches(
        _Predictor,
        batch_format="numpy",
        batch_size=batch_size,
        fn_constructor_kwargs={
            "source": source,
            "task": task,
            "top_k": top_k,
            "threads": threads,
            "central_fraction": central_fraction,
        },
        # A batch job wants every actor from the start; the pool may shrink when work runs out.
        compute=ray.data.ActorPoolStrategy(min_size=lo, max_size=hi, initial_size=hi),
        num_cpus=cpus_per_worker,
    )


def _as_dataset(paths_or_dataset: Any) -> ray.data.Dataset:
    ray = ray_module()
    if isinstance(paths_or_dataset, ray.data.Dataset):
        names = paths_or_dataset.schema().names
        if "path" not in names:
            raise InputError(f"the dataset needs a 'path' column (and optionally 'bytes'); it has {names}")
        return paths_or_dataset
    if isinstance(paths_or_dataset, (str, os.PathLike)):
        paths_or_dataset = [paths_or_dataset]
    from ..files import find_images

    paths, unmatched = find_images(paths_or_dataset)
    paths += unmatched  # each becomes an error row ("no such file")
    if not paths:
        raise InputError("no images to process")
    return blocks({"path": pa.array(paths, pa.string())})


def blocks(columns: Mapping[str, pa.Array]) -> ray.data.Dataset:
    """A dataset of these columns in blocks of BLOCK_ROWS rows."""
    table = pa.table(dict(columns))
    slices = [table.slice(i, BLOCK_ROWS) for i in range(0, len(table), BLOCK_ROWS)]
    return ray_module().data.from_arrow(slices)
