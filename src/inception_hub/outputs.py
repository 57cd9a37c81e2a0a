"""Where results go: the classify formats (table, JSON, CSV), feature files (.npy, .npz,
.parquet) and the Arrow columns of Parquet outputs, in one place for the CLI and Ray jobs."""

from __future__ import annotations

import csv
import json
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


def write_features(output: str | Path, paths: list[str], features: np.ndarray) -> None:
    """Write atomically. `.npy` holds the matrix and `<name>.paths.txt` beside it the row paths;
    `.npz` holds arrays `paths` and `features`; `.parquet` has columns `path` and `features`."""
    output = check_features_path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    if suffix == ".npy":
        with atomic_file(output) as f:
            np.save(f, features)
        with atomic_file(output.with_suffix(".paths.txt")) as f:
            f.write("".join(p + "\n" for p in paths).encode())
    elif suffix == ".npz":
        with atomic_file(output) as f:
            np.savez(f, paths=np.array(paths, dtype=str), features=features)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ok = np.ones(len(paths), dtype=bool)
        table = pa.table({"path": pa.array(paths, pa.string()), "features": feature_column(features, ok)})
        with atomic_file(output) as f:
            pq.write_table(table, f)


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
