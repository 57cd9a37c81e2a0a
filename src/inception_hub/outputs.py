"""Where results go: the classify formats (table, JSON, CSV), feature files (.npy, .npz,
.parquet) and the Arrow columns of Parquet outputs, in one place for the CLI and Ray jobs; and
`check_destination`, which every command that writes asks first, so that nothing a user names
is written over unless it is an output of ours."""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import numpy as np

from .atomic import atomic_file
from .errors import InceptionHubError, InputError
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


# Destinations ----------------------------------------------------------------------------------


def check_destination(
    path: str | os.PathLike,
    what: str,
    *,
    suffixes: Iterable[str] = (),
    folder: bool = False,
    ours: Callable[[Path], bool] | None = None,
) -> Path:
    """`path`, once it is safe to write `what` there; asked before any work is done.

    Refused: a name without one of `suffixes` (`-o vacation.jpg` for a report), and anything that
    already exists (a link, a file, a folder that is not empty) unless `ours(path)` recognises it
    as `what` written by this package (None: nothing is ever replaced). A refusal leaves the path
    as it is, and says so."""
    path = Path(path)
    suffixes = tuple(suffixes)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(f"{path} is not a name for {what}: use a {' or '.join(suffixes)} file name")
    if not path.exists() and not path.is_symlink():
        return path
    real = not path.is_symlink() and (path.is_dir() if folder else path.is_file())
    if real and folder and not any(path.iterdir()):
        return path
    if real and ours is not None and ours(path):
        return path
    unless = "" if ours is None else f" and is not {what} written by inception-hub"
    raise InputError(f"{path} already exists{unless}; it is left as it is: choose another path")


def json_with_keys(keys: Iterable[str]) -> Callable[[Path], bool]:
    """Recognises a JSON report of ours: an object with every one of `keys`."""
    keys = frozenset(keys)

    def ours(path: Path) -> bool:
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(data, dict) and keys <= data.keys()

    return ours


def folder_of(ours_file: Callable[[Path], bool]) -> Callable[[Path], bool]:
    """Recognises a folder of outputs of ours: each entry a file `ours_file` recognises, or an
    atomic write's staging file (`.<name>.<random>.tmp`) left by a killed run."""

    def ours(path: Path) -> bool:
        return all(
            not p.is_symlink() and p.is_file() and (ours_file(p) or (p.name.startswith(".") and p.suffix == ".tmp"))
            for p in path.iterdir()
        )

    return ours


# Feature files ---------------------------------------------------------------------------------


def check_features_path(output: str | Path) -> Path:
    """`output`, once it is a feature file name whose files (`.npy`: with its `.paths.txt`) are
    new or an `embed` output of ours."""
    output = Path(output)
    if output.suffix.lower() not in FEATURE_SUFFIXES:
        raise InceptionHubError(f"unsupported output {output}: use a .npy, .npz or .parquet file name")
    what = "a feature file"
    check_destination(output, what, ours=lambda _: is_features(output))
    if output.suffix.lower() == ".npy":
        check_destination(
            output.with_suffix(".paths.txt"), f"{output.name}'s path list", ours=lambda _: is_features(output)
        )
    return output


def is_features(path: str | Path) -> bool:
    """Whether `path` is an `embed` output: `.npz` with the `model` array, `.parquet` with the
    model record, `.npy` (which has no room for one) with a `.paths.txt` of as many rows."""
    path = Path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            listing = path.with_suffix(".paths.txt")
            if not path.is_file() or listing.is_symlink() or not listing.is_file():
                return False
            rows = np.load(path, mmap_mode="r", allow_pickle=False)
            with listing.open("rb") as f:
                return rows.ndim == 2 and sum(1 for _ in f) == rows.shape[0]
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {"model", "paths", "features"} <= set(z.files)
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return MODEL_KEY.encode() in (pq.read_schema(path).metadata or {})
    except Exception:  # unreadable in any way: not a file of ours
        return False
    return False


#: Where a Parquet feature file keeps its model record (schema metadata).
MODEL_KEY = "inception_hub.model"


def _check_names(output: Path, suffix: str, paths: list[str]) -> None:
    """Refuse names a format cannot keep: a newline in `.paths.txt` (one name per line), bytes
    that are not UTF-8 in Parquet (text columns are UTF-8). `.npz` keeps any name."""
    for p in paths:
        if suffix == ".npy" and "\n" in p:
            raise InputError(f"{p!r} has a newline, which {output.name}'s path list cannot keep: write a .npz file")
        if suffix == ".parquet" and not p.isascii():
            try:
                p.encode("utf-8")
            except UnicodeEncodeError:
                raise InputError(f"{p!r} is not UTF-8, which Parquet text cannot keep: write a .npz file") from None


def write_features(output: str | Path, paths: list[str], features: np.ndarray, model: dict | None = None) -> None:
    """Write atomically. `.npy` holds the matrix and `<name>.paths.txt` beside it the row paths;
    `.npz` holds arrays `paths` and `features`; `.parquet` has columns `path` and `features`.
    `model` (what `search.model_identity` records) goes into `.npz` and `.parquet` files, so an
    index built from them knows which model and weights made the vectors."""
    output = check_features_path(output)
    suffix = output.suffix.lower()
    _check_names(output, suffix, paths)
    output.parent.mkdir(parents=True, exist_ok=True)
    record = json.dumps(model) if model else None
    if suffix == ".npy":
        with atomic_file(output) as f:
            np.save(f, features)
        with atomic_file(output.with_suffix(".paths.txt")) as f:
            f.write("".join(p + "\n" for p in paths).encode("utf-8", "surrogateescape"))  # the names' own bytes
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
