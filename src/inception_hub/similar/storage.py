"""Reading files that someone else may have written, without trusting them: regular files only
(a FIFO would block the reader, a device or a link out of the folder reads what it should not),
sizes checked before anything is read, `.npy` headers checked before an array is made, and
path lists that keep any name the operating system allows.

Path lists are JSON lines: one JSON string per line, ASCII only, so a newline, U+2028 or a
name that is not valid UTF-8 (held as surrogate escapes, as `os.listdir` gives it) is escaped
and comes back unchanged.
"""

from __future__ import annotations

import json
import os
import stat
import zlib
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

#: The longest path a path list holds, escaped (PATH_MAX bytes, each escaped as \\udcXX at worst).
MAX_PATH_LINE = 6 * 4096 + 8
#: Rows checked at a time when a matrix is scanned (16k x 1536 floats: 96 MiB of the file).
SCAN_ROWS = 16_384
#: How far from 1 a stored unit vector's squared length may be (float32 rounding is ~1e-6).
NORM_TOLERANCE = 1e-3
#: The largest `.npy` header read (numpy's own default bound).
MAX_HEADER = 10_000


class FolderProblem(Exception):
    """What is wrong with a file being read, in a few words; the caller adds where and the fix."""


def open_inside(root: Path, name: str, limit: int | None = None) -> BinaryIO:
    """`root/name` opened for reading, once it is a regular file inside `root` (a link is
    followed only to a file within it) of at most `limit` bytes. FileNotFoundError when it is
    missing, FolderProblem when it is something else."""
    path = root / name
    info = os.lstat(path)  # FileNotFoundError: the caller's "missing"
    if stat.S_ISLNK(info.st_mode):
        target = path.resolve()
        if not target.is_relative_to(root.resolve()):
            raise FolderProblem(f"{name} is a link to {target}, outside the folder")
        path = target
    return open_regular(path, name, limit)


def open_regular(path: Path, name: str, limit: int | None = None) -> BinaryIO:
    """`path` opened for reading once it is a regular file of at most `limit` bytes (links
    followed); FileNotFoundError when missing, FolderProblem naming it (`name`) otherwise."""
    # O_NONBLOCK: opening a FIFO does not wait for a writer (fstat then refuses it).
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise
    except OSError as e:
        raise FolderProblem(f"{name} cannot be opened ({e.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        kind = "a FIFO" if stat.S_ISFIFO(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "a device"
        raise FolderProblem(f"{name} is {kind}, not a regular file")
    if limit is not None and info.st_size > limit:
        os.close(fd)
        raise FolderProblem(f"{name} is {info.st_size} bytes, more than the {limit} it can hold")
    return os.fdopen(fd, "rb")


def read_json(f: BinaryIO, name: str) -> object:
    """The JSON value of a file opened by `open_inside` (which bounded its size)."""
    try:
        return json.loads(f.read())
    except (ValueError, RecursionError):  # RecursionError: "[[[[...": deeply nested on purpose
        raise FolderProblem(f"{name} is not valid JSON") from None


def npy_header(f: BinaryIO, name: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, bytes before the data) of the `.npy` stream `f`, read from its header alone.
    A header that is not numpy's, is Fortran-ordered or holds Python objects is refused."""
    fmt = np.lib.format
    try:
        version = fmt.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(f, max_header_size=MAX_HEADER)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(f, max_header_size=MAX_HEADER)
        else:
            raise FolderProblem(f"{name} is a .npy file of version {version}, which is not read here")
    except (ValueError, EOFError, OSError) as e:
        raise FolderProblem(f"{name} is not a .npy file ({str(e).splitlines()[0][:120]})") from None
    if fortran or dtype.hasobject or any(not isinstance(n, int) or n < 0 for n in shape):
        raise FolderProblem(f"{name} holds an array of {dtype} {list(shape)} in a layout that is not read here")
    return tuple(shape), dtype, f.tell()


def data_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=object)) * dtype.itemsize  # object: no overflow on a hostile shape


def open_matrix(f: BinaryIO, name: str, rows: int | None = None, columns: int | None = None) -> np.ndarray:
    """The 2-D float matrix of the `.npy` file `f` (opened by `open_inside`), memory-mapped, once
    its header says a floating dtype, the expected shape, and exactly the file's size."""
    shape, dtype, offset = npy_header(f, name)
    if len(shape) != 2 or dtype.kind != "f":
        raise FolderProblem(f"{name} holds {dtype} {list(shape)}, not a 2-D float matrix")
    if (rows is not None and shape[0] != rows) or (columns is not None and shape[1] != columns):
        want = [rows if rows is not None else "N", columns if columns is not None else "D"]
        raise FolderProblem(f"{name} holds a matrix of shape {list(shape)}, not {want}")
    size = os.fstat(f.fileno()).st_size
    if size != offset + data_bytes(shape, dtype):
        raise FolderProblem(f"{name} is {size} bytes where its header says {offset + data_bytes(shape, dtype)}")
    if 0 in shape:
        return np.zeros(shape, dtype)
    return np.memmap(f, dtype, "r", offset=offset, shape=shape)


def check_rows(matrix: np.ndarray, name: str, *, unit: bool, rows: int = SCAN_ROWS) -> None:
    """Every value finite and, with `unit`, every row of length 1: scanned `rows` rows at a time,
    so a memory-mapped matrix is never read into memory whole (one float per row is allocated)."""
    for lo in range(0, len(matrix), rows):
        block = np.asarray(matrix[lo : lo + rows])
        with np.errstate(over="ignore", invalid="ignore"):
            norms = np.einsum("ij,ij->i", block, block)  # NaN or inf wherever a row holds one
        bad = ~np.isfinite(norms)
        if bad.any():
            row = int(np.argmax(bad))
            if not np.isfinite(block[row]).all():
                raise FolderProblem(f"{name} row {lo + row} holds NaN or infinite values")
            if unit:
                raise FolderProblem(f"{name} row {lo + row} is far from length 1 (vectors are stored normalised)")
        if unit:
            off = np.abs(norms - 1.0) > NORM_TOLERANCE
            if off.any():
                row = int(np.argmax(off))
                raise FolderProblem(
                    f"{name} row {lo + row} has length {float(np.sqrt(norms[row])):.4g}, not 1 "
                    "(vectors are stored normalised)"
                )


def encode_path(path: str) -> bytes:
    """One line of a path list (a JSON string, ASCII: every awkward character escaped)."""
    return json.dumps(path).encode("ascii") + b"\n"


def write_paths(f: BinaryIO, paths: Iterable[str]) -> None:
    for p in paths:
        f.write(encode_path(p))


def read_paths(f: BinaryIO, name: str, count: int) -> list[str]:
    """The `count` paths of a path list (`open_inside` bounded its size)."""
    lines = f.read().split(b"\n")
    if lines[-1] != b"":
        raise FolderProblem(f"{name} does not end with a newline (it was cut short)")
    lines.pop()
    if len(lines) != count:
        raise FolderProblem(f"{name} lists {len(lines)} photos where the index holds {count}")
    out = []
    for i, line in enumerate(lines):
        try:
            path = json.loads(line)
        except ValueError:
            path = None
        if not isinstance(path, str):
            raise FolderProblem(f"{name} line {i + 1} is not a JSON string")
        out.append(path)
    return out


def read_legacy_paths(f: BinaryIO, name: str, count: int) -> list[str]:
    """The paths of an index of format 1 (`paths.txt`: UTF-8, one per line). Split on newlines
    only: U+2028, which `str.splitlines` also splits on, was written inside names."""
    try:
        text = f.read().decode("utf-8")
    except UnicodeDecodeError:
        raise FolderProblem(f"{name} is not UTF-8 text") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    if len(lines) != count:
        raise FolderProblem(f"{name} lists {len(lines)} photos where the index holds {count}")
    return lines


def checksum(f: BinaryIO) -> int:
    """CRC-32 of a whole file, read 1 MiB at a time. It catches a damaged file or one from another
    index (usearch can crash the process on some damaged graphs), not a deliberate forgery."""
    f.seek(0)
    crc = 0
    for block in iter(lambda: f.read(1 << 20), b""):
        crc = zlib.crc32(block, crc)
    return crc


def file_checksum(path: Path) -> int:
    with open(path, "rb") as f:
        return checksum(f)
