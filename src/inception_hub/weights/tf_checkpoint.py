"""TensorFlow checkpoints read without TensorFlow: the V1 format of the 2016 TF-Slim releases
(one file) and the V2 format (`.index` + `.data-NNNNN-of-NNNNN`).

Both keep their entries in a LevelDB-style table (SSTable): data blocks of prefix-compressed
key/value entries, an index block pointing at them and a 48-byte footer. In V1 the values are
`SavedTensorSlices` protos holding the tensors themselves (`float_val` or `tensor_content`); in
V2 they are `BundleEntryProto`s giving each tensor's shard, offset and size in the data files.
The few protos involved are decoded by hand: reading them needs no protobuf schema package.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import CheckpointError

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_BYTES = 48
BLOCK_TRAILER_BYTES = 5  # compression type + crc32c
#: TensorFlow's DataType enum values for the dtypes a checkpoint of these networks can hold.
DTYPES = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    9: np.dtype("<i8"),  # DT_INT64 (global_step)
    19: np.dtype("<f2"),  # DT_HALF
}


class _Corrupt(Exception):
    """Anything wrong with the bytes; turned into a CheckpointError naming the file."""


# Protobuf wire format ------------------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise _Corrupt("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> Iterator[tuple[int, int, object]]:
    """(field number, wire type, value) of a serialized message: ints for varints and fixed
    fields, bytes for length-delimited ones."""
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = int.from_bytes(buf[pos : pos + 8], "little"), pos + 8
        elif wire == 2:
            size, pos = _varint(buf, pos)
            value, pos = buf[pos : pos + size], pos + size
        elif wire == 5:
            value, pos = int.from_bytes(buf[pos : pos + 4], "little"), pos + 4
        else:
            raise _Corrupt(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise _Corrupt("truncated protobuf message")
        yield number, wire, value


def _shape(buf: bytes) -> tuple[int, ...]:
    """TensorShapeProto: repeated Dim dim = 2 { int64 size = 1 }."""
    dims = []
    for number, _, dim in _fields(buf):
        if number == 2:
            dims.append(next((v for n, _, v in _fields(dim) if n == 1), 0))
    return tuple(dims)


# The table -------------------------------------------------------------------------------------


def _block(data: bytes, offset: int, size: int) -> Iterator[tuple[bytes, bytes]]:
    """The (key, value) entries of one block."""
    if offset + size + BLOCK_TRAILER_BYTES > len(data):
        raise _Corrupt("a block runs past the end of the file")
    if data[offset + size] != 0:
        raise _Corrupt("compressed table blocks are not supported")
    block = data[offset : offset + size]
    (restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * restarts
    pos, key = 0, b""
    while pos < end:
        shared, pos = _varint(block, pos)
        unshared, pos = _varint(block, pos)
        length, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + unshared]
        pos += unshared
        yield key, block[pos : pos + length]
        pos += length


def table_entries(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """Every (key, value) of an SSTable, in key order."""
    if len(data) < FOOTER_BYTES:
        raise _Corrupt(f"{len(data)} bytes is too short for a checkpoint table")
    footer = data[-FOOTER_BYTES:]
    if int.from_bytes(footer[-8:], "little") != TABLE_MAGIC:
        raise _Corrupt("no table footer (not a TensorFlow checkpoint, or cut short)")
    _, pos = _varint(footer, 0)  # metaindex offset
    _, pos = _varint(footer, pos)  # metaindex size
    index_offset, pos = _varint(footer, pos)
    index_size, _ = _varint(footer, pos)
    for _, handle in _block(data, index_offset, index_size):
        offset, pos = _varint(handle, 0)
        size, _ = _varint(handle, pos)
        yield from _block(data, offset, size)


# V2: an index table and data shards ------------------------------------------------------------


def _read_v2(prefix: str) -> dict[str, np.ndarray]:
    entries = list(table_entries(Path(prefix + ".index").read_bytes()))
    header = dict((n, v) for n, _, v in _fields(entries[0][1])) if entries and entries[0][0] == b"" else {}
    num_shards = int(header.get(1, 1))
    if header.get(2, 0) != 0:
        raise _Corrupt("big-endian checkpoints are not supported")
    shards: dict[int, bytes] = {}
    out = {}
    for key, value in entries:
        if key == b"":
            continue
        entry = {n: v for n, _, v in _fields(value)}
        if 7 in entry:
            raise _Corrupt(f"{key.decode()} is stored in slices, which this reader does not support")
        dtype = DTYPES.get(int(entry.get(1, 0)))
        if dtype is None:
            continue  # strings and other kinds of state no network variable has
        shard, offset, size = int(entry.get(3, 0)), int(entry.get(4, 0)), int(entry.get(5, 0))
        if shard not in shards:
            path = f"{prefix}.data-{shard:05d}-of-{num_shards:05d}"
            try:
                shards[shard] = Path(path).read_bytes()
            except OSError as e:
                raise _Corrupt(f"cannot read the data file {path} ({e.strerror or e})") from None
        shape = _shape(entry.get(2, b""))
        if offset + size > len(shards[shard]) or size != int(np.prod(shape)) * dtype.itemsize:
            raise _Corrupt(f"the data of {key.decode()} is missing or cut short")
        out[key.decode()] = np.frombuffer(shards[shard], dtype, int(np.prod(shape)), offset).reshape(shape)
    return out


# V1: one table holding the tensors -------------------------------------------------------------


def _read_v1(path: str) -> dict[str, np.ndarray]:
    metas: dict[str, tuple[tuple[int, ...], np.dtype]] = {}
    out: dict[str, np.ndarray] = {}
    for _, value in table_entries(Path(path).read_bytes()):
        for number, _, message in _fields(value):
            if number == 1:  # SavedTensorSliceMeta: repeated SavedSliceMeta tensor = 1
                for n, _, meta in _fields(message):
                    if n == 1:
                        m = {k: v for k, _, v in _fields(meta)}
                        dtype = DTYPES.get(int(m.get(3, 0)))
                        if dtype is not None:
                            metas[m[1].decode()] = (_shape(m.get(2, b"")), dtype)
            elif number == 2:  # SavedSlice {name = 1, slice = 2, data = 3 (TensorProto)}
                _add_slice(message, metas, out)
    missing = sorted(set(metas) - set(out))
    if missing:
        raise _Corrupt(f"no values for {', '.join(missing[:5])}")
    return out


def _add_slice(message: bytes, metas: dict, out: dict) -> None:
    s = {n: v for n, _, v in _fields(message)}
    name = s.get(1, b"").decode()
    if name not in metas:
        return
    shape, dtype = metas[name]
    values = _tensor_values(s.get(3, b""), dtype)
    region = _region(s.get(2, b""), shape)
    if values.size != int(np.prod([stop - start for start, stop in region])):
        raise _Corrupt(f"the values of {name} do not fill its shape {list(shape)}")
    if name not in out:
        out[name] = np.zeros(shape, dtype)
    out[name][tuple(slice(a, b) for a, b in region)] = values.reshape([b - a for a, b in region])


def _region(slice_proto: bytes, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """TensorSliceProto: repeated Extent extent = 1 {start = 1, length = 2 (absent: the whole dim)}."""
    extents = [{n: v for n, _, v in _fields(e)} for n, _, e in _fields(slice_proto) if n == 1]
    if not extents:
        return [(0, d) for d in shape]
    return [(e.get(1, 0), e.get(1, 0) + e[2] if 2 in e else d) for e, d in zip(extents, shape, strict=True)]


def _tensor_values(tensor: bytes, dtype: np.dtype) -> np.ndarray:
    """The values of a TensorProto: tensor_content (4), or the typed repeated fields."""
    content, packed, singles = b"", [], []
    value_field = {np.dtype("<f4"): 5, np.dtype("<f8"): 6, np.dtype("<i4"): 7, np.dtype("<i8"): 10}.get(dtype)
    for number, wire, value in _fields(tensor):
        if number == 4:
            content = value
        elif number == value_field:
            (packed if wire == 2 else singles).append(value)
    if content:
        return np.frombuffer(content, dtype)
    if dtype.kind == "f":
        arrays = [np.frombuffer(p, dtype) for p in packed]
        if singles:
            raw = b"".join(v.to_bytes(dtype.itemsize, "little") for v in singles)
            arrays.append(np.frombuffer(raw, dtype))
        return np.concatenate(arrays) if arrays else np.zeros(0, dtype)
    ints = [v for p in packed for v in _varints(p)] + singles
    return np.array([v - (1 << 64) if v >= 1 << 63 else v for v in ints], dtype)


def _varints(buf: bytes) -> Iterator[int]:
    pos = 0
    while pos < len(buf):
        value, pos = _varint(buf, pos)
        yield value


# Entry point -----------------------------------------------------------------------------------


def read(prefix: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every numeric tensor of the checkpoint at `prefix`: a V1 file, or a V2 prefix (the path
    without `.index`). Raises CheckpointError on a truncated, corrupt or foreign file."""
    prefix = os.fspath(prefix)
    v2 = Path(prefix + ".index").is_file()
    try:
        return _read_v2(prefix) if v2 else _read_v1(prefix)
    except _Corrupt as e:
        raise CheckpointError(f"{prefix}: {e}") from None
    except (OSError, ValueError, IndexError, KeyError, UnicodeDecodeError, struct.error) as e:
        raise CheckpointError(f"{prefix}: corrupt checkpoint ({type(e).__name__}: {e})") from None
