"""Index folders and file names that once broke an index: names with a newline, U+2028 or bytes
that are not UTF-8 (an unloadable index, and growing one destroyed it), and hostile folders
(a FIFO hung the server, damaged files crashed it or answered 500 on every search, NaN vectors
gave invalid JSON, a large index without its graph had it built inside requests). Each must
round-trip, or be refused by `Index.load` in one line naming the problem and the fix, quickly."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import tracemalloc

import numpy as np
import pytest

import inception_hub.similar.index as index_module
from inception_hub.cli import main
from inception_hub.errors import InputError
from inception_hub.similar.index import Index, is_index

MODEL = {"handle": "h", "architecture": "inception_v1", "kind": "feature_vector", "weights": "abc"}
#: Names any Linux file system allows: a newline, line and paragraph separators, a tab, quotes and
#: backslashes, a non-BMP character, and bytes that are not UTF-8 (as os.listdir gives them).
NAMES = ["a\nb.jpg", "c\u2028d.jpg", "e\u2029f\r.jpg", "tab\there.jpg", '"q\\.jpg', "\U0001f600.jpg"]
NAMES.append(os.fsdecode(b"\xff\xfe latin-1 \xe9.jpg"))


def vectors(n: int, dim: int = 8, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)


def saved(tmp_path, paths, name="ix", dim=8):
    index = Index(MODEL, dim)
    index.add(list(paths), vectors(len(paths), dim))
    return index.save(tmp_path / name)


def within(seconds: float, fn, *args):
    """fn(*args), failing the test (instead of hanging the suite) if it takes longer."""
    out: dict = {}

    def run():
        try:
            out["value"] = fn(*args)
        except BaseException as e:  # handed to the test thread
            out["error"] = e

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        pytest.fail(f"{fn.__name__} still running after {seconds} s (blocked?)")
    if "error" in out:
        raise out["error"]
    return out.get("value")


# ---------------------------------------------------------------------------------- item 3: names


def test_any_name_the_os_allows_round_trips(tmp_path):
    saved(tmp_path, NAMES)
    loaded = Index.load(tmp_path / "ix")
    assert loaded.paths == NAMES and all(n in loaded for n in NAMES)
    assert loaded.query(vectors(1), k=len(NAMES))[0][0].path in NAMES
    # Grown with more such names and saved over itself: everything is still there.
    loaded.add(["new\nline.jpg", "new\u2028sep.jpg"], vectors(2, seed=1))
    loaded.save(tmp_path / "ix")
    again = Index.load(tmp_path / "ix")
    assert again.paths == [*NAMES, "new\nline.jpg", "new\u2028sep.jpg"]
    assert json.loads((tmp_path / "ix" / "index.json").read_text())["format"] == index_module.FORMAT_VERSION
    assert (tmp_path / "ix" / "paths.jsonl").read_bytes().isascii()  # every awkward character escaped


def test_a_bad_write_never_replaces_a_good_index(tmp_path, monkeypatch):
    """What was staged is read back before the swap: a write that does not read back (here a
    path list written as plain lines, as format 1 did) leaves the old index as it was."""
    saved(tmp_path, ["old.jpg"])
    before = {p.name: p.read_bytes() for p in (tmp_path / "ix").iterdir()}
    index = Index.load(tmp_path / "ix")
    index.add(["a\nb.jpg"], vectors(1))

    def unescaped(f, paths):
        f.write("".join(json.dumps(p) if "\n" not in p else p + "\n" for p in paths).encode("utf-8", "surrogateescape"))

    monkeypatch.setattr(index_module, "write_paths", unescaped)
    with pytest.raises(InputError, match="did not read back as written.*left as it was"):
        index.save(tmp_path / "ix")
    assert {p.name: p.read_bytes() for p in (tmp_path / "ix").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["ix"]  # no staging left behind


def test_an_index_of_format_1_still_loads_and_is_rewritten_in_the_new_one(tmp_path):
    folder = tmp_path / "old"
    folder.mkdir()
    rows = index_module.normalise(vectors(3))
    names = ["/p/one.jpg", "/p/line\u2028sep.jpg", "/p/three.jpg"]  # format 1 wrote U+2028 as is
    np.save(folder / "vectors.npy", rows)
    (folder / "paths.txt").write_text("".join(n + "\n" for n in names), encoding="utf-8")
    (folder / "index.json").write_text(json.dumps({"format": 1, "model": MODEL, "dim": 8, "count": 3}))
    assert is_index(folder)
    old = Index.load(folder)
    assert old.paths == names  # split on newlines only (splitlines also split on U+2028)
    old.add(["/p/four\n.jpg"], vectors(1, seed=3))
    old.save(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["index.json", "paths.jsonl", "vectors.npy"]
    assert Index.load(folder).paths == [*names, "/p/four\n.jpg"]


def test_the_index_command_keeps_such_names(v1_ckpt, tmp_path, capsys):
    """`index` wrote an unloadable index for these names and exited 0; growing it destroyed it."""
    from conftest import IMAGES

    photos = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:3]
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos[0], folder / "a\nb.jpg")
    shutil.copy(photos[1], folder / "c\u2028d.jpg")
    model = ["--model", "inception_v1/feature_vector", "--checkpoint", v1_ckpt, "--no-progress"]
    ix = tmp_path / "ix"
    assert main(["index", str(folder), "-o", str(ix), *model]) == 0
    assert sorted(Index.load(ix).paths) == sorted(str(p) for p in folder.iterdir())
    odd = os.fsencode(folder) + b"/\xff\xfe.jpg"  # not UTF-8
    shutil.copy(photos[2], odd)
    assert main(["index", str(folder), "-o", str(ix), *model]) == 0
    assert "3 photos (1 added)" in capsys.readouterr().err
    assert sorted(Index.load(ix).paths) == sorted(os.path.join(folder, n) for n in os.listdir(folder))
    for fmt in ("table", "csv", "json"):
        assert main(["search", os.fsdecode(odd), "--index", str(ix), "--format", fmt, *model[2:]]) == 0
        out = capsys.readouterr().out
        assert out.isascii() or fmt != "json"
        assert "\\udcff" in out or "\\xff" in out  # the raw byte shown escaped, not a crash


# ------------------------------------------------------------------------------ item 8: folders


def _npy_header(shape, descr="<f4", fortran=False) -> bytes:
    header = repr({"descr": descr, "fortran_order": fortran, "shape": tuple(shape)}).encode()
    header += b" " * (63 - (len(header) + 10) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header


def _meta(folder, **changes):
    meta = json.loads((folder / "index.json").read_text())
    meta.update(changes)
    (folder / "index.json").write_text(json.dumps(meta))


def _model(folder, **changes):
    meta = json.loads((folder / "index.json").read_text())
    meta["model"].update(changes)
    (folder / "index.json").write_text(json.dumps(meta))


def _vectors(folder, array):
    np.save(folder / "vectors.npy", array)


def _huge(folder, count):
    """A header (and index.json) declaring `count` rows over a file of a few bytes."""
    (folder / "vectors.npy").write_bytes(_npy_header((count, 8)) + b"\0" * 64)
    _meta(folder, count=count)


def _replace(folder, name, make):
    (folder / name).unlink()
    make(folder / name)


GOOD = index_module.normalise(vectors(5))

#: (case, how the good 5-photo folder is damaged, what the refusal must name)
HOSTILE = [
    ("no index.json", lambda f: (f / "index.json").unlink(), "is not an index: build one"),
    ("no vectors", lambda f: (f / "vectors.npy").unlink(), "vectors.npy is missing"),
    ("no paths", lambda f: (f / "paths.jsonl").unlink(), "paths.jsonl is missing"),
    ("json not JSON", lambda f: (f / "index.json").write_text("{not json"), "index.json is not valid JSON"),
    ("json a list", lambda f: (f / "index.json").write_text("[1, 2]"), "index.json is not a JSON object"),
    ("json nested", lambda f: (f / "index.json").write_text("[" * 100_000), "index.json is not valid JSON"),
    ("json huge", lambda f: (f / "index.json").write_text(" " * (2 << 20) + "{}"), "index.json is 2097154 bytes"),
    ("json a folder", lambda f: _replace(f, "index.json", os.mkdir), "index.json is a folder"),
    ("json a FIFO", lambda f: _replace(f, "index.json", os.mkfifo), "index.json is a FIFO"),
    ("json a device", lambda f: _replace(f, "index.json", lambda p: os.symlink("/dev/zero", p)), "outside the folder"),
    ("format unknown", lambda f: _meta(f, format="x"), "no format this version knows"),
    ("format newer", lambda f: _meta(f, format=3), "written by a newer inception-hub (format 3"),
    ("format bool", lambda f: _meta(f, format=True), "no format this version knows"),
    ("model missing", lambda f: _meta(f, model=None), "model is not a record"),
    ("model numbers", lambda f: _model(f, weights=12), "model is not a record"),
    ("dim negative", lambda f: _meta(f, dim=-8), "dim is not a whole number"),
    ("dim huge", lambda f: _meta(f, dim=10**9), "dim is not a whole number"),
    ("count text", lambda f: _meta(f, count="5"), "count is not a whole number"),
    ("count more", lambda f: _meta(f, count=6), "not [6, 8]"),
    ("count huge", lambda f: _meta(f, count=10**12), "not [1000000000000, 8]"),
    ("vectors a FIFO", lambda f: _replace(f, "vectors.npy", os.mkfifo), "vectors.npy is a FIFO"),
    ("vectors linked out", lambda f: _replace(f, "vectors.npy", lambda p: os.symlink("/etc/hostname", p)), "outside"),
    ("vectors empty", lambda f: (f / "vectors.npy").write_bytes(b""), "vectors.npy is not a .npy file"),
    ("vectors garbage", lambda f: (f / "vectors.npy").write_bytes(os.urandom(300)), "vectors.npy is not a .npy file"),
    (
        "vectors truncated",
        lambda f: (f / "vectors.npy").write_bytes((f / "vectors.npy").read_bytes()[:-7]),
        "bytes where its header says",
    ),
    ("vectors float64", lambda f: _vectors(f, GOOD.astype(np.float64)), "holds float64, not float32"),
    ("vectors int", lambda f: _vectors(f, np.ones((5, 8), np.int32)), "not a 2-D float matrix"),
    ("vectors 1-D", lambda f: _vectors(f, GOOD.reshape(-1)), "not a 2-D float matrix"),
    ("vectors 3-D", lambda f: _vectors(f, GOOD[None]), "not a 2-D float matrix"),
    ("vectors wide", lambda f: _vectors(f, np.ones((5, 9), np.float32) / 3), "not [5, 8]"),
    ("vectors Fortran", lambda f: _vectors(f, np.asfortranarray(np.ones((5, 8), np.float32))), "layout"),
    ("vectors objects", lambda f: _vectors(f, np.array([[None] * 8] * 5, object)), "layout"),
    ("vectors huge shape", lambda f: _huge(f, 10**12), "bytes where its header says"),
    ("vectors NaN", lambda f: _vectors(f, np.where(np.eye(5, 8) > 0, np.nan, GOOD).astype(np.float32)), "NaN"),
    ("vectors inf", lambda f: _vectors(f, np.full((5, 8), np.inf, np.float32)), "row 0 holds NaN or infinite"),
    ("vectors zero", lambda f: _vectors(f, np.zeros((5, 8), np.float32)), "row 0 has length 0, not 1"),
    ("vectors unnormalised", lambda f: _vectors(f, GOOD * 3), "has length 3, not 1"),
    ("paths cut", lambda f: (f / "paths.jsonl").write_text('"a"\n"b"\n"c"\n"d"\n"e"'), "does not end with a newline"),
    ("paths fewer", lambda f: (f / "paths.jsonl").write_text('"a"\n"b"\n'), "lists 2 photos where the index holds 5"),
    ("paths not JSON", lambda f: (f / "paths.jsonl").write_text("a\nb\nc\nd\ne\n"), "line 1 is not a JSON string"),
    ("paths numbers", lambda f: (f / "paths.jsonl").write_text("1\n2\n3\n4\n5\n"), "line 1 is not a JSON string"),
    ("paths bytes", lambda f: (f / "paths.jsonl").write_bytes(b'"\xff"\n' * 5), "line 1 is not a JSON string"),
    ("paths twice", lambda f: (f / "paths.jsonl").write_text('"a"\n' * 5), "lists a photo twice"),
    ("paths huge", lambda f: (f / "paths.jsonl").write_bytes(b" " * (5 * 24_600 + 100)), "bytes, more than"),
    ("paths a FIFO", lambda f: _replace(f, "paths.jsonl", os.mkfifo), "paths.jsonl is a FIFO"),
]


@pytest.mark.parametrize("case, damage, expected", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_folder_is_refused_in_one_line_quickly(tmp_path, case, damage, expected):
    folder = saved(tmp_path, [f"/photos/{i}.jpg" for i in range(5)])
    damage(folder)
    fifos = [p for p in folder.iterdir() if p.is_fifo()]
    try:
        tracemalloc.start()
        with pytest.raises(InputError) as refused:
            within(10, Index.load, folder)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
        for fifo in fifos:  # release a reader that would block on it (none should)
            with contextlib.suppress(OSError):
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
    message = str(refused.value)
    assert expected in message, message
    assert "\n" not in message and str(folder) in message
    assert "--overwrite" in message or "build one with" in message  # the fix
    assert peak < 4 << 20, peak  # nothing declared was allocated


def test_hostile_folders_are_refused_by_the_commands_too(tmp_path, capsys):
    """`index -o` (growing) and `search --index` on such folders: one line, exit status 2."""
    folder = saved(tmp_path, [f"/photos/{i}.jpg" for i in range(5)])
    _replace(folder, "index.json", os.mkfifo)  # is_index used to block on it
    code = within(10, main, ["index", "x.jpg", "-o", str(folder), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "is not an index" in err and "Traceback" not in err
    folder = saved(tmp_path, [f"/photos/{i}.jpg" for i in range(5)], name="ix2")
    _meta(folder, count=4)
    for argv in (["index", "x.jpg", "-o", str(folder)], ["search", "x.jpg", "--index", str(folder)]):
        assert within(10, main, [*argv, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "damaged" in err and "--overwrite" in err, err


def test_nan_and_zero_vectors_never_enter_an_index():
    index = Index(MODEL, 8)
    bad = vectors(3)
    bad[1, 2] = np.nan
    with pytest.raises(InputError, match="feature vector of b holds NaN"):
        index.add(["a", "b", "c"], bad)
    with pytest.raises(InputError, match="feature vector of z holds all zeros"):
        index.add(["z"], np.zeros((1, 8), np.float32))
    assert len(index) == 0 and "a" not in index  # the batch left nothing behind
    index.add(["a"], vectors(1))
    with pytest.raises(InputError, match="query vector holds NaN"):
        index.query(np.full(8, np.nan, np.float32))


# ------------------------------------------------------------------------------- item 8: graphs


@pytest.fixture
def large(monkeypatch, tmp_path):
    """A "large" index (above EXACT_LIMIT, here 50) saved with its graph, and build_graph counted."""
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 50)
    built = []
    build = index_module.build_graph
    monkeypatch.setattr(index_module, "build_graph", lambda parts: built.append(1) or build(parts))
    folder = saved(tmp_path, [f"/p/{i}.jpg" for i in range(200)])
    assert built == [1] and (folder / "hnsw.usearch").is_file()
    built.clear()
    return folder, built


def test_a_large_index_opens_its_graph_and_queries_build_nothing(large):
    folder, built = large
    index = Index.load(folder)
    assert index.approximate and built == []
    truth = index.query(vectors(4, seed=9), k=5, exact=True)
    hits = index.query(vectors(4, seed=9), k=5)
    assert built == [] and [h.index for h in hits[0]][:1] == [h.index for h in truth[0]][:1]


GRAPH_DAMAGE = [
    ("missing", lambda p: p.unlink()),
    ("garbage", lambda p: p.write_bytes(os.urandom(p.stat().st_size))),
    ("truncated", lambda p: p.write_bytes(p.read_bytes()[:-100])),
    ("a FIFO", lambda p: (p.unlink(), os.mkfifo(p))),
    ("a folder", lambda p: (p.unlink(), p.mkdir())),
]


@pytest.mark.parametrize("how, damage", GRAPH_DAMAGE, ids=[g[0] for g in GRAPH_DAMAGE])
def test_a_large_index_without_a_usable_graph_gets_one_at_load(large, how, damage):
    """Built at load (before a server listens), never in a query; the graph is derived data, so a
    damaged one is rebuilt from the checked vectors rather than opened."""
    folder, built = large
    damage(folder / "hnsw.usearch")
    index = within(60, Index.load, folder)
    assert built == [1] and index.approximate
    index.query(vectors(3, seed=4), k=5)
    assert built == [1]


def test_a_graph_with_flipped_bytes_is_not_opened(tmp_path):
    """usearch crashed the process (a segfault) on some damaged graphs: the checksum keeps them
    from being opened. In a child process, so a crash fails this test and not the suite."""
    code = f"""
import os, numpy as np
import inception_hub.similar.index as ix
ix.EXACT_LIMIT = 50
index = ix.Index({MODEL!r}, 8)
index.add([str(i) for i in range(300)], np.random.default_rng(0).standard_normal((300, 8)).astype(np.float32))
index.save({str(tmp_path / "ix")!r})
path = {str(tmp_path / "ix" / "hnsw.usearch")!r}
data = bytearray(open(path, "rb").read())
rng = np.random.default_rng(1)
for seed in range(20):
    for i in rng.integers(128, len(data), 20):
        data[i] = rng.integers(0, 256)
    open(path, "wb").write(bytes(data))
    loaded = ix.Index.load(os.path.dirname(path))
    assert loaded.approximate and len(loaded.query(np.ones(8, np.float32), 5)[0]) == 5
print("ok")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (proc.returncode, proc.stderr[-2000:])
