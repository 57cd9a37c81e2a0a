"""What `inception-hub embed` wrote, read back for `index --embeddings` without trusting it.

Nothing is read before its size is known and bounded: an `.npy` file's header, each `.npz`
member's declared size and `.npy` header (a member that inflates far beyond its compressed size
is a zip bomb, and refused), a Parquet file's row groups as its footer declares them. The rows
then stream in batches of READ_ROWS, each checked: as many paths as vectors, every vector as wide
as the others and finite, every path a file name. Each refusal is one InputError line naming the
file and what is wrong with it.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import InputError
from ..nets import ARCHITECTURES
from ..outputs import FEATURE_SUFFIXES, MODEL_KEY
from .storage import MAX_PATH_LINE, FolderProblem, check_rows, data_bytes, npy_header, open_matrix, open_regular

#: Rows per batch read back.
READ_ROWS = 8192
#: The largest model record or job manifest read.
MAX_RECORD_BYTES = 1 << 20
#: The longest path, in characters, of a `.npz` file's `paths` array.
MAX_PATH_CHARS = 4096
#: The widest feature vector taken.
MAX_DIM = 1 << 16
#: How far a compressed `.npz` member may inflate: floats compress at most a few times (the
#: zeros of a zip bomb a thousand times and more).
MAX_INFLATION = 64
#: What one batch of rows may decode to, and the most floats a row group of lists of any length
#: may declare (embed writes fixed-size lists, whose width bounds them).
BATCH_BYTES = 64 << 20
MAX_LIST_VALUES = 1 << 28
#: Members an `.npz` embed output has (paths, features, model).
NPZ_MEMBERS = ("paths.npy", "features.npy", "model.npy")
Batches = Iterator[tuple[list[str], np.ndarray]]


def refused(
    path: str | os.PathLike, problem: str, fix: str = "write it again with `inception-hub embed`"
) -> InputError:
    return InputError(f"{path} cannot be indexed: {problem}; {fix}")


def read_features(path: str | os.PathLike) -> tuple[dict | None, Batches]:
    """An `embed` output: its model record (checked; None for `.npy` files and files written
    before records were kept), and its rows in batches of (paths, float32 [n, dim]). Takes `.npy`
    (+ `.paths.txt`), `.npz`, `.parquet` and the folder of a Ray embed job (its `_manifest.json`
    is the record; failed rows are left out)."""
    path = Path(path)
    try:
        if path.is_dir():
            return _ray_folder(path)
        suffix = path.suffix.lower()
        if suffix not in FEATURE_SUFFIXES or not path.exists():
            raise refused(
                path, "it is not an embed output", "give a .npy, .npz or .parquet file, or a Ray embed job's folder"
            )
        reader = {".npy": _npy, ".npz": _npz, ".parquet": _parquet}[suffix]
        record, batches = reader(path)
        return record, _checked(path, batches)
    except FolderProblem as e:
        raise refused(path, str(e)) from None


def check_record(record: object, where: Path) -> dict:
    """A feature file's model record, once it is what `model_identity` writes: strings for
    handle, kind and weights, and an architecture this version knows."""
    keys = ("handle", "architecture", "kind", "weights")
    if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in keys):
        raise refused(where, f"its model record is not a record of {', '.join(keys)}")
    if record["architecture"] not in ARCHITECTURES:
        raise refused(where, f"its model record names an unknown architecture {record['architecture'][:40]!r}")
    return {k: record[k] for k in keys}


def _record_text(text: str | bytes, where: Path) -> dict:
    if len(text) > MAX_RECORD_BYTES:
        raise refused(where, f"its model record is {len(text)} bytes long")
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        raise refused(where, "its model record is not valid JSON") from None
    return check_record(record, where)


def _checked(where: Path, batches: Batches) -> Batches:
    """Every batch: a path per vector, each a file name, each vector finite and as wide as the first."""
    dim = None
    for paths, vectors in batches:
        if vectors.ndim != 2 or len(paths) != len(vectors):
            raise refused(where, f"{len(paths)} paths for {len(vectors)} feature vectors")
        if not 1 <= vectors.shape[1] <= MAX_DIM:
            raise refused(where, f"its vectors have {vectors.shape[1]} floats, not 1 to {MAX_DIM}")
        dim = vectors.shape[1] if dim is None else dim
        if vectors.shape[1] != dim:
            raise refused(where, f"vectors of {vectors.shape[1]} floats after vectors of {dim}")
        for p in paths:
            if not isinstance(p, str) or not p or "\0" in p or len(p) > MAX_PATH_LINE:
                raise refused(where, f"a row's path is not a file name ({str(p)[:60]!r})")
        try:
            check_rows(vectors, "a", unit=False)
        except FolderProblem:
            row = int(np.argmin(np.isfinite(vectors).all(axis=1)))
            raise refused(where, f"the vector of {paths[row]} holds NaN or infinite values") from None
        yield paths, vectors


# .npy -------------------------------------------------------------------------------------------


def _npy(path: Path) -> tuple[None, Batches]:
    with open_regular(path, path.name) as f:
        features = open_matrix(f, path.name)
    listing = path.with_suffix(".paths.txt")
    try:
        with open_regular(listing, listing.name, len(features) * MAX_PATH_LINE + 1) as f:
            lines = f.read().split(b"\n")
    except FileNotFoundError:
        raise refused(path, f"it has no {listing.name} beside it, so its rows' photos are unknown") from None
    if lines[-1] == b"":
        lines.pop()
    if len(lines) != len(features):
        raise refused(path, f"{listing.name} lists {len(lines)} photos for {len(features)} feature vectors")
    paths = [line.decode("utf-8", "surrogateescape") for line in lines]  # as embed wrote them: bytes

    def batches() -> Batches:
        for lo in range(0, len(paths), READ_ROWS):
            yield paths[lo : lo + READ_ROWS], np.asarray(features[lo : lo + READ_ROWS], np.float32)

    return None, batches()


# .npz -------------------------------------------------------------------------------------------


def _npz(path: Path) -> tuple[dict | None, Batches]:
    f = open_regular(path, path.name)
    try:
        _check_member_count(f, path)
        archive = zipfile.ZipFile(f)
    except InputError:
        f.close()
        raise
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        f.close()
        raise refused(path, "it is not a readable .npz (zip) file") from None
    try:
        infos = {i.filename: i for i in archive.infolist()}
        if not {"paths.npy", "features.npy"} <= infos.keys():
            raise refused(path, "it has no paths and features arrays")
        for name in NPZ_MEMBERS:
            if name in infos:
                _check_member(infos[name], path)
        record = _npz_record(archive, infos, path) if "model.npy" in infos else None
        paths_file, features_file = archive.open("paths.npy"), archive.open("features.npy")
        (n,), paths_type, _ = _member_header(paths_file, infos["paths.npy"], path, ndim=1)
        shape, features_type, _ = _member_header(features_file, infos["features.npy"], path, ndim=2)
    except BaseException:
        archive.close()
        f.close()
        raise
    if paths_type.kind != "U" or paths_type.itemsize > 4 * MAX_PATH_CHARS:
        raise refused(path, f"its paths are {paths_type}, not file names")
    if features_type.kind != "f":
        raise refused(path, f"its features are {features_type}, not floats")
    if shape[0] != n:
        raise refused(path, f"{n} paths for {shape[0]} feature vectors")

    def batches() -> Batches:
        with f, archive, paths_file, features_file:
            for lo in range(0, n, READ_ROWS):
                rows = min(READ_ROWS, n - lo)
                names = np.frombuffer(_exactly(paths_file, rows * paths_type.itemsize, path), paths_type)
                values = np.frombuffer(
                    _exactly(features_file, rows * shape[1] * features_type.itemsize, path), features_type
                )
                yield [str(p) for p in names], values.reshape(rows, shape[1]).astype(np.float32)

    return record, batches()


def _check_member_count(f: BinaryIO, path: Path) -> None:
    """Refuse, from the end-of-archive record alone, a zip of more members than an embed output
    has: the zip reader would otherwise read every entry of a hostile directory into memory."""
    size = f.seek(0, 2)
    f.seek(max(0, size - 65_557))  # the record (22 bytes) and at most a 64 KiB comment
    tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + 22 > len(tail):
        raise refused(path, "it is not a readable .npz (zip) file")
    entries = int.from_bytes(tail[at + 10 : at + 12], "little")
    if entries > 8:
        raise refused(path, f"it holds {entries} arrays where an embed output holds {len(NPZ_MEMBERS)}")
    f.seek(0)


def _check_member(info: zipfile.ZipInfo, path: Path) -> None:
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise refused(path, f"its {info.filename} is compressed in a way numpy does not write")
    if info.compress_type == zipfile.ZIP_DEFLATED and info.file_size > MAX_INFLATION * info.compress_size + (1 << 20):
        raise refused(
            path,
            f"its {info.filename} inflates from {info.compress_size} to {info.file_size} bytes (a zip bomb?)",
        )


def _member_header(member: BinaryIO, info: zipfile.ZipInfo, path: Path, *, ndim: int):
    try:
        shape, dtype, offset = npy_header(member, info.filename)
    except FolderProblem as e:
        raise refused(path, str(e)) from None
    if len(shape) != ndim or (ndim == 2 and not 1 <= shape[1] <= MAX_DIM):
        raise refused(path, f"its {info.filename} holds an array of shape {list(shape)}")
    if info.file_size != offset + data_bytes(shape, dtype):
        raise refused(path, f"its {info.filename} declares {info.file_size} bytes for an array of {list(shape)}")
    return shape, dtype, offset


def _npz_record(archive: zipfile.ZipFile, infos: dict, path: Path) -> dict:
    info = infos["model.npy"]
    if info.file_size > 4 * MAX_RECORD_BYTES + 256:
        raise refused(path, f"its model record is {info.file_size} bytes long")
    with archive.open(info) as member:
        shape, dtype, _ = _member_header(member, info, path, ndim=0)
        if dtype.kind != "U":
            raise refused(path, f"its model record is {dtype}, not text")
        text = str(np.frombuffer(_exactly(member, dtype.itemsize, path), dtype)[0])
    return _record_text(text, path)


def _exactly(member: BinaryIO, n: int, path: Path) -> bytes:
    try:
        data = member.read(n)
    except (zipfile.BadZipFile, OSError, EOFError) as e:  # a bad CRC, a cut stream
        raise refused(path, f"it is damaged ({e})") from None
    if len(data) != n:
        raise refused(path, "it is cut short")
    return data


# Parquet ----------------------------------------------------------------------------------------


def _parquet(path: Path) -> tuple[dict | None, Batches]:
    file, rows = _parquet_file(path)
    meta = file.schema_arrow.metadata or {}
    record = _record_text(meta[MODEL_KEY.encode()], path) if MODEL_KEY.encode() in meta else None
    return record, _parquet_rows([(path, file, rows)])


def _parquet_file(path: Path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    with open_regular(path, path.name):
        pass  # a regular file (a FIFO would block the Parquet reader)
    try:
        file = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise refused(path, f"it is not a readable Parquet file ({str(e).splitlines()[0][:100]})") from None
    schema = file.schema_arrow
    names = set(schema.names)
    if not {"path", "features"} <= names:
        raise refused(path, "it has no path and features columns")
    column, paths = schema.field("features").type, schema.field("path").type
    lists = pa.types.is_list(column) or pa.types.is_large_list(column) or pa.types.is_fixed_size_list(column)
    if not (pa.types.is_string(paths) or pa.types.is_large_string(paths)):
        raise refused(path, f"its path column holds {paths}, not text")
    if not lists or not pa.types.is_floating(column.value_type):
        raise refused(path, f"its features column holds {column}, not lists of floats")
    width = column.list_size if pa.types.is_fixed_size_list(column) else None
    if width is not None and not 1 <= width <= MAX_DIM:
        raise refused(path, f"its features are vectors of {width} floats")
    for i in range(file.metadata.num_row_groups):
        _check_row_group(path, i, file.metadata.row_group(i), width)
    # Rows per batch: what a batch of the widest rows decodes to stays under BATCH_BYTES.
    rows = READ_ROWS if width is None else max(1, min(READ_ROWS, BATCH_BYTES // (4 * width)))
    return file, rows


def _check_row_group(path: Path, i: int, group, width: int | None) -> None:
    """A row group's sizes as its footer declares them, before anything is decoded: no more
    bytes than its rows could need, no more floats than its rows hold (or, for lists of any
    length, than MAX_LIST_VALUES), and no column inflating far beyond its compressed bytes."""
    for c in range(group.num_columns):
        chunk = group.column(c)
        most = group.num_rows * (MAX_DIM * 8 + MAX_PATH_LINE) + (1 << 20)
        if chunk.total_uncompressed_size > most:
            raise refused(
                path, f"row group {i} declares {chunk.total_uncompressed_size} bytes for {group.num_rows} rows"
            )
        if chunk.total_uncompressed_size > MAX_INFLATION * chunk.total_compressed_size + (1 << 20):
            raise refused(
                path,
                f"row group {i} inflates from {chunk.total_compressed_size} to {chunk.total_uncompressed_size} bytes",
            )
        if chunk.path_in_schema.startswith("features."):
            limit = group.num_rows * width if width is not None else MAX_LIST_VALUES
            if chunk.num_values > limit:
                raise refused(
                    path,
                    f"row group {i} declares {chunk.num_values} floats for {group.num_rows} rows: "
                    "write it in smaller row groups",
                )


def _parquet_rows(files) -> Batches:
    import pyarrow as pa
    import pyarrow.compute as pc

    for path, file, batch_rows in files:
        start = 0
        try:
            for batch in file.iter_batches(batch_rows, columns=["path", "features"]):
                rows = batch.filter(batch.column("features").is_valid())  # a failed photo of a Ray job
                start += batch.num_rows
                if not rows.num_rows:
                    continue
                column = rows.column("features")
                if not pa.types.is_fixed_size_list(column.type):
                    lengths = pc.list_value_length(column).to_numpy(zero_copy_only=False)
                    if lengths.min() != lengths.max():
                        raise refused(
                            path,
                            f"its rows near row {start} hold vectors of {lengths.min()} and {lengths.max()} floats",
                        )
                paths = rows.column("path")
                if paths.null_count:
                    raise refused(path, f"a row near row {start} has vectors but no path")
                flat = column.flatten().to_numpy(zero_copy_only=False)
                yield paths.to_pylist(), flat.reshape(rows.num_rows, -1).astype(np.float32)
        except (pa.ArrowException, OSError) as e:
            raise refused(path, f"it is damaged ({str(e).splitlines()[0][:100]})") from None


# A Ray job's folder -----------------------------------------------------------------------------


def _ray_folder(folder: Path) -> tuple[dict, Batches]:
    try:
        with open_regular(folder / "_manifest.json", "_manifest.json", MAX_RECORD_BYTES) as f:
            text = f.read()
    except FileNotFoundError:
        raise refused(
            folder, "it is not the output of an embed job (it has no _manifest.json)", "give its folder"
        ) from None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise refused(folder, "its _manifest.json is not a JSON object", "run the job again")
    if record.get("task") != "embed":
        raise refused(
            folder,
            f"it holds {str(record.get('task'))[:40]} results, not feature vectors",
            "give an embed job's folder",
        )
    if not isinstance(record.get("model"), str) or not isinstance(record.get("weights"), str):
        raise refused(folder, "its _manifest.json does not name the model and weights", "run the job again")
    parts = sorted(folder.glob("part-*.parquet"))
    files = [(p, *_parquet_file(p)) for p in parts]
    return record, _checked(folder, _parquet_rows(files))
