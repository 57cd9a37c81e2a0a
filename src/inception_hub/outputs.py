"""Where results go: the classify formats (table, JSON, CSV), feature files (.npy, .npz,
.parquet) and the Arrow columns of Parquet outputs, in one place for the CLI and Ray jobs."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from .atomic import atomic_file
from .errors import InceptionHubError
from .labels import Prediction, decode_predictions

if TYPE_CHECKING:
    import pyarrow as pa

FEATURE_SUFFIXES = (".npy", ".npz", ".parquet")
CLASSIFY_FORMATS = ("table", "json", "csv")


# Classification results ------------------------------------------------------------------------


class ClassifyWriter:
    """Streams top-k predictions to a text stream as a table, a JSON array or CSV rows."""

    def __init__(self, out: TextIO, fmt: str = "table") -> None:
        if fmt not in CLASSIFY_FORMATS:
            raise InceptionHubError(f"unknown format {fmt!r}; use one of {', '.join(CLASSIFY_FORMATS)}")
        self.out, self.fmt, self.rows = out, fmt, 0
        self.csv = csv.writer(out) if fmt == "csv" else None
        if self.csv:
            self.csv.writerow(["path", "rank", "index", "label", "score"])
        elif fmt == "json":
            out.write("[")

    def write(self, path: str, predictions: list[Prediction] | None, error: str | None = None) -> None:
        if self.fmt == "json":
            row = {"path": path, "error": error} if error else {"path": path}
            if not error:
                row["predictions"] = [p._asdict() for p in predictions or []]
            self.out.write(("\n " if self.rows == 0 else ",\n ") + json.dumps(row))
        elif self.csv:
            for rank, p in enumerate(predictions or [], 1):
                self.csv.writerow([path, rank, p.index, p.label, f"{p.score:.6f}"])
        elif predictions:
            self.out.write(f"{path}\n")
            for rank, p in enumerate(predictions, 1):
                self.out.write(f"  {rank}. {p.label:<30} {p.score:8.4f}  (class {p.index})\n")
        self.rows += 1
        self.out.flush()

    def close(self) -> None:
        if self.fmt == "json":
            self.out.write("\n]\n")
            self.out.flush()


# Feature files ---------------------------------------------------------------------------------


def check_features_path(output: str | Path) -> Path:
    output = Path(output)
    if output.suffix.lower() not in FEATURE_SUFFIXES:
        raise InceptionHubError(f"unsupported output {output}: use a .npy, .npz or .parquet file name")
    return output


def write_features(output: str | Path, paths: list[str], features: np.ndarray, model: dict | None = None) -> None:
    """Write atomically. `.npy` holds the matrix and `<name>.paths.txt` beside it the row paths;
    `.npz` holds arrays `paths` and `features`; `.parquet` has columns `path` and `features`.
    `model` (what `search.model_identity` records) goes into `.npz` and `.parquet` files, so an
    index built from them knows which model and weights made the vectors."""
    output = check_features_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    record = json.dumps(model) if model else None
    if suffix == ".npy":
        with atomic_file(output) as f:
            np.save(f, features)
        with atomic_file(output.with_suffix(".paths.txt")) as f:
            f.write("".join(p + "\n" for p in paths).encode())
    elif suffix == ".npz":
        extra = {"model": np.array(record)} if record else {}
        with atomic_file(output) as f:
            np.savez(f, paths=np.array(paths, dtype=str), features=features, **extra)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ok = np.ones(len(paths), dtype=bool)
        table = pa.table({"path": pa.array(paths, pa.string()), "features": feature_column(features, ok)})
        if record:
            table = table.replace_schema_metadata({MODEL_KEY: record})
        with atomic_file(output) as f:
            pq.write_table(table, f)


#: Where a Parquet feature file keeps its model record (schema metadata).
MODEL_KEY = "inception_hub.model"
#: Rows per batch when reading feature files back.
READ_ROWS = 8192


def read_features(path: str | Path) -> tuple[dict | None, Iterator[tuple[list[str], np.ndarray]]]:
    """An `embed` output read back: its model record, and its rows in batches of (paths,
    float32 [n, dim]). Takes `.npy` (+ `.paths.txt`), `.npz`, `.parquet` and the folder of a
    Ray embed job (its `_manifest.json` is the record; failed rows are left out). `.npy` files
    and files written before records were kept give None: the caller names the model."""
    path = Path(path)
    if path.is_dir():
        manifest = path / "_manifest.json"
        if not manifest.is_file():
            raise InceptionHubError(f"{path} is not the output of an embed job (it has no _manifest.json)")
        record = json.loads(manifest.read_text())
        if record.get("task") != "embed":
            raise InceptionHubError(f"{path} holds {record.get('task')} results, not feature vectors")
        return record, _parquet_rows(sorted(path.glob("part-*.parquet")))
    suffix = path.suffix.lower()
    if not path.is_file() or suffix not in FEATURE_SUFFIXES:
        raise InceptionHubError(
            f"{path} is not an embed output: give a .npy, .npz or .parquet file, or a Ray embed job's folder"
        )
    if suffix == ".npy":
        listing = path.with_suffix(".paths.txt")
        if not listing.is_file():
            raise InceptionHubError(f"{path} has no {listing.name} beside it: the rows' photos are unknown")
        paths = listing.read_text().splitlines()
        features = np.load(path, mmap_mode="r")
        return None, _chunks(paths, features)
    if suffix == ".npz":
        with np.load(path) as z:
            record = json.loads(str(z["model"])) if "model" in z.files else None
            return record, iter([(list(map(str, z["paths"])), np.asarray(z["features"], np.float32))])
    import pyarrow.parquet as pq

    meta = pq.read_schema(path).metadata or {}
    record = json.loads(meta[MODEL_KEY.encode()]) if MODEL_KEY.encode() in meta else None
    return record, _parquet_rows([path])


def _chunks(paths: list[str], features: np.ndarray) -> Iterator[tuple[list[str], np.ndarray]]:
    if len(paths) != len(features):
        raise InceptionHubError(f"{len(paths)} paths for {len(features)} feature vectors: the files do not match")
    for i in range(0, len(paths), READ_ROWS):
        yield paths[i : i + READ_ROWS], np.asarray(features[i : i + READ_ROWS], np.float32)


def _parquet_rows(files: list[Path]) -> Iterator[tuple[list[str], np.ndarray]]:
    import pyarrow.parquet as pq

    for file in files:
        for batch in pq.ParquetFile(file).iter_batches(READ_ROWS, columns=["path", "features"]):
            rows = batch.filter(batch.column("features").is_valid())
            if rows.num_rows:
                column = rows.column("features")
                flat = column.flatten().to_numpy(zero_copy_only=False)
                yield rows.column("path").to_pylist(), flat.reshape(rows.num_rows, -1).astype(np.float32)


# Arrow columns ---------------------------------------------------------------------------------


def feature_column(rows: np.ndarray, ok: np.ndarray, dim: int | None = None) -> pa.Array:
    """`[N, dim]` float32 rows as a fixed-size-list column, with a null row wherever `ok` is
    False (`rows` holds only the rows where it is True)."""
    import pyarrow as pa

    dim = dim if dim is not None else rows.shape[1]
    full = np.zeros((len(ok), dim), np.float32)
    full[ok] = rows
    values = pa.array(full.reshape(-1), pa.float32())
    return pa.FixedSizeListArray.from_arrays(values, dim, mask=None if ok.all() else pa.array(~ok))


def top_k_columns(logits: np.ndarray, ok: np.ndarray, k: int, labels: tuple[str, ...]) -> dict[str, pa.Array]:
    """`labels`, `indices` and `scores` list columns of the top-k classes, null where not `ok`."""
    import pyarrow as pa

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


def error_column(errors: list[str | None]) -> pa.Array:
    import pyarrow as pa

    return pa.array(errors, pa.string())
