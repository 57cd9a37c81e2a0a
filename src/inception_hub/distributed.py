"""Classify and embed image collections on a Ray cluster, with Ray Data.

The pipeline streams: blocks of image paths (or a dataset of paths and bytes) -> a pool of Ray
actors that each load the model once, then decode, preprocess and run batch after batch -> rows.
Ray Data's backpressure keeps a bounded number of blocks in flight, so memory does not grow with
the number of images. The weights are read once, by the driver, and reach every actor
through the object store: workers need the package, not the checkpoint.

`run_job` writes the rows as partitioned Parquet. Partition i holds input paths
`[i * P, (i + 1) * P)` of a fixed order and is written once, atomically, as `part-{i:05d}.parquet`;
`_manifest.json` records what the job is. A re-run with `resume=True` checks that the manifest
describes the same job and skips the partitions already on disk, so an interrupted job finishes
with every path exactly once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from .atomic import atomic_file
from .catalog import ModelSpec, resolve
from .errors import ImageDecodeError, InceptionHubError, InputError
from .quiet import silenced_stderr

if TYPE_CHECKING:
    import ray.data

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
TASKS = ("embed", "classify")
#: Images per output file: the unit of resuming. ~4 MB of Parquet for 1024-float features.
DEFAULT_PARTITION_SIZE = 1000
DEFAULT_BATCH_SIZE = 32
#: CPUs (engine and decoding threads) per model actor, unless nodes are smaller.
DEFAULT_CPUS_PER_WORKER = 4
#: Paths per input block: how finely the work is spread over the actors.
BLOCK_ROWS = 128
_FORMAT_VERSION = 1


def _ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as e:
        raise InceptionHubError("the ray engine needs Ray Data: pip install 'inception-hub[distributed]'") from e
    return ray


def connect(address: str | None = None, *, num_cpus: int | None = None, quiet: bool = False) -> bool:
    """Attach this process to a Ray cluster, unless it already is.

    `address`: None (with `RAY_ADDRESS` unset) starts a local cluster for this process;
    "auto" joins the cluster this machine belongs to (`ray start`); "HOST:PORT" joins that one.
    `quiet` keeps workers' logs off this process's stderr.
    Returns True when this call attached (the caller then owns the `ray.shutdown()`)."""
    ray = _ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or "local"
    level = logging.ERROR if quiet else logging.WARNING
    kwargs: dict[str, Any] = {"logging_level": level, "log_to_driver": not quiet}
    if quiet:
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(level)
    if address == "local":
        kwargs.update(num_cpus=num_cpus, include_dashboard=False)
        # Local workers see this process's settings (cache folder, offline mode).
        env = {k: v for k, v in os.environ.items() if k.startswith("INCEPTION_HUB_")}
        kwargs["runtime_env"] = {"env_vars": env} if env else None
    else:
        if num_cpus is not None:
            raise InputError("num_cpus applies to a local cluster only; an existing cluster has its own")
        _check_reachable(address)
    try:
        # Quiet: Ray's services log to files in its session folder; its C++ start-up notes are
        # not for CLI users.
        with silenced_stderr() if quiet else contextlib.nullcontext():
            ray.init(address=address, **kwargs)
    except (ConnectionError, TimeoutError, RuntimeError) as e:
        raise InceptionHubError(
            f"cannot reach a Ray cluster at {address}: {e}. Start one with `ray start --head` "
            "and pass the address it prints, or leave --address out to run on a local cluster"
        ) from e
    if quiet:
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(level)
        ray.data.DataContext.get_current().enable_progress_bars = False
    return True


def _check_reachable(address: str) -> None:
    """Fail in seconds on a wrong HOST:PORT; Ray itself would keep retrying for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not sep or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as e:
        raise InceptionHubError(
            f"cannot reach a Ray cluster at {address}: {e.strerror or e}. Start one with `ray start --head` "
            "and pass the address it prints, or leave --address out to run on a local cluster"
        ) from e


# The model, as the actors receive it -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """What an actor needs to build the module: a spec and the weights (by object reference), or
    the path of a SavedModel written by `export` or `finetune` (which must exist on every node)."""

    spec: ModelSpec | None = None
    weights: tuple = ()  # (dict,) here; (ObjectRef,) once shared, nested so Ray passes the reference
    backend: str = "tf"
    precision: str = "fp32"
    saved_model: str | None = None
    kind: str | None = None
    identity: str = ""

    @classmethod
    def prepare(
        cls,
        task: str,
        handle: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        *,
        backend: str | None = None,
        precision: str = "fp32",
        progress: bool = True,
    ) -> ModelSource:
        """Resolve the handle and read and check the weights, once, in this process."""
        from .engine import choose_backend
        from .module import is_saved_model
        from .weights import digest, load_weights

        if task not in TASKS:
            raise InputError(f"unknown task {task!r}; use one of {', '.join(TASKS)}")
        kind = "feature_vector" if task == "embed" else None
        if is_saved_model(handle):
            from .export import read_metadata

            if checkpoint is not None:
                raise InputError(f"{handle} is a saved module with its own weights; drop the checkpoint argument")
            if backend not in (None, "tf") or precision != "fp32":
                raise InputError(f"{handle} is a SavedModel: it runs on the tf backend in fp32")
            meta = read_metadata(handle)
            if task == "classify" and not meta.get("labels") and meta["kind"] != "classification":
                raise InputError(f"{handle} outputs feature vectors; embed with it, or use a classification model")
            path = str(Path(handle).resolve())
            stat = (Path(path) / "saved_model.pb").stat()
            return cls(saved_model=path, kind=kind, identity=f"{path}|{stat.st_mtime_ns}")
        spec = resolve(os.fspath(handle))
        if task == "classify" and spec.kind != "classification":
            raise InputError(f"{spec.handle} outputs feature vectors; embed with it, or use a classification model")
        if kind and spec.kind != kind:
            spec = dataclasses.replace(spec, kind=kind)
        backend = choose_backend(backend, precision, spec.arch)
        weights = load_weights(spec.arch, checkpoint, progress=progress)
        return cls(
            spec=spec,
            weights=(dict(weights),),
            backend=backend,
            precision=precision,
            identity=digest(weights),
        )

    def shared(self) -> ModelSource:
        """This source with its weights in the object store, for the actors to fetch."""
        if not self.weights or not isinstance(self.weights[0], dict):
            return self
        return dataclasses.replace(self, weights=(_ray().put(self.weights[0]),))

    def load(self, threads: int | None = None):
        """Build the module (in the actor)."""
        from .module import Module

        if self.saved_model is not None:
            if threads:
                import tensorflow as tf

                # RuntimeError: TF already ran something in this process; it keeps its pool.
                with contextlib.suppress(RuntimeError):
                    tf.config.threading.set_intra_op_parallelism_threads(threads)
            return Module.from_saved_model(self.saved_model, self.kind)
        weights = self.weights[0]
        if not isinstance(weights, dict):
            import ray

            weights = ray.get(weights)
        return Module.from_weights(self.spec, weights, self.backend, self.precision, threads=threads)

    def image_size(self) -> tuple[int, int]:
        if self.saved_model is not None:
            from .export import read_metadata

            return tuple(read_metadata(self.saved_model)["default_image_size"])
        return self.spec.image_size


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
        self.size = source.image_size()
        self.task = task
        self.top_k = top_k
        self.central_fraction = central_fraction
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="decode")

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        sources = batch.get("bytes", batch["path"])
        decoded = list(self.pool.map(self._decode, sources))
        ok = np.array([isinstance(d, np.ndarray) for d in decoded], dtype=bool)
        if ok.any():
            outputs = self.module(np.stack([d for d in decoded if isinstance(d, np.ndarray)]))
        else:
            outputs = np.zeros((0, self.module.output_dim), np.float32)
        columns = {k: _arrow(v) for k, v in batch.items() if k != "bytes"}
        if self.task == "embed":
            columns["features"] = _fixed_lists(outputs, ok, self.module.output_dim)
        else:
            columns.update(_top_k(outputs, ok, self.top_k, self.module.labels))
        columns["error"] = pa.array([None if good else d for d, good in zip(decoded, ok, strict=True)], pa.string())
        return pa.table(columns)

    def _decode(self, source: Any) -> np.ndarray | str:
        """The module input, or why the image cannot be read."""
        from .images import load_image

        try:
            return load_image(
                source if isinstance(source, bytes) else str(source), self.size, central_fraction=self.central_fraction
            )
        except ImageDecodeError as e:
            return e.reason
        except Exception as e:  # one odd file never fails the job
            return f"{type(e).__name__}: {e}"


def _arrow(values: np.ndarray) -> pa.Array:
    return pa.array(list(values)) if values.dtype == object else pa.array(values)


def _fixed_lists(rows: np.ndarray, ok: np.ndarray, dim: int) -> pa.Array:
    """[N, dim] float32 with a null row wherever `ok` is False."""
    full = np.zeros((len(ok), dim), np.float32)
    full[ok] = rows
    values = pa.array(full.reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=pa.array(~ok))


def _top_k(logits: np.ndarray, ok: np.ndarray, k: int, labels: tuple[str, ...]) -> dict[str, pa.Array]:
    from .labels import decode_predictions

    preds = iter(decode_predictions(logits, top=k, labels=labels) if len(logits) else [])
    cols: dict[str, list] = {"labels": [], "indices": [], "scores": []}
    for good in ok:
        row = next(preds) if good else None
        cols["labels"].append([p.label for p in row] if row else None)
        cols["indices"].append([p.index for p in row] if row else None)
        cols["scores"].append([p.score for p in row] if row else None)
    return {
        "labels": pa.array(cols["labels"], pa.list_(pa.string())),
        "indices": pa.array(cols["indices"], pa.list_(pa.int32())),
        "scores": pa.array(cols["scores"], pa.list_(pa.float32())),
    }


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
    handle: str | os.PathLike | ModelSource,
    *,
    checkpoint: str | os.PathLike | None = None,
    top_k: int = 5,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_workers: int | tuple[int, int] | None = None,
    cpus_per_worker: float | None = None,
    threads_per_worker: int | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    central_fraction: float | None = 0.875,
    address: str | None = None,
    progress: bool = True,
) -> ray.data.Dataset:
    """The streaming Ray Data pipeline behind `embed` and `classify`.

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
    ray = _ray()
    source = (
        handle
        if isinstance(handle, ModelSource)
        else ModelSource.prepare(task, handle, checkpoint, backend=backend, precision=precision, progress=progress)
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
    ray = _ray()
    if isinstance(paths_or_dataset, ray.data.Dataset):
        names = paths_or_dataset.schema().names
        if "path" not in names:
            raise InputError(f"the dataset needs a 'path' column (and optionally 'bytes'); it has {names}")
        return paths_or_dataset
    if isinstance(paths_or_dataset, (str, os.PathLike)):
        paths_or_dataset = [paths_or_dataset]
    from .pipeline import find_images

    paths, unmatched = find_images(paths_or_dataset)
    paths += unmatched  # each becomes an error row ("no such file")
    if not paths:
        raise InputError("no images to process")
    return _blocks({"path": pa.array(paths, pa.string())})


def _blocks(columns: Mapping[str, pa.Array]) -> ray.data.Dataset:
    table = pa.table(dict(columns))
    slices = [table.slice(i, BLOCK_ROWS) for i in range(0, len(table), BLOCK_ROWS)]
    return _ray().data.from_arrow(slices)


# The job: partitioned Parquet, resumable -------------------------------------------------------


@dataclasses.dataclass
class JobSummary:
    output: Path
    images: int
    errors: int
    partitions: int
    written: int
    skipped: int
    seconds: float
    processed: int = 0  # images in the partitions written by this run

    @property
    def images_per_second(self) -> float:
        return self.processed / self.seconds if self.seconds else 0.0


def partition_path(output: Path, index: int) -> Path:
    return output / f"part-{index:05d}.parquet"


def run_job(
    task: str,
    paths: Sequence[str],
    output: str | os.PathLike,
    handle: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    top_k: int = 5,
    resume: bool = False,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    on_error: Callable[[str, str], None] | None = None,
    progress: bool = True,
    address: str | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    **options: Any,
) -> JobSummary:
    """Run `task` ("embed" or "classify") over `paths` on Ray and write partitioned Parquet to
    `output`. Rows keep the input order within each partition. `on_error(path, reason)` is called
    for every image that could not be read (its row carries the reason). Other options: see
    `pipeline`."""
    start = time.monotonic()
    output = Path(output)
    if partition_size < 1:
        raise InputError(f"partition_size must be at least 1, got {partition_size}")
    if not paths:
        raise InputError("no images to process")
    partitions = [list(paths[i : i + partition_size]) for i in range(0, len(paths), partition_size)]
    job = {
        "format": _FORMAT_VERSION,
        "task": task,
        "model": os.fspath(handle),
        "top_k": top_k if task == "classify" else None,
        "precision": precision,
        "partition_size": partition_size,
        "images": len(paths),
        "partitions": len(partitions),
        "paths_sha256": hashlib.sha256("\n".join(paths).encode()).hexdigest(),
    }
    done, manifest = _check_output(output, job, resume)
    pending = [i for i in range(len(partitions)) if i not in done]
    summary = JobSummary(output, len(paths), 0, len(partitions), 0, len(done), 0.0)
    if pending:
        # Weights first: a missing checkpoint is reported before a cluster is started.
        source = ModelSource.prepare(
            task,
            handle,
            checkpoint,
            backend=backend,
            precision=precision,
            progress=progress,
        )
        if manifest is not None and manifest.get("weights") != source.identity:
            raise InceptionHubError(
                f"cannot resume into {output}: it was written with other weights for {job['model']}; "
                "pass the same --checkpoint, or write to a new folder"
            )
        attached = connect(address, quiet=True)
        try:
            if manifest is None:  # written once the job can really start
                with atomic_file(output / MANIFEST) as f:
                    f.write(json.dumps({**job, "weights": source.identity}, indent=1).encode())
            _execute(task, partitions, pending, output, source, top_k, on_error, progress, options)
        finally:
            if attached:
                _ray().shutdown()
        summary.written = len(pending)
        summary.processed = sum(len(partitions[i]) for i in pending)
    summary.seconds = time.monotonic() - start
    summary.errors = sum(_errors_in(partition_path(output, i)) for i in range(len(partitions)))
    if all(partition_path(output, i).is_file() for i in range(len(partitions))):
        with atomic_file(output / SUCCESS) as f:
            f.write(b"")
    return summary


def _errors_in(part: Path) -> int:
    if not part.is_file():
        return 0
    import pyarrow.parquet as pq

    column = pq.read_table(part, columns=["error"])["error"]
    return len(column) - column.null_count


def _check_output(output: Path, job: dict, resume: bool) -> tuple[set[int], dict | None]:
    """The partitions already written and the manifest (resume), after checking they belong to
    this job; or nothing, for a new job into a new or empty folder."""
    manifest = output / MANIFEST
    if manifest.is_file():
        if not resume:
            raise InceptionHubError(
                f"{output} holds the output of an earlier job; pass --resume to finish it, or choose a new folder"
            )
        before = json.loads(manifest.read_text())
        changed = [k for k in job if before.get(k) != job[k]]
        if changed:
            detail = ", ".join(f"{k}: {before.get(k)!r} then, {job[k]!r} now" for k in changed)
            raise InceptionHubError(
                f"cannot resume into {output}: the job differs from the one that wrote it ({detail}); "
                "write to a new folder instead"
            )
        return {i for i in range(job["partitions"]) if partition_path(output, i).is_file()}, before
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InceptionHubError(f"{output} exists and is not an empty folder; choose a new folder for the output")
    return set(), None


def _execute(
    task: str,
    partitions: list[list[str]],
    pending: list[int],
    output: Path,
    source: ModelSource,
    top_k: int,
    on_error: Callable[[str, str], None] | None,
    progress: bool,
    options: dict[str, Any],
) -> None:
    """Stream the pending partitions through the pipeline; write each one as soon as all its rows
    are back. Only rows of partitions still in flight are held here."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from tqdm.auto import tqdm

    paths = [p for i in pending for p in partitions[i]]
    part_ids = [i for i in pending for _ in partitions[i]]
    offsets = [j for i in pending for j in range(len(partitions[i]))]
    ds = _blocks(
        {
            "path": pa.array(paths, pa.string()),
            "partition": pa.array(part_ids, pa.int32()),
            "row": pa.array(offsets, pa.int32()),
        }
    )
    ds = pipeline(task, ds, source, top_k=top_k, **options)
    held: dict[int, list[pa.Table]] = {}
    seen: dict[int, set[int]] = {}  # row offsets received, per partition in flight
    finished: set[int] = set()
    bar = tqdm(total=len(paths), unit="img", disable=not progress or None, leave=False)
    with bar:
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for pid in pc.unique(batch["partition"]).to_pylist():
                if pid in finished:
                    continue
                rows = batch.filter(pc.equal(batch["partition"], pid))
                # A retried task may deliver rows twice: keep the first copy of each.
                got = seen.setdefault(pid, set())
                offsets = rows["row"].to_pylist()
                fresh = [i for i, r in enumerate(offsets) if not (r in got or got.add(r))]
                if len(fresh) < len(offsets):
                    rows = rows.take(fresh)
                _report(rows, on_error)
                bar.update(rows.num_rows)
                held.setdefault(pid, []).append(rows)
                if len(got) == len(partitions[pid]):
                    table = pa.concat_tables(held.pop(pid)).sort_by("row").drop_columns(["partition", "row"])
                    with atomic_file(partition_path(output, pid)) as f:
                        pq.write_table(table, f)
                    finished.add(pid)
                    del seen[pid]
    if held:  # Ray lost rows, which it should never do: say so rather than leave a gap unnoticed
        raise InceptionHubError(f"the pipeline returned incomplete partitions {sorted(held)}; rerun with --resume")


def _report(rows: pa.Table, on_error: Callable[[str, str], None] | None) -> None:
    if on_error is None or rows["error"].null_count == rows.num_rows:
        return
    import pyarrow.compute as pc

    failed = rows.filter(pc.is_valid(rows["error"]))
    for path, reason in zip(failed["path"].to_pylist(), failed["error"].to_pylist(), strict=True):
        on_error(path, reason)


def read_output(output: str | os.PathLike) -> pa.Table:
    """Every partition of a job's output as one table, in input order."""
    import pyarrow.parquet as pq

    output = Path(output)
    parts = sorted(output.glob("part-*.parquet"))
    if not parts:
        raise InceptionHubError(f"no partitions in {output}")
    return pa.concat_tables(pq.read_table(p) for p in parts)
