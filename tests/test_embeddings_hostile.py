"""`index --embeddings` on hostile files: once tracebacks on 19 of 45, an OOM kill on a 35 MB
zip-bomb `.npz`, and ragged Parquet rows (misaligned vectors), count mismatches and NaN vectors
accepted silently. Each is now refused in one line, with what is read bounded before it is read."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from inception_hub.cli import main
from inception_hub.errors import InputError
from inception_hub.outputs import MODEL_KEY, feature_column
from inception_hub.similar.embeddings import read_features
from inception_hub.similar.index import Index
from test_index_hostile import _npy_header, within

RECORD = {"handle": "inception_v1/feature_vector", "architecture": "inception_v1", "kind": "feature_vector"}
RECORD["weights"] = "0" * 64
DIM = 1024


def rows(n: int = 4, dim: int = DIM, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def names(n: int = 4) -> list[str]:
    return [f"/photos/{i}.jpg" for i in range(n)]


def read_all(path):
    """read_features and every batch, within 20 s and with the traced memory peak returned."""
    import tracemalloc

    tracemalloc.start()
    try:
        record, batches = within(20, read_features, path)
        out = within(20, list, batches)
        return record, out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def refusal(path) -> str:
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(InputError) as refused:
            _, batches = within(20, read_features, path)
            within(20, list, batches)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(refused.value)
    assert "\n" not in message and str(path) in message, message
    assert peak < 48 << 20, peak  # nothing declared was allocated whole
    return message


# ------------------------------------------------------------------------------------------ .npz


def npz(tmp_path, name="f.npz", **arrays) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return str(path)


def good_npz(**changes) -> dict:
    arrays = {"paths": np.array(names()), "features": rows(), "model": np.array(json.dumps(RECORD))}
    arrays.update(changes)
    return {k: v for k, v in arrays.items() if v is not None}


def zip_with(tmp_path, members: dict[str, bytes], compression=zipfile.ZIP_STORED, name="z.npz") -> str:
    path = tmp_path / name
    with zipfile.ZipFile(path, "w", compression) as z:
        for member, data in members.items():
            z.writestr(member, data)
    return str(path)


def npy_bytes(array) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def zip_bomb(tmp_path, rows_declared: int) -> str:
    """An .npz whose features member inflates from a few hundred KB to `rows_declared` x 1024
    floats of zeros (written as a stream, so the test never holds them)."""
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("paths.npy", npy_bytes(np.array(names(rows_declared)[:1] * rows_declared)))
        z.writestr("model.npy", npy_bytes(np.array(json.dumps(RECORD))))
        with z.open("features.npy", "w", force_zip64=True) as member:
            member.write(_npy_header((rows_declared, DIM)))
            zeros = bytes(16 << 20)
            for _ in range(rows_declared * DIM * 4 // len(zeros)):
                member.write(zeros)
    return str(path)


NPZ_CASES = [
    ("no features", lambda t: npz(t, **good_npz(features=None)), "has no paths and features"),
    ("features 1-D", lambda t: npz(t, **good_npz(features=rows().reshape(-1))), "of shape [4096]"),
    ("features int", lambda t: npz(t, **good_npz(features=np.ones((4, DIM), np.int64))), "not floats"),
    ("features objects", lambda t: npz(t, **good_npz(features=np.array([[None]] * 4, object))), "layout"),
    ("paths numbers", lambda t: npz(t, **good_npz(paths=np.arange(4))), "not file names"),
    ("paths fewer", lambda t: npz(t, **good_npz(paths=np.array(names(3)))), "3 paths for 4 feature vectors"),
    ("paths empty", lambda t: npz(t, **good_npz(paths=np.array(["", "a", "b", "c"]))), "not a file name"),
    ("NaN", lambda t: npz(t, **good_npz(features=np.where(np.eye(4, DIM) > 0, np.nan, rows()))), "/photos/0.jpg"),
    ("inf", lambda t: npz(t, **good_npz(features=np.full((4, DIM), np.inf, np.float32))), "NaN or infinite"),
    ("record not JSON", lambda t: npz(t, **good_npz(model=np.array("{nope"))), "not valid JSON"),
    ("record a list", lambda t: npz(t, **good_npz(model=np.array("[1]"))), "not a record of"),
    ("record keys", lambda t: npz(t, **good_npz(model=np.array('{"handle": "h"}'))), "not a record of"),
    ("record numbers", lambda t: npz(t, **good_npz(model=np.array(json.dumps({**RECORD, "weights": 1})))), "record"),
    (
        "record unknown net",
        lambda t: npz(t, **good_npz(model=np.array(json.dumps({**RECORD, "architecture": "resnet"})))),
        "unknown architecture 'resnet'",
    ),
    ("record bytes", lambda t: npz(t, **good_npz(model=np.array(b"{}"))), "not text"),
    ("not a zip", lambda t: _written(t / "g.npz", os.urandom(500)), "not a readable .npz"),
    ("empty", lambda t: _written(t / "e.npz", b""), "not a readable .npz"),
    (
        "cut short",
        lambda t: _written(t / "c.npz", Path(npz(t, **good_npz())).read_bytes()[:-300]),
        "not a readable .npz",
    ),
    (
        "bad CRC",
        lambda t: _flip(npz(t, **good_npz()), offset=2000),
        "damaged (Bad CRC-32",
    ),
    (
        "shape lies",
        lambda t: zip_with(t, {"paths.npy": npy_bytes(np.array(names())), "features.npy": _npy_header((10**9, DIM))}),
        "declares",
    ),
    (
        "bz2",
        lambda t: zip_with(t, {"paths.npy": npy_bytes(np.array(names())), "features.npy": npy_bytes(rows())}, 12),
        "compressed in a way numpy does not write",
    ),
    ("many members", lambda t: zip_with(t, {f"a{i}.npy": b"" for i in range(10_000)}), "holds 10000 arrays"),
    ("zip bomb", lambda t: zip_bomb(t, 65_536), "inflates from"),  # 256 MiB of zeros in ~260 KB
]


def _written(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def _flip(path: str, offset: int) -> str:
    data = bytearray(Path(path).read_bytes())
    data[offset] ^= 0xFF
    Path(path).write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("case, make, expected", NPZ_CASES, ids=[c[0] for c in NPZ_CASES])
def test_a_hostile_npz_is_refused_in_one_line(tmp_path, case, make, expected):
    message = refusal(make(tmp_path))
    assert expected in message, message


def test_the_zip_bomb_is_refused_by_the_command_with_memory_bounded(tmp_path, capsys):
    import resource

    bomb = zip_bomb(tmp_path, 65_536)
    assert os.path.getsize(bomb) < 2 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert within(30, main, ["index", "--embeddings", bomb, "-o", str(tmp_path / "ix"), "--no-progress"]) == 2
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before  # KiB
    err = capsys.readouterr().err
    assert "zip bomb" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert grown < 64 << 10, grown  # far below the 256 MiB it would inflate to
    assert not (tmp_path / "ix").exists()


def test_a_good_npz_streams_in_batches(tmp_path, monkeypatch):
    import inception_hub.similar.embeddings as embeddings

    monkeypatch.setattr(embeddings, "READ_ROWS", 3)
    odd = [*names(6), os.fsdecode(b"/photos/\xff.jpg"), "/photos/a\nb.jpg"]
    path = npz(tmp_path, paths=np.array(odd), features=rows(8), model=np.array(json.dumps(RECORD)))
    record, batches, _ = read_all(path)
    assert record == RECORD and [len(p) for p, _ in batches] == [3, 3, 2]
    assert sum((p for p, _ in batches), []) == odd
    np.testing.assert_array_equal(np.concatenate([v for _, v in batches]), rows(8))


# ------------------------------------------------------------------------------------------ .npy


def npy(tmp_path, array, listing: bytes | None = None, name="f.npy") -> str:
    path = tmp_path / name
    np.save(path, array)
    if listing is None:
        listing = "".join(p + "\n" for p in names(len(array))).encode()
    path.with_suffix(".paths.txt").write_bytes(listing)
    return str(path)


def _fifo(tmp_path, name):
    path = tmp_path / name
    os.mkfifo(path)
    return path


NPY_CASES = [
    ("a FIFO", lambda t: (_fifo(t, "p.npy"), str(t / "p.npy"))[1], "p.npy is a FIFO"),
    ("garbage", lambda t: _written(t / "g.npy", os.urandom(300)), "not a .npy file"),
    ("cut short", lambda t: _cut(npy(t, rows())), "bytes where its header says"),
    ("int", lambda t: npy(t, np.ones((4, 8), np.int32)), "not a 2-D float matrix"),
    ("1-D", lambda t: npy(t, rows().reshape(-1)), "not a 2-D float matrix"),
    ("huge header", lambda t: _huge_npy(t), "bytes where its header says"),
    ("no listing", lambda t: (os.remove(npy(t, rows())[:-4] + ".paths.txt"), str(t / "f.npy"))[1], "no f.paths.txt"),
    ("listing short", lambda t: npy(t, rows(), b"/a.jpg\n/b.jpg\n"), "lists 2 photos for 4 feature vectors"),
    ("listing a FIFO", lambda t: _fifo_listing(t), "f.paths.txt is a FIFO"),
    ("listing huge", lambda t: npy(t, rows(), b"x" * (4 * 25_000)), "bytes, more than"),
    ("NaN", lambda t: npy(t, np.where(np.eye(4, DIM) > 0, np.nan, rows())), "the vector of /photos/0.jpg holds NaN"),
]


def _cut(path: str) -> str:
    Path(path).write_bytes(Path(path).read_bytes()[:-5])
    return path


def _huge_npy(tmp_path) -> str:
    path = npy(tmp_path, rows())
    Path(path).write_bytes(_npy_header((10**12, DIM)) + bytes(64))
    return path


def _fifo_listing(tmp_path) -> str:
    path = npy(tmp_path, rows())
    os.remove(tmp_path / "f.paths.txt")
    _fifo(tmp_path, "f.paths.txt")
    return path


@pytest.mark.parametrize("case, make, expected", NPY_CASES, ids=[c[0] for c in NPY_CASES])
def test_a_hostile_npy_is_refused_in_one_line(tmp_path, case, make, expected):
    message = refusal(make(tmp_path))
    assert expected in message, message


def test_npy_path_lists_keep_names_that_are_not_utf8(tmp_path):
    """embed wrote `.paths.txt` with names' bytes; they are read back as the same names (and a
    name with U+2028, which str.splitlines split, stays whole)."""
    odd = [os.fsdecode(b"/p/\xff\xfe.jpg"), "/p/line\u2028sep.jpg", "/p/c\r.jpg", "/p/d.jpg"]
    path = npy(tmp_path, rows(), "".join(p + "\n" for p in odd).encode("utf-8", "surrogateescape"))
    _, batches, _ = read_all(path)
    assert batches[0][0] == odd


# --------------------------------------------------------------------------------------- Parquet


def parquet(tmp_path, columns: dict, record=RECORD, name="f.parquet", **options) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(columns)
    if record is not None:
        table = table.replace_schema_metadata({MODEL_KEY: record if isinstance(record, str) else json.dumps(record)})
    pq.write_table(table, tmp_path / name, **options)
    return str(tmp_path / name)


def fixed(array):
    return feature_column(array, np.ones(len(array), bool))


def ragged():
    import pyarrow as pa

    return pa.array([list(r) for r in rows(2, 8)] + [list(rows(1, 7)[0]), list(rows(1, 9)[0])], pa.list_(pa.float32()))


def _parquet_cases():
    import pyarrow as pa

    return [
        ("garbage", lambda t: _written(t / "g.parquet", os.urandom(900)), "not a readable"),
        ("a FIFO", lambda t: str(_fifo(t, "p.parquet")), "p.parquet is a FIFO"),
        ("no features", lambda t: parquet(t, {"path": names()}), "no path and features columns"),
        ("text features", lambda t: parquet(t, {"path": names(), "features": names()}), "not lists of floats"),
        ("int features", lambda t: parquet(t, {"path": names(), "features": [[1, 2]] * 4}), "not lists of floats"),
        ("path numbers", lambda t: parquet(t, {"path": [1, 2, 3, 4], "features": fixed(rows())}), "not text"),
        ("ragged", lambda t: parquet(t, {"path": names(), "features": ragged()}), "hold vectors of 7 and 9 floats"),
        (
            "null path",
            lambda t: parquet(t, {"path": pa.array([None, *names(3)], pa.string()), "features": fixed(rows())}),
            "has vectors but no path",
        ),
        (
            "NaN",
            lambda t: parquet(t, {"path": names(), "features": fixed(np.full((4, DIM), np.nan, np.float32))}),
            "the vector of /photos/0.jpg holds NaN",
        ),
        ("record not JSON", lambda t: parquet(t, {"path": names(), "features": fixed(rows())}, "{x"), "not valid JSON"),
        (
            "record unknown net",
            lambda t: parquet(t, {"path": names(), "features": fixed(rows())}, {**RECORD, "architecture": "vgg"}),
            "unknown architecture",
        ),
        (
            "zeros bomb",
            lambda t: parquet(
                t,
                {"path": names(64), "features": fixed(np.zeros((64, 60_000), np.float32))},
                compression="zstd",
                use_dictionary=False,
            ),
            "inflates from",
        ),
        (
            "huge lists",
            lambda t: parquet(t, {"path": names(1), "features": pa.array([np.zeros(1 << 20, np.float32)])}, None),
            "its vectors have 1048576 floats",  # one row wider than any vector
        ),
    ]


PARQUET_IDS = [
    "garbage", "a FIFO", "no features", "text features", "int features", "path numbers", "ragged", "null path",
    "NaN", "record not JSON", "record unknown net", "zeros bomb", "huge lists",
]  # fmt: skip


@pytest.mark.parametrize("case", PARQUET_IDS)
def test_a_hostile_parquet_file_is_refused_in_one_line(tmp_path, case):
    (name, make, expected), *_ = [c for c in _parquet_cases() if c[0] == case]
    message = refusal(make(tmp_path))
    assert expected in message, message


def test_a_ray_folder_with_a_hostile_manifest_or_part(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    parquet(folder, {"path": names(), "features": fixed(rows())}, None, name="part-00000.parquet")
    for manifest, expected in (
        ("[1]", "not a JSON object"),
        ('{"task": "embed"}', "does not name the model and weights"),
        ('{"task": "classify", "model": "m", "weights": "w"}', "holds classify results"),
        ("{" * 50_000, "not a JSON object"),
    ):
        (folder / "_manifest.json").write_text(manifest)
        assert expected in refusal(folder)
    (folder / "_manifest.json").unlink()
    os.mkfifo(folder / "_manifest.json")
    assert "_manifest.json is a FIFO" in refusal(folder)
    (folder / "_manifest.json").unlink()
    (folder / "_manifest.json").write_text(json.dumps({"task": "embed", "model": "inception_v1", "weights": "w"}))
    parquet(folder, {"path": names(), "features": ragged()}, None, name="part-00001.parquet")
    assert "hold vectors of 7 and 9 floats" in refusal(folder)


# ---------------------------------------------------------------------------------- the command


def test_the_command_refuses_each_in_one_line_and_writes_nothing(tmp_path, capsys):
    made = [
        npz(tmp_path, "nan.npz", **good_npz(features=np.full((4, DIM), np.nan, np.float32))),
        npz(tmp_path, "fewer.npz", **good_npz(paths=np.array(names(3)))),
        parquet(tmp_path, {"path": names(), "features": ragged()}),
        npy(tmp_path, np.ones((4, 8), np.int32), name="int.npy"),
        str(_fifo(tmp_path, "fifo.npz")),
    ]
    for path in made:
        code = within(20, main, ["index", "--embeddings", path, "-o", str(tmp_path / "ix"), "--no-progress"])
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert path in err
    assert not (tmp_path / "ix").exists()
    # A good index is not touched by a refused file.
    good = npz(tmp_path, "good.npz", **good_npz())
    assert main(["index", "--embeddings", good, "-o", str(tmp_path / "ix"), "--no-progress"]) == 0
    before = {p.name: p.read_bytes() for p in (tmp_path / "ix").iterdir()}
    assert main(["index", "--embeddings", made[0], "-o", str(tmp_path / "ix"), "--no-progress"]) == 2
    assert {p.name: p.read_bytes() for p in (tmp_path / "ix").iterdir()} == before
    assert len(Index.load(tmp_path / "ix")) == 4


def test_embed_outputs_keep_the_names_they_can_and_refuse_the_others(tmp_path):
    """`.paths.txt` was written as UTF-8 (a traceback on a name that is not) and a newline split a
    name in two, shifting every later row; Parquet text cannot hold such a name either."""
    from inception_hub.outputs import write_features

    odd = os.fsdecode(b"/p/\xff.jpg")
    for suffix in (".npy", ".npz"):
        write_features(tmp_path / f"f{suffix}", [odd, "/p/b\u2028.jpg"], rows(2), RECORD)
        _, batches, _ = read_all(tmp_path / f"f{suffix}")
        assert batches[0][0] == [odd, "/p/b\u2028.jpg"]
    with pytest.raises(InputError, match="has a newline.*write a .npz file"):
        write_features(tmp_path / "g.npy", ["/p/a\nb.jpg"], rows(1))
    with pytest.raises(InputError, match="is not UTF-8.*write a .npz file"):
        write_features(tmp_path / "g.parquet", [odd], rows(1))
    assert not (tmp_path / "g.npy").exists() and not (tmp_path / "g.parquet").exists()
