"""`run_job`: a Ray Data run written as partitioned Parquet, resumable.

Partition i holds input paths `[i * P, (i + 1) * P)` of a fixed order and is written once,
atomically, as `part-{i:05d}.parquet`; `_manifest.json` records what the job is. A re-run with
`resume=True` checks that the manifest describes the same job and skips the partitions already on
disk, so an interrupted job finishes with every path exactly once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..atomic import atomic_file
from ..errors import InceptionHubError, InputError
from ..source import Source, resolve_source
from .cluster import connect, ray_module, reap_orphans
from .dataset import ModelSource, blocks, pipeline, task_source

MANIFEST = "_manifest.json"
SUCCESS = "_SUCCESS"
#: Images per output file: the unit of resuming. ~4 MB of Parquet for 1024-float features.
DEFAULT_PARTITION_SIZE = 1000
_FORMAT_VERSION = 1


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
    handle: str | os.PathLike | Source,
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
    calibration: str | os.PathLike | None = None,
    **options: Any,
) -> JobSummary:
    """Run `task` ("embed" or "classify") over `paths` on Ray and write partitioned Parquet to
    `output`. `handle`: a handle, short name or exported folder (with `checkpoint`, `backend`,
    `precision`, `calibration`), or a `Source` resolved already, which carries them. Rows keep the
    input order within each partition. `on_error(path, reason)` is called for every image that
    could not be read (its row carries the reason). Other options: see `pipeline`."""
    start = time.monotonic()
    reap_orphans()  # every run, even one with nothing left to do, cleans up after killed ones
    output = Path(output)
    if partition_size < 1:
        raise InputError(f"partition_size must be at least 1, got {partition_size}")
    if not paths:
        raise InputError("no images to process")
    partitions = [list(paths[i : i + partition_size]) for i in range(0, len(paths), partition_size)]
    source = task_source(task, handle, checkpoint, backend=backend, precision=precision, calibration=calibration)
    job = {
        "format": _FORMAT_VERSION,
        "task": task,
        "model": source.name,
        "top_k": top_k if task == "classify" else None,
        "precision": source.precision,
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
        prepared = ModelSource.prepare(task, source, progress=progress)
        if manifest is not None and manifest.get("weights") != prepared.identity:
            raise InceptionHubError(
                f"cannot resume into {output}: it was written with other weights for {job['model']}; "
                "pass the same --checkpoint, or write to a new folder"
            )
        attached = connect(address, quiet=True)
        try:
            if manifest is None:  # written once the job can really start
                with atomic_file(output / MANIFEST) as f:
                    f.write(json.dumps({**job, "weights": prepared.identity}, indent=1).encode())
            _execute(task, partitions, pending, output, prepared, top_k, on_error, progress, options)
        finally:
            if attached:
                ray_module().shutdown()
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
        changed = [k for k in job if not _same(k, before.get(k), job[k])]
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


def _same(key: str, then: Any, now: Any) -> bool:
    """Whether a manifest's setting is this job's. Manifests of earlier versions name the model
    as it was typed (a short name): the same model when it resolves to the same handle."""
    if then == now:
        return True
    if key != "model" or not isinstance(then, str):
        return False
    try:
        return resolve_source(then).name == now
    except InceptionHubError:
        return False


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
    ds = blocks(
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
