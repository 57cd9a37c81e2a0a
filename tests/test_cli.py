"""The `inception-hub` command end to end, on real photos and the synthetic reference checkpoint."""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import tarfile
import termios
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

import inception_hub
from conftest import IMAGES
from inception_hub.cli import main
from inception_hub.images import load_image
from inception_hub.weights import cache_dir

SAMPLE = IMAGES / "imagenet-sample"
GOOD = ["n01443537_goldfish.JPEG", "n02096051_Airedale.JPEG", "n02793495_barn.JPEG", "n03584254_iPod.JPEG"]


@pytest.fixture
def photos(tmp_path):
    """A folder with four photos (one greyscale), one more in a subfolder, and three broken files."""
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    for name in GOOD:
        shutil.copy(SAMPLE / name, root / name)
    shutil.copy(IMAGES / "grace_hopper.jpg", root / "sub" / "grace_hopper.jpg")
    (root / "empty.jpg").write_bytes(b"")
    (root / "random.png").write_bytes(os.urandom(3000))
    data = (SAMPLE / GOOD[2]).read_bytes()
    (root / "sub" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    (root / "notes.txt").write_text("not an image, and not picked up from a folder")
    return root


GOOD_PATHS = 5
BROKEN = {"empty.jpg": "empty file", "random.png": "not an image", "truncated.jpg": "truncated"}


def run(capsys, *argv):
    code = main([*argv] if argv[0] == "models" else [*argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_json_reports_broken_files_and_goes_on(photos, v1_ckpt, clf, capsys):
    code, out, err = run(capsys, "classify", str(photos), "--checkpoint", v1_ckpt, "--format", "json", "--top-k", "3")
    assert code == 1
    rows = json.loads(out)
    assert len(rows) == GOOD_PATHS + len(BROKEN)
    good = [r for r in rows if "predictions" in r]
    bad = {os.path.basename(r["path"]): r["error"] for r in rows if "error" in r}
    assert len(good) == GOOD_PATHS
    for name, reason in BROKEN.items():
        assert reason in bad[name].lower()
        assert f"cannot read {photos}" in err and name in err
    assert "3 of 8 inputs could not be read" in err
    for r in good:
        x = load_image(r["path"], (224, 224))[None]
        expect = clf.predict(x, top=3)[0]
        assert [p["index"] for p in r["predictions"]] == [p.index for p in expect]
        assert [p["label"] for p in r["predictions"]] == [p.label for p in expect]
        np.testing.assert_allclose([p["score"] for p in r["predictions"]], [p.score for p in expect], atol=1e-5)


def test_classify_csv_and_table(photos, v1_ckpt, clf, capsys):
    files = [str(photos / n) for n in GOOD]
    code, out, _ = run(capsys, "classify", *files, "--checkpoint", v1_ckpt, "--format", "csv", "-k", "2")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 8 and rows[0].keys() == {"path", "rank", "index", "label", "score"}
    top1 = clf.predict(load_image(files[1], (224, 224))[None], top=1)[0][0]
    assert (rows[2]["path"], rows[2]["rank"], int(rows[2]["index"]), rows[2]["label"]) == (
        files[1],
        "1",
        top1.index,
        top1.label,
    )
    code, out, _ = run(capsys, "classify", files[0], "--checkpoint", v1_ckpt)
    assert code == 0 and out.startswith(files[0] + "\n  1. ")
    assert clf.predict(load_image(files[0], (224, 224))[None], top=1)[0][0].label in out


def test_globs_and_missing_inputs(photos, v1_ckpt, capsys):
    code, out, err = run(
        capsys,
        "classify",
        str(photos / "*.JPEG"),
        str(photos / "nothing_here.jpg"),
        "--checkpoint",
        v1_ckpt,
        "--format",
        "csv",
        "-k",
        "1",
    )
    assert code == 1
    assert len(list(csv.DictReader(io.StringIO(out)))) == len(GOOD)
    assert f"no images found at {photos / 'nothing_here.jpg'}" in err


@pytest.mark.parametrize("suffix", [".npy", ".npz", ".parquet"])
def test_embed_writes_one_row_per_readable_image_with_its_path(photos, v1_ckpt, checkpoints, tmp_path, capsys, suffix):
    out_file = tmp_path / "out" / f"features{suffix}"
    code, _, err = run(
        capsys, "embed", str(photos), "-o", str(out_file), "--checkpoint", v1_ckpt, "--model", "inception_v1"
    )
    assert code == 1 and f"wrote {GOOD_PATHS} feature vectors of 1024 floats" in err
    if suffix == ".npy":
        feats = np.load(out_file)
        paths = out_file.with_suffix(".paths.txt").read_text().splitlines()
    elif suffix == ".npz":
        with np.load(out_file) as z:
            feats, paths = z["features"], list(z["paths"])
    else:
        table = pq.read_table(out_file)
        feats, paths = np.array(table["features"].to_pylist(), np.float32), table["path"].to_pylist()
    assert feats.shape == (GOOD_PATHS, 1024) and len(paths) == GOOD_PATHS
    fv = inception_hub.load("inception_v1/feature_vector", checkpoint=checkpoints["inception_v1", "v2"])
    expect = fv(np.stack([load_image(p, (224, 224)) for p in paths]))
    np.testing.assert_allclose(feats, expect, atol=1e-5)
    assert not [p for p in out_file.parent.iterdir() if p.name.endswith(".tmp")]


def test_fetch_from_tarball_then_commands_use_the_cache(photos, checkpoints, tmp_path, capsys):
    code, out, _ = run(capsys, "models")
    assert code == 0 and out.count("not cached") == 16
    assert "google/imagenet/inception_resnet_v2/feature_vector/5  299x299+  1536 features  tf2_saved_model" in out
    tarball = tmp_path / "inception_v1_2016_08_28.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(checkpoints["inception_v1", "v1"], arcname="inception_v1.ckpt")
    code, out, _ = run(capsys, "fetch", "inception_v1", "--from", str(tarball))
    assert code == 0 and "inception_v1 weights ready at" in out
    code, out, _ = run(capsys, "models")
    assert out.count("not cached") == 8 and out.count(" cached") == 16
    code, out, _ = run(capsys, "classify", str(photos / GOOD[0]), "--format", "json")
    assert code == 0 and len(json.loads(out)[0]["predictions"]) == 5


def test_model_and_weight_errors_exit_2_with_a_message(photos, checkpoints, capsys):
    code, _, err = run(capsys, "classify", str(photos), "--model", "inception_v1/feature_vector")
    assert code == 2 and "outputs feature vectors; use `inception-hub embed`" in err
    code, _, err = run(capsys, "classify", str(photos), "--model", "resnet50")
    assert code == 2 and "unknown model handle 'resnet50'" in err
    code, _, err = run(capsys, "classify", str(photos), "--checkpoint", str(checkpoints["inception_resnet_v2", "v2"]))
    assert code == 2 and "looks like a inception_resnet_v2 checkpoint" in err and "Traceback" not in err
    code, _, err = run(capsys, "classify", str(photos))  # offline, nothing cached
    assert code == 2 and "inception-hub fetch inception_v1 --from" in err
    code, _, err = run(capsys, "embed", str(photos), "-o", "x.csv")
    assert code == 2 and "use a .npy, .npz or .parquet" in err


def test_console_script_runs(photos, v1_ckpt):
    exe = shutil.which("inception-hub", path=os.path.dirname(sys.executable)) or "inception-hub"
    proc = subprocess.run(
        [
            exe,
            "classify",
            str(photos / GOOD[0]),
            str(photos / "empty.jpg"),
            "--checkpoint",
            v1_ckpt,
            "-k",
            "1",
            "-f",
            "csv",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout.count("\n") == 2 and "empty file" in proc.stderr and "Traceback" not in proc.stderr


def test_a_closed_pipe_ends_quietly(photos, v1_ckpt):
    """`classify ... | head -n 1`: the reader leaves early, and no traceback follows it."""
    cmd = [sys.executable, "-m", "inception_hub.cli", "classify", str(photos), "--checkpoint", v1_ckpt, "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = proc.stdout.readline()
    proc.stdout.close()  # like `head -n 1` exiting
    err = proc.stderr.read().decode()
    proc.wait(timeout=300)
    assert first.strip() and "Traceback" not in err and "BrokenPipeError" not in err, err
    assert proc.returncode == 141


def test_progress_bar_and_rows_share_a_terminal_cleanly(tmp_path, v1_ckpt):
    """In a terminal, each result row starts on a clean line instead of after the progress bar."""
    photos = tmp_path / "many"
    photos.mkdir()
    for i in range(96):  # enough work for the bar to be drawn between rows
        shutil.copy(SAMPLE / GOOD[i % len(GOOD)], photos / f"{i:03d}.JPEG")
    main_fd, child_fd = pty.openpty()
    fcntl.ioctl(child_fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))  # a 100-column terminal
    cmd = [sys.executable, "-m", "inception_hub.cli", "classify", str(photos), "--checkpoint", v1_ckpt, "-k", "1"]
    cmd += ["--batch-size", "4"]
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=child_fd, stderr=child_fd)
    os.close(child_fd)
    out = b""
    while True:
        try:
            chunk = os.read(main_fd, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=300)
    os.close(main_fd)
    rows = [line for line in out.decode(errors="replace").split("\n") if str(photos) in line and ".JPEG" in line]
    assert len(rows) == 96 and "img/s" in out.decode(errors="replace")  # rows and a bar were both drawn
    for row in rows:  # what the terminal shows of the line: the text after its last carriage return
        assert row.rstrip("\r").rsplit("\r", 1)[-1].startswith(str(photos)), repr(row)


def test_a_missing_extra_names_the_pip_install(monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "inception_hub.serve" or m.startswith("inception_hub.serve.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "aiohttp", None)  # what an install without the extra looks like
    assert main(["serve", "--port", "0", "--grpc-port", "-1"]) == 2
    err = capsys.readouterr().err
    assert "pip install 'inception-hub[serve]'" in err and "Traceback" not in err


def test_without_tensorflow_the_core_runs_and_tf_commands_name_the_extra(photos, v1_ckpt, tmp_path):
    """An install without the [tf] extra, as `pip install inception-hub` leaves it: the engine
    commands work from the TF-format checkpoint, and each TensorFlow command says what to install."""
    photo, out = str(photos / GOOD[0]), str(tmp_path)
    runs = [
        ["classify", photo, "--checkpoint", v1_ckpt],
        ["embed", photo, "-o", f"{out}/f.npz", "--checkpoint", v1_ckpt],
        ["classify", photo, "--checkpoint", v1_ckpt, "--backend", "tf"],
        ["export", "inception_v1", f"{out}/e"],
        ["finetune", out, "-o", f"{out}/ft"],
        ["serve-hub", "--port", "0"],
        ["install-hub-cache", "inception_v1/classification/5", "--tfhub-cache-dir", f"{out}/tfhub"],
        ["install-hub-cache", "--list", "--tfhub-cache-dir", f"{out}/tfhub"],  # reading the cache needs no TF
    ]
    code = (
        "import sys\n"
        "for name in ('tensorflow', 'tensorflow_hub', 'tf_keras', 'tensorflow_serving'):\n"
        "    sys.modules[name] = None  # what an install without them looks like\n"
        "from inception_hub.cli import main\n"
        f"for argv in {runs!r}:\n"
        "    print('RC', argv[0], main(argv), flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    codes = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RC ")]
    assert codes == [["classify", "0"], ["embed", "0"]] + [
        [c, "2"] for c in ("classify", "export", "finetune", "serve-hub", "install-hub-cache")
    ] + [["install-hub-cache", "0"]]
    assert proc.stderr.count("pip install 'inception-hub[tf]'") == 5 and "Traceback" not in proc.stderr, proc.stderr
    assert (tmp_path / "f.npz").is_file()


def test_pipes_devices_and_unreadable_folders_are_reported_and_the_run_goes_on(photos, v1_ckpt, tmp_path):
    os.mkfifo(photos / "fifo.jpg")  # would block a plain open() forever
    os.symlink("/dev/zero", photos / "zero.jpg")  # would be read until memory runs out
    (photos / "secret").mkdir()
    shutil.copy(SAMPLE / GOOD[0], photos / "secret" / "hidden.JPEG")
    # Tests run as root, which reads any folder: make this one fail to list as it would for a user.
    script = (
        "import os, sys\n"
        "real = os.scandir\n"
        f"secret = {str(photos / 'secret')!r}\n"
        "def scandir(path='.'):\n"
        "    if os.fspath(path) == secret:\n"
        "        raise PermissionError(13, 'Permission denied', secret)\n"
        "    return real(path)\n"
        "os.scandir = scandir\n"
        "from inception_hub.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    cmd = [sys.executable, "-c", script, "classify", str(photos), "--checkpoint", v1_ckpt, "-f", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    rows = {Path(r["path"]).name: r for r in json.loads(proc.stdout)}
    assert "not a regular file" in rows["fifo.jpg"]["error"] and "not a regular file" in rows["zero.jpg"]["error"]
    assert all("predictions" in rows[name] for name in GOOD)
    assert f"{photos / 'secret'}: cannot read the folder (Permission denied)" in proc.stderr


def test_an_unwritable_output_gets_its_own_exit_status(photos, v1_ckpt, capsys):
    blocked = photos / GOOD[0] / "features.npy"  # a folder that cannot exist: its parent is a file
    assert main(["embed", str(photos / GOOD[1]), "-o", str(blocked), "--checkpoint", v1_ckpt, "--no-progress"]) == 3
    err = capsys.readouterr().err
    assert "cannot write or read" in err and GOOD[0] in err and "Traceback" not in err


def test_a_read_only_cache_still_runs_the_engine(photos, v1_ckpt, monkeypatch, capsys):
    import errno

    import inception_hub.engine.onnx as onnx_engine

    def read_only(path):
        raise OSError(errno.EROFS, "Read-only file system", str(path))

    monkeypatch.setattr(onnx_engine, "atomic_file", read_only)
    argv = ["classify", str(photos / GOOD[0]), "--checkpoint", v1_ckpt, "--backend", "onnxruntime", "-f", "json"]
    with pytest.warns(UserWarning, match="cannot cache the engine model .*Read-only file system"):
        assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)[0]["predictions"][0]["label"]
    assert not list((cache_dir() / "engines").rglob("*.onnx"))


def test_models_and_cache_show_where_weights_came_from_and_clean_orphans(photos, v1_ckpt, capsys):
    assert main(["fetch", "inception_v1", "--from", v1_ckpt, "--no-progress"]) == 0
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "inception_v1/classification/5" in out and "cached (imported, not the release)" in out
    inception_hub.load("inception_v1", backend="onnxruntime")
    engines = cache_dir() / "engines" / "inception_v1"
    (live,) = engines.glob("*.onnx")
    orphan = engines / "classification-0123456789abcdef-g1.onnx"  # from weights no longer cached
    orphan.write_bytes(b"onnx")
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert f"imported from {Path(v1_ckpt).resolve()}" in out and str(live) in out
    assert f"{orphan}  (orphan: its weights are gone)" in out and "MiB" in out
    assert main(["cache", "--clean"]) == 0
    assert live.exists() and not orphan.exists()
    assert main(["cache", "--remove", "inception_v1"]) == 0
    capsys.readouterr()
    assert main(["models"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if "/inception_v1/" in line]
    assert len(rows) == 8 and all(line.endswith("not cached") for line in rows)


def test_export_overwrite_replaces_an_export_and_nothing_else(photos, v1_ckpt, tmp_path, capsys):
    out = tmp_path / "onnx"
    argv = ["export", "inception_v1", str(out), "--format", "onnx", "--checkpoint", v1_ckpt, "--no-progress"]
    assert main(argv) == 0
    assert main(argv) == 2 and "--overwrite to replace it" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0 and (out / "model.onnx").is_file()
    before = sorted(p.name for p in photos.iterdir())
    argv[2] = str(photos)
    assert main([*argv, "--overwrite"]) == 2
    assert "not written by inception-hub" in capsys.readouterr().err
    assert sorted(p.name for p in photos.iterdir()) == before


def test_cache_clean_keeps_engines_of_a_checkpoint_that_still_exists(photos, v1_ckpt, tmp_path, capsys):
    """Engine models built with --checkpoint were labelled orphans and deleted by `cache --clean`;
    they are kept while their checkpoint exists, and cleaned once it is gone."""
    ckpt = tmp_path / "mine.ckpt"
    shutil.copy(v1_ckpt, ckpt)
    inception_hub.load("inception_v1", str(ckpt), backend="onnxruntime")
    (engine,) = (cache_dir() / "engines" / "inception_v1").glob("*.onnx")
    assert main(["cache"]) == 0
    out = capsys.readouterr().out
    assert str(engine) in out and "orphan" not in out
    assert main(["cache", "--clean"]) == 0 and engine.exists()
    ckpt.unlink()
    assert main(["cache"]) == 0 and f"{engine}  (orphan: its weights are gone)" in capsys.readouterr().out
    assert main(["cache", "--clean"]) == 0 and not engine.exists()


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_engine_classify_and_embed_never_import_tensorflow(photos, v1_ckpt, tmp_path, backend):
    code = (
        "import sys\n"
        "from inception_hub.cli import main\n"
        f"photo = {str(photos / GOOD[0])!r}\n"
        f"rc1 = main(['classify', photo, '--checkpoint', {v1_ckpt!r}, '--backend', {backend!r}, '-f', 'json'])\n"
        f"rc2 = main(['embed', photo, '-o', {str(tmp_path / 'f.npz')!r}, '--checkpoint', {v1_ckpt!r},"
        f" '--backend', {backend!r}])\n"
        "import inception_hub\n"
        f"m = inception_hub.load('inception_v1', {v1_ckpt!r}, backend={backend!r})\n"
        "print('RESULT', rc1, rc2, m.backend, 'tensorflow' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert f"RESULT 0 0 {backend} False" in proc.stdout, proc.stdout + proc.stderr


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_embed_explain_and_finetune_never_write_over_what_is_not_theirs(photos, v1_ckpt, tmp_path, capsys, monkeypatch):
    """`embed -o` wrote over any .npy, .npz or .parquet (and the `.paths.txt` beside an .npy),
    `explain -o` wrote into any folder, and `finetune -o` trained for as long as it took before
    finding OUTDIR taken. Each is now refused up front, leaving the path as it was, unless it
    names an output of the same command, which is replaced."""
    import pyarrow as pa

    import inception_hub.finetune

    photo, ckpt = str(photos / GOOD[0]), ["--checkpoint", v1_ckpt]
    mine = tmp_path / "mine"
    (mine / "folder").mkdir(parents=True)
    np.save(mine / "data.npy", np.arange(6.0).reshape(3, 2))  # an .npy without a path list
    (mine / "table.paths.txt").write_text("a list of mine\n")  # where table.npy's list would go
    np.savez(mine / "arrays.npz", paths=np.array(["a"]), features=np.zeros((1, 2)))  # no model record
    pq.write_table(pa.table({"sales": [1, 2]}), mine / "sales.parquet")
    shutil.copy(photo, mine / "folder" / "holiday.jpg")
    before = _files(mine)
    for name in ("data.npy", "table.npy", "arrays.npz", "sales.parquet"):
        code, _, err = run(capsys, "embed", photo, "-o", str(mine / name), *ckpt)
        assert code == 2 and str(mine / name.replace(".npy", "")) in err and "it is left as it is" in err, err
    for out in (mine / "folder", mine / "folder" / "holiday.jpg"):
        code, _, err = run(capsys, "explain", photo, "-o", str(out), *ckpt)
        assert code == 2 and f"{out} already exists" in err, err

    def train(*args, **kwargs):
        raise AssertionError("trained before checking OUTDIR")

    monkeypatch.setattr(inception_hub.finetune, "train", train)
    for out in (mine / "folder", mine / "data.npy"):
        code, _, err = run(capsys, "finetune", str(photos), "-o", str(out), *ckpt)
        assert code == 2 and f"{out} already exists; it is left as it is" in err, err
    assert _files(mine) == before
    for suffix in (".npy", ".npz", ".parquet"):  # outputs of ours are replaced
        for _ in range(2):
            assert run(capsys, "embed", photo, "-o", str(tmp_path / f"features{suffix}"), *ckpt)[0] == 0
    for _ in range(2):
        assert run(capsys, "explain", photo, "-o", str(tmp_path / "maps"), *ckpt)[0] == 0


def test_export_takes_every_precision_a_format_has_and_refuses_the_others_by_format(tmp_path, capsys):
    """fp16 is a TF.js export's weight precision: the command line used to refuse it outright."""
    from inception_hub.cli.parser import build_parser

    args = build_parser().parse_args(
        ["export", "inception_v1", str(tmp_path / "x"), "--format", "tfjs", "--precision", "fp16"]
    )
    assert (args.format, args.precision) == ("tfjs", "fp16")
    assert main(["export", "inception_v1", str(tmp_path / "y"), "--format", "onnx", "--precision", "fp16"]) == 2
    assert "onnx exports in fp32 or int8, not fp16" in capsys.readouterr().err and not (tmp_path / "y").exists()
