"""`--engine ray` and `inception_hub.distributed` on local Ray clusters, with the synthetic
reference checkpoint: same results as the single-process path, error rows, resuming after a
killed worker or driver, and joining an existing cluster."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import ray

import inception_hub
from conftest import IMAGES
from inception_hub import distributed, pipeline
from inception_hub.cli import main
from inception_hub.distributed.cluster import reap_orphans
from inception_hub.errors import InceptionHubError, InputError

pytestmark = pytest.mark.slow  # starts Ray clusters

SAMPLE = IMAGES / "imagenet-sample"
BROKEN = {"empty.jpg": b"", "notes.jpg": b"not an image at all"}


def _photos(root: Path, count: int) -> Path:
    """`count` real photos (greyscale ones among them), a truncated JPEG and two files that are
    not images."""
    (root / "sub").mkdir(parents=True)
    for i, src in enumerate(sorted(SAMPLE.iterdir())[:count]):
        os.symlink(src, root / ("sub" if i % 3 == 0 else "") / src.name)
    for name, data in BROKEN.items():
        (root / name).write_bytes(data)
    data = (SAMPLE / "n02793495_barn.JPEG").read_bytes()
    (root / "sub" / "truncated.jpg").write_bytes(data[: len(data) // 3])
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("ray") / "photos", 40)


@pytest.fixture(scope="module")
def many_photos(tmp_path_factory):
    return _photos(tmp_path_factory.mktemp("ray") / "many", 300)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One local cluster for the in-process API tests."""
    mp = pytest.MonkeyPatch()
    mp.setenv("INCEPTION_HUB_CACHE", str(tmp_path_factory.mktemp("ray-cache")))
    assert distributed.connect(num_cpus=2, quiet=True)
    yield
    ray.shutdown()
    mp.undo()


def _local(handle, ckpt, paths, kind=None):
    """The single-process results: {path: output row or error}."""
    module = inception_hub.load(handle, ckpt, kind=kind)
    return {r.path: (r.output if r.error is None else r.error) for r in pipeline.run(module, paths)}


def _cli(*argv, check=None, **kw):
    exe = shutil.which("inception-hub", path=os.path.dirname(sys.executable))
    proc = subprocess.run([exe, *argv, "--no-progress"], capture_output=True, text=True, timeout=300, **kw)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    return proc


# The Python API --------------------------------------------------------------------------------


def test_embed_dataset_equals_single_process_and_keeps_error_rows(cluster, photos, v1_ckpt):
    paths, _ = pipeline.find_images([photos])
    ds = distributed.embed([photos], "inception_v1/feature_vector", checkpoint=v1_ckpt, batch_size=8)
    assert isinstance(ds, ray.data.Dataset)
    rows = ds.take_all()
    got = {r["path"]: r for r in rows}
    assert len(rows) == len(got) == len(paths) == 43
    expected = _local("inception_v1/feature_vector", v1_ckpt, paths)
    for path, want in expected.items():
        row = got[path]
        if isinstance(want, str):
            assert row["features"] is None and row["error"] == want
        else:
            assert row["error"] is None
            np.testing.assert_allclose(np.asarray(row["features"]), want, rtol=0, atol=1e-5)
    errors = {Path(p).name: r["error"] for p, r in got.items() if r["error"]}
    assert set(errors) == {"empty.jpg", "notes.jpg", "truncated.jpg"}
    assert "empty" in errors["empty.jpg"] and "truncated" in errors["truncated.jpg"]


def test_classify_a_dataset_of_bytes_passes_other_columns_through(cluster, photos, v1_ckpt):
    paths = sorted(str(p) for p in photos.glob("*.JPEG"))[:12]
    items = [{"path": p, "bytes": Path(p).read_bytes(), "album": f"a{i}"} for i, p in enumerate(paths)]
    ds = distributed.classify(ray.data.from_items(items), "inception_v1", checkpoint=v1_ckpt, top_k=3)
    rows = {r["path"]: r for r in ds.take_all()}
    clf = inception_hub.load("inception_v1", v1_ckpt)
    predictions = clf.predict(np.stack([inception_hub.load_image(p, (224, 224)) for p in paths]), 3)
    expected = dict(zip(paths, predictions, strict=True))
    assert len(rows) == 12
    for i, path in enumerate(paths):
        row, want = rows[path], expected[path]
        assert row["album"] == f"a{i}" and "bytes" not in row and row["error"] is None
        assert list(row["labels"]) == [p.label for p in want]
        assert list(row["indices"]) == [p.index for p in want]
        np.testing.assert_allclose(row["scores"], [p.score for p in want], atol=1e-5)


def test_a_saved_model_runs_on_the_actors(cluster, photos, v1_ckpt, tmp_path):
    from inception_hub.export import export

    saved = export("google/imagenet/inception_v1/classification/5", tmp_path / "m", v1_ckpt, progress=False)
    paths = sorted(str(p) for p in photos.glob("*.JPEG"))[:6]
    rows = {r["path"]: r for r in distributed.classify(paths, saved, top_k=2).take_all()}
    features = {r["path"]: r for r in distributed.embed(paths, saved).take_all()}
    module = inception_hub.load(saved)
    x = np.stack([inception_hub.load_image(p, (224, 224)) for p in paths])
    for path, want, fv in zip(
        paths, module.predict(x, 2), inception_hub.load(saved, kind="feature_vector")(x), strict=True
    ):
        assert list(rows[path]["labels"]) == [p.label for p in want]
        np.testing.assert_allclose(features[path]["features"], fv, atol=1e-5)


def _listening(pids: set[int]) -> list[tuple[str, int]]:
    """(address, pid) of the TCP sockets these processes listen on, read from /proc."""
    inodes = {}
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes[target[8:-1]] = pid
        except OSError:
            continue
    out = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A" or fields[9] not in inodes:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(fields[1].split(":")[0])
            raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))  # little-endian words
            out.append((socket.inet_ntop(family, raw), inodes[fields[9]]))
    return out


def test_a_local_cluster_listens_on_loopback_only(cluster):
    """Ray's ports accept code to run, without authentication: a cluster started for a job must
    not be reachable from other machines."""
    listening = _listening(set(_descendants(os.getpid())))
    assert len(listening) >= 3  # GCS, raylet, object manager, ...
    loopback = ("127.0.0.1", "::1", "::ffff:127.0.0.1")
    exposed = [(ip, _cmdline(pid)[:60]) for ip, pid in listening if ip not in loopback]
    assert not exposed, exposed


def test_a_local_cluster_that_does_not_start_is_a_clear_error(monkeypatch, photos, v1_ckpt, tmp_path, capsys):
    """Ray gives up on a slow raylet after 30 s with a bare Exception: no traceback for that."""

    def timed_out(**_):
        raise Exception("The current node timed out during startup.")  # what Ray raises

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", timed_out)
    with pytest.raises(InceptionHubError, match="the local Ray cluster did not start: The current node timed out"):
        distributed.connect()
    out = tmp_path / "out"
    assert main(["embed", str(photos), "--engine", "ray", "-o", str(out), "--checkpoint", v1_ckpt]) == 2
    err = capsys.readouterr().err
    assert "the local Ray cluster did not start" in err and "Traceback" not in err


def test_bad_arguments_are_refused_before_any_work(v1_ckpt, tmp_path):
    with pytest.raises(InputError, match="feature vectors"):
        distributed.ModelSource.prepare("classify", "inception_v1/feature_vector", v1_ckpt)
    with pytest.raises(InputError, match="unknown task"):
        distributed.ModelSource.prepare("segment", "inception_v1", v1_ckpt)
    with pytest.raises(InputError, match="no images"):
        distributed.run_job("embed", [], tmp_path / "out", "inception_v1")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x.txt").write_text("someone else's")
    with pytest.raises(InceptionHubError, match="not an empty folder"):
        distributed.run_job("embed", ["a.jpg"], tmp_path / "busy", "inception_v1")


def test_a_resolved_source_travels_whole_and_spellings_of_one_model_are_one_job(v1_ckpt, tmp_path):
    """The CLI resolves the model once and hands the `Source` to the job; a job's manifest names
    the model by its handle, so a resume spelled another way (or recorded as typed by an
    earlier version) is the same job."""
    import hashlib

    import pyarrow as pa

    from inception_hub.source import resolve_source

    source = resolve_source("inception_v1", v1_ckpt)
    with pytest.raises(InputError, match="resolved already"):
        distributed.run_job("embed", ["a.jpg"], tmp_path / "o", source, checkpoint=v1_ckpt)
    with pytest.raises(InputError, match="feature vectors"):
        distributed.ModelSource.prepare("classify", resolve_source("inception_v1/feature_vector", v1_ckpt))
    prepared = distributed.ModelSource.prepare("embed", source, progress=False)
    assert prepared.source.spec.kind == "feature_vector" and prepared.source.checkpoint == v1_ckpt
    out = tmp_path / "done"  # a finished job, as an earlier version recorded it: nothing left to run
    out.mkdir()
    job = {"format": 1, "task": "classify", "model": "inception_v1", "top_k": 5, "precision": "fp32"}
    job.update(partition_size=1000, images=1, partitions=1, paths_sha256=hashlib.sha256(b"a.jpg").hexdigest())
    (out / "_manifest.json").write_text(json.dumps(job))
    pq.write_table(pa.table({"path": ["a.jpg"], "error": ["not an image"]}), out / "part-00000.parquet")
    for model in ("inception_v1", source.name, source):
        s = distributed.run_job("classify", ["a.jpg"], out, model, resume=True, progress=False)
        assert (s.written, s.skipped, s.errors) == (0, 1, 1)
    with pytest.raises(InceptionHubError, match="model: 'inception_v1' then"):
        distributed.run_job("classify", ["a.jpg"], out, "inception_resnet_v2", resume=True)


# The command line ------------------------------------------------------------------------------


def test_classify_cli_on_ray_equals_the_local_cli(photos, v1_ckpt, tmp_path):
    out = tmp_path / "out"
    job = ["classify", str(photos), "--engine", "ray", "-o", str(out), "--checkpoint", v1_ckpt]
    ray_run = _cli(*job, "--partition-size", "16", "-k", "3", check=1)
    assert "3 could not be read" in ray_run.stderr and "Traceback" not in ray_run.stderr
    assert "cannot read" in ray_run.stderr and "truncated.jpg" in ray_run.stderr
    local = _cli("classify", str(photos), "--checkpoint", v1_ckpt, "-k", "3", "--format", "json", check=1)
    expected = {r["path"]: r for r in json.loads(local.stdout)}

    parts = sorted(out.glob("part-*.parquet"))
    assert [p.name for p in parts] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert (out / "_SUCCESS").is_file()
    table = distributed.read_output(out)
    assert table.column_names == ["path", "labels", "indices", "scores", "error"]
    paths, _ = pipeline.find_images([photos])
    assert table["path"].to_pylist() == paths  # input order, partition by partition
    for row in table.to_pylist():
        want = expected[row["path"]]
        if "error" in want:
            assert row["error"] == want["error"] and row["labels"] is None
        else:
            assert row["labels"] == [p["label"] for p in want["predictions"]]
            assert row["indices"] == [p["index"] for p in want["predictions"]]
            np.testing.assert_allclose(row["scores"], [p["score"] for p in want["predictions"]], atol=1e-5)

    again = _cli(*job, check=2)
    assert "--resume" in again.stderr
    other = _cli(*job, "--resume", "--partition-size", "8", check=2)
    assert "partition_size: 16 then, 8 now" in other.stderr
    done = _cli(*job, "--partition-size", "16", "-k", "3", "--resume", check=1)
    assert "wrote 0 of 3 partitions (3 were already there)" in done.stderr


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _start_job(args: list[str]) -> subprocess.Popen:
    exe = shutil.which("inception-hub", path=os.path.dirname(sys.executable))
    return subprocess.Popen([exe, *args, "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_partitions(out: Path, proc: subprocess.Popen, count: int) -> None:
    deadline = time.monotonic() + 240
    while len(list(out.glob("part-*.parquet"))) < count:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, "the job wrote no partition in time"
        time.sleep(0.05)


def _check_complete(out: Path, paths: list[str], expected: dict) -> None:
    table = distributed.read_output(out)
    assert table["path"].to_pylist() == paths  # complete, in order, and so without duplicates
    for row in table.to_pylist():
        want = expected[row["path"]]
        if isinstance(want, str):
            assert row["error"] == want and row["features"] is None
        else:
            np.testing.assert_allclose(row["features"], want, atol=1e-5)


def test_killed_worker_and_killed_driver_then_resume_give_complete_output(many_photos, v1_ckpt, tmp_path):
    paths, _ = pipeline.find_images([many_photos])
    total = -(-len(paths) // 8)
    expected = _local("inception_v1/feature_vector", v1_ckpt, paths)
    out = tmp_path / "features"
    args = [
        "embed",
        str(many_photos),
        "--engine",
        "ray",
        "-o",
        str(out),
        "--checkpoint",
        v1_ckpt,
        "--partition-size",
        "8",
        "--batch-size",
        "8",
    ]

    # A model actor dies mid-run: Ray restarts it and retries its work.
    job = _start_job(args)
    _wait_for_partitions(out, job, 1)
    workers = [p for p in _descendants(job.pid) if "MapWorker" in _cmdline(p)]
    assert workers, "no model actor found"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    _, err = job.communicate(timeout=300)
    partitions = len(list(out.glob("part-*.parquet")))
    if job.returncode == 1:  # finished despite the lost worker (1: the three unreadable files)
        assert partitions == total and "3 could not be read" in err
    # Either way, --resume completes what is missing and redoes nothing.
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    resumed = _cli(*args, "--resume", check=1)
    assert f"({partitions} were already there)" in resumed.stderr
    assert all(p.stat().st_mtime_ns == before[p.name] for p in out.glob("part-*.parquet") if p.name in before)
    _check_complete(out, paths, expected)

    # The whole job dies (driver and cluster): --resume writes only the missing partitions.
    out2 = tmp_path / "features2"
    args2 = [a if a != str(out) else str(out2) for a in args]
    job = _start_job(args2)
    _wait_for_partitions(out2, job, 2)
    family = _descendants(job.pid)
    job.send_signal(signal.SIGKILL)
    job.wait()
    for pid in family:  # the local cluster goes with its driver
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    written = {p.name: p.stat().st_mtime_ns for p in out2.glob("part-*.parquet")}
    assert 2 <= len(written) < total
    assert not list(out2.glob(".part-*")) or all(p.suffix == ".tmp" for p in out2.glob(".part-*"))
    assert not (out2 / "_SUCCESS").exists()
    resumed = _cli(*args2, "--resume", check=1)
    assert f"wrote {total - len(written)} of {total} partitions ({len(written)} were already there)" in resumed.stderr
    assert all((out2 / name).stat().st_mtime_ns == ns for name, ns in written.items())
    assert (out2 / "_SUCCESS").is_file()
    _check_complete(out2, paths, expected)


def test_a_killed_drivers_local_cluster_is_stopped_within_seconds(many_photos, v1_ckpt, tmp_path):
    """Ray's agents outlive a driver killed with kill -9 for minutes; the driver's watchdog
    stops them (and everything else of that cluster) within seconds, with no other run needed."""
    out = tmp_path / "out"
    args = ["embed", str(many_photos), "--engine", "ray", "-o", str(out), "--checkpoint", v1_ckpt]
    args += ["--partition-size", "4", "--batch-size", "4"]
    job = _start_job(args)
    _wait_for_partitions(out, job, 1)
    cluster = [p for p in _descendants(job.pid) if "reaper.py" not in _cmdline(p)]
    names = " ".join(_cmdline(p) for p in cluster)
    assert "raylet" in names and "ray::DashboardAgent" in names, names  # its own local cluster
    job.send_signal(signal.SIGKILL)
    job.wait()
    deadline = time.monotonic() + 30
    while (left := [p for p in cluster if _alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, [_cmdline(p) for p in left]


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def test_processes_of_a_dead_drivers_cluster_are_stopped_and_others_left_alone():
    """The mechanism behind cleaning up after a killed driver: processes carrying the pid of a
    driver that is gone are stopped; those of a live driver are not."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = subprocess.Popen(["sleep", "60"], env=dict(os.environ, INCEPTION_HUB_RAY_DRIVER=str(gone.pid)))
    kept = subprocess.Popen(["sleep", "60"], env=dict(os.environ, INCEPTION_HUB_RAY_DRIVER=str(os.getppid())))
    try:
        stopped = reap_orphans()
        assert orphan.pid in stopped and kept.pid not in stopped
        assert orphan.wait(10) == -signal.SIGKILL and kept.poll() is None
    finally:
        kept.kill()
        orphan.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_address_joins_an_existing_cluster(photos, v1_ckpt, tmp_path):
    port = _free_port()

    def job(out):
        return [
            "embed",
            str(photos),
            "--engine",
            "ray",
            "--address",
            f"127.0.0.1:{port}",
            "-o",
            str(out),
            "--checkpoint",
            v1_ckpt,
        ]

    ray_cli = shutil.which("ray", path=os.path.dirname(sys.executable))
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        out = tmp_path / "emb"
        deadline = time.monotonic() + 120
        while True:  # the head takes a few seconds to listen
            assert head.poll() is None, "ray start --head failed"
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the Ray head did not start"
                time.sleep(0.5)
        proc = _cli(*job(out))
        assert proc.returncode == 1, proc.stderr
        table = pq.read_table(out)  # the folder reads as one dataset
        assert table.num_rows == 43 and table["error"].null_count == 40
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=60)
    bad = _cli(*job(tmp_path / "none"), check=2)
    assert "cannot reach a Ray cluster" in bad.stderr and "Traceback" not in bad.stderr


def test_local_engine_refuses_ray_only_flags(photos, v1_ckpt):
    proc = _cli("embed", str(photos), "-o", "x.npy", "--resume", "--checkpoint", v1_ckpt, check=2)
    assert "--resume" in proc.stderr and "--engine ray" in proc.stderr
    proc = _cli("classify", str(photos), "--engine", "ray", "--checkpoint", v1_ckpt, check=2)
    assert "--output" in proc.stderr
