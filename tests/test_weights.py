"""Checkpoint reading, validation, the cache, and downloads from a real local HTTP server."""

from __future__ import annotations

import dataclasses
import http.server
import io
import multiprocessing
import os
import shutil
import socket
import tarfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from inception_hub import weights as W
from inception_hub.catalog import CARDS
from inception_hub.errors import CheckpointError, CheckpointMismatchError, WeightsUnavailableError

ARCH = "inception_v1"


def test_v1_and_v2_formats_read_identically(checkpoints, synth_weights):
    a = W.read_checkpoint(checkpoints[ARCH, "v1"])
    b = W.read_checkpoint(checkpoints[ARCH, "v2"])
    assert a.keys() == b.keys() == synth_weights[ARCH].keys()
    for name, value in synth_weights[ARCH].items():
        np.testing.assert_array_equal(a[name], value)
        np.testing.assert_array_equal(b[name], value)


def test_v2_prefix_can_be_given_as_index_file_or_directory(checkpoints):
    prefix = checkpoints[ARCH, "v2"]
    names = set(W.read_checkpoint(prefix))
    assert set(W.read_checkpoint(str(prefix) + ".index")) == names
    assert set(W.read_checkpoint(prefix.parent)) == names


def test_irv2_aux_logits_are_expected_and_kept(checkpoints):
    w = W.validate("inception_resnet_v2", W.read_checkpoint(checkpoints["inception_resnet_v2", "v2"]))
    assert "InceptionResnetV2/AuxLogits/Logits/weights" in w and len(w) == 908


def test_mismatched_checkpoint_lists_missing_unexpected_and_misshaped(synth_weights):
    w = dict(synth_weights[ARCH])
    del w["InceptionV1/Mixed_4c/Branch_1/Conv2d_0b_3x3/weights"]
    w["InceptionV1/Extra/weights"] = np.zeros(3, np.float32)
    w["InceptionV1/Logits/Conv2d_0c_1x1/biases"] = np.zeros(1000, np.float32)
    w["global_step"] = np.zeros((), np.float32)  # bookkeeping is tolerated
    with pytest.raises(CheckpointMismatchError) as e:
        W.validate(ARCH, w, "my.ckpt")
    err = e.value
    assert err.missing == ["InceptionV1/Mixed_4c/Branch_1/Conv2d_0b_3x3/weights"]
    assert err.unexpected == ["InceptionV1/Extra/weights"]
    assert err.mismatched == ["InceptionV1/Logits/Conv2d_0c_1x1/biases: checkpoint (1000,), network (1001,)"]
    text = str(err)
    assert "my.ckpt does not match inception_v1" in text
    assert "missing (1)" in text and "unexpected (1)" in text and "wrong shape (1)" in text


def test_wrong_architecture_is_named(checkpoints):
    with pytest.raises(CheckpointMismatchError, match="looks like a inception_v1 checkpoint"):
        W.load_weights("inception_resnet_v2", checkpoints[ARCH, "v1"])


@pytest.mark.parametrize(
    "content,match",
    [(b"", "not a readable TensorFlow checkpoint"), (b"garbage" * 100, "not a readable TensorFlow checkpoint")],
)
def test_unreadable_checkpoint_gets_a_clear_error(tmp_path, content, match):
    p = tmp_path / "broken.ckpt"
    p.write_bytes(content)
    with pytest.raises(CheckpointError, match=match):
        W.read_checkpoint(p)


def test_missing_checkpoint_path(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        W.read_checkpoint(tmp_path / "nope.ckpt")


def make_tarball(path: Path, ckpt: Path, member: str, extra: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in (extra or {}).items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.add(ckpt, arcname=member)
    return path


@pytest.fixture(scope="module")
def release_tarball(checkpoints, tmp_path_factory):
    """A stand-in for inception_v1_2016_08_28.tar.gz holding the synthetic checkpoint."""
    root = tmp_path_factory.mktemp("release")
    return make_tarball(root / "inception_v1_2016_08_28.tar.gz", checkpoints[ARCH, "v1"], "inception_v1.ckpt")


def test_fetch_from_local_tarball_fills_the_cache(release_tarball, synth_weights):
    assert not W.is_cached(ARCH)
    path = W.fetch(ARCH, release_tarball)
    assert path == W.cached_path(ARCH) and W.is_cached(ARCH)
    w = W.load_weights(ARCH)  # no checkpoint: the cache is used, nothing is downloaded (offline)
    np.testing.assert_array_equal(
        w["InceptionV1/Conv2d_1a_7x7/weights"], synth_weights[ARCH]["InceptionV1/Conv2d_1a_7x7/weights"]
    )
    assert not list(path.parent.glob("*.tmp"))


def test_tarball_with_unsafe_member_is_refused(tmp_path, checkpoints):
    bad = tmp_path / "evil.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        tar.add(checkpoints[ARCH, "v1"], arcname="../inception_v1.ckpt")
    with pytest.raises(CheckpointError, match="no inception_v1.ckpt in the archive"):
        W.read_checkpoint(bad, ARCH)
    link = tmp_path / "link.tar.gz"
    with tarfile.open(link, "w:gz") as tar:
        info = tarfile.TarInfo("inception_v1.ckpt")
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(info)
    with pytest.raises(CheckpointError, match="refusing unsafe archive member"):
        W.read_checkpoint(link, ARCH)


def test_tarball_only_extracts_the_checkpoint(tmp_path, checkpoints):
    tb = make_tarball(tmp_path / "r.tar.gz", checkpoints[ARCH, "v1"], "inception_v1.ckpt", {"README": b"hi"})
    out = tmp_path / "out"
    out.mkdir()
    assert W.extract_checkpoint(tb, out, ARCH).name == "inception_v1.ckpt"
    assert [p.name for p in out.iterdir()] == ["inception_v1.ckpt"]


def test_offline_error_says_what_to_fetch_and_where(monkeypatch):
    with pytest.raises(WeightsUnavailableError) as e:
        W.load_weights(ARCH)
    text = str(e.value)
    assert "https://download.tensorflow.org/models/inception_v1_2016_08_28.tar.gz" in text
    assert str(W.download_path(ARCH)) in text
    assert "inception-hub fetch inception_v1 --from" in text


def test_tarball_dropped_into_downloads_is_used_offline(release_tarball):
    W.download_path(ARCH).parent.mkdir(parents=True)
    W.download_path(ARCH).write_bytes(release_tarball.read_bytes())
    assert len(W.load_weights(ARCH)) == 230


# A real HTTP server on loopback: ranges, and a connection that drops mid-file -----------------


class _Handler(http.server.BaseHTTPRequestHandler):
    data: bytes = b""
    cut_first_at: int | None = None  # drop the first response after this many bytes
    requests: list[str | None] = []

    def do_GET(self):  # noqa: N802
        cls = type(self)
        rng = self.headers.get("Range")
        cls.requests.append(rng)
        start = int(rng.split("=")[1].split("-")[0]) if rng else 0
        body = cls.data[start:]
        self.send_response(206 if rng else 200)
        self.send_header("Content-Length", str(len(body)))
        if rng:
            self.send_header("Content-Range", f"bytes {start}-{len(cls.data) - 1}/{len(cls.data)}")
        self.end_headers()
        if cls.cut_first_at is not None:
            n, cls.cut_first_at = cls.cut_first_at, None
            self.wfile.write(body[:n])
            self.wfile.flush()
            self.connection.shutdown(2)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(release_tarball, monkeypatch):
    handler = type("H", (_Handler,), {"data": release_tarball.read_bytes(), "requests": [], "cut_first_at": None})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("INCEPTION_HUB_MIRROR", f"http://127.0.0.1:{httpd.server_address[1]}/models")
    monkeypatch.delenv("INCEPTION_HUB_OFFLINE")
    yield handler
    httpd.shutdown()


def test_download_resumes_after_a_dropped_connection(server, synth_weights):
    server.cut_first_at = 1_000_000
    w = W.load_weights(ARCH, progress=False)
    assert server.requests == [None, "bytes=1000000-"]
    np.testing.assert_array_equal(
        w["InceptionV1/Mixed_5c/Branch_0/Conv2d_0a_1x1/weights"],
        synth_weights[ARCH]["InceptionV1/Mixed_5c/Branch_0/Conv2d_0a_1x1/weights"],
    )
    assert W.download_path(ARCH).read_bytes() == server.data
    assert not W.download_path(ARCH).with_name(W.download_path(ARCH).name + ".part").exists()


def test_download_continues_a_partial_file_from_an_earlier_run(server):
    part = W.download_path(ARCH).with_name(W.download_path(ARCH).name + ".part")
    part.parent.mkdir(parents=True)
    part.write_bytes(server.data[:12345])
    W.fetch(ARCH, progress=False)
    assert server.requests == ["bytes=12345-"]
    assert W.download_path(ARCH).read_bytes() == server.data


def test_unreachable_server_becomes_offline_help(monkeypatch):
    monkeypatch.delenv("INCEPTION_HUB_OFFLINE")
    monkeypatch.setenv("INCEPTION_HUB_MIRROR", "http://127.0.0.1:9/models")  # nothing listens on port 9
    monkeypatch.setattr("inception_hub.weights.download.time.sleep", lambda s: None)
    with pytest.raises(WeightsUnavailableError) as e:
        W.load_weights(ARCH, progress=False)
    assert "could not download the inception_v1 weights: http://127.0.0.1:9/models/inception_v1_2016_08_28" in str(
        e.value
    )
    assert "inception-hub fetch inception_v1 --from" in str(e.value)


def test_a_hung_server_gets_announced_retries_then_gives_up(tmp_path, monkeypatch):
    """A server that accepts the connection and never answers: each attempt waits `timeout`,
    and each retry is announced, so the user is never left in silence for minutes."""
    from inception_hub.weights.download import DownloadError, download

    monkeypatch.setattr("inception_hub.weights.download.time.sleep", lambda s: None)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # connections queue up; nothing ever reads or answers them
        messages = []
        url = f"http://127.0.0.1:{hung.getsockname()[1]}/models/x.tar.gz"
        with pytest.raises(DownloadError, match="timed out"):
            download(url, tmp_path / "x.tar.gz", progress=False, timeout=0.5, log=messages.append)
    assert len(messages) == 2 and "retry 1 of 2" in messages[0] and "retry 2 of 2" in messages[1]
    assert all(url in m and "timed out" in m for m in messages)


def _load_in_process(queue):
    try:
        w = W.load_weights(ARCH, progress=False)
        queue.put(len(w))
    except Exception as e:  # reported to the parent
        queue.put(repr(e))


def test_two_processes_loading_at_once_share_one_download(server):
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_load_in_process, args=(queue,)) for _ in range(2)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert results == [230, 230]
    assert server.requests == [None]  # the second process waited for the lock, then used the cache


def test_what_killed_runs_left_is_cleaned_on_the_next(tmp_path):
    root = W.cache_dir()
    (root / "weights" / ARCH).mkdir(parents=True)
    (root / "tmp" / "extract.abc").mkdir(parents=True)
    old_file = root / "weights" / ARCH / ".x.npz.k3j2.tmp"
    fresh_file = root / "weights" / ARCH / ".y.npz.a8d1.tmp"  # a write in progress right now
    keep = root / "weights" / ARCH / "x.npz"
    for p in (old_file, fresh_file, keep):
        p.write_bytes(b"...")
    hours_ago = time.time() - 2 * W.STALE_SECONDS
    for p in (old_file, keep, root / "tmp" / "extract.abc"):
        os.utime(p, (hours_ago, hours_ago))
    removed = W.clean_stale()
    assert sorted(removed) == sorted([old_file, root / "tmp" / "extract.abc"])
    assert fresh_file.exists() and keep.exists()


def test_an_oversized_archive_member_is_refused_before_extracting(tmp_path, checkpoints, monkeypatch):
    tarball = tmp_path / "inception_v1_2016_08_28.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(checkpoints[ARCH, "v1"], arcname="inception_v1.ckpt")
    real_bound = W.max_checkpoint_bytes(ARCH)
    monkeypatch.setattr(W.store, "max_checkpoint_bytes", lambda arch: 1000)
    with pytest.raises(CheckpointError, match=r"inception_v1.ckpt is \d+ bytes, more than a checkpoint"):
        W.extract_checkpoint(tarball, tmp_path, ARCH)
    assert not (tmp_path / "inception_v1.ckpt").exists()
    assert real_bound > Path(checkpoints[ARCH, "v1"]).stat().st_size  # the real bound fits a real checkpoint


def test_provenance_tells_an_import_from_the_release(release_tarball):
    W.fetch(ARCH, release_tarball)  # imported by hand: not to be shown as the official release
    p = W.provenance(ARCH)
    assert p["origin"] == "imported" and p["source"] == str(release_tarball.resolve())
    assert p["weights_digest"] == W.load_weights(ARCH).digest and len(p["file_sha256"]) == 64
    W.cached_path(ARCH).unlink()
    W.download_path(ARCH).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(release_tarball, W.download_path(ARCH))  # the release file, placed where a download goes
    W.fetch(ARCH)
    assert W.provenance(ARCH)["origin"] == "release"


def test_a_release_with_the_wrong_digest_is_refused_and_removed(release_tarball, monkeypatch):
    card = CARDS[ARCH]
    wrong = dataclasses.replace(card, checkpoint=dataclasses.replace(card.checkpoint, sha256="0" * 64))
    monkeypatch.setitem(CARDS, ARCH, wrong)
    W.download_path(ARCH).parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(release_tarball, W.download_path(ARCH))
    with pytest.raises(CheckpointError, match="is not the official release's"):
        W.fetch(ARCH)
    assert not W.download_path(ARCH).exists() and not W.is_cached(ARCH)


def test_cache_lists_and_cleans_the_optimised_graphs_and_tfjs_models(tmp_path):
    """`cache` listed neither ONNX Runtime's optimised graphs nor serve-hub's TF.js models, so
    `cache --clean` left those of removed weights behind."""
    from inception_hub.weights import cache

    live, dead = "a" * 16, "b" * 16
    checkpoint = tmp_path / "mine.ckpt"
    checkpoint.write_bytes(b"weights")
    cache.record_checkpoint(live + "0" * 48, str(checkpoint))
    engines = cache.folder("engines") / ARCH
    made = {}
    for digest in (live, dead):
        made["ort", digest] = engines / "onnxruntime_cache" / f"classification-{digest}-g3-ort1.0-avx2.onnx"
        made["tfjs", digest] = cache.folder("hub") / "tfjs/google/imagenet" / ARCH / "classification/3" / digest
        made["ort", digest].parent.mkdir(parents=True, exist_ok=True)
        made["ort", digest].write_bytes(b"x" * 10)
        made["tfjs", digest].mkdir(parents=True)
        (made["tfjs", digest] / "model.json").write_text("{}")
        (made["tfjs", digest] / "group1-shard1of1.bin").write_bytes(b"x" * 100)
    (engines / "openvino_cache").mkdir()
    (engines / "openvino_cache" / "1.blob").write_bytes(b"x" * 7)

    listed = {e.path: e for e in cache.entries()}
    assert listed[made["ort", live]].note == "ONNX Runtime's optimised graph"
    assert listed[made["ort", dead]].note == f"ONNX Runtime's optimised graph; {cache.ORPHAN}"
    assert listed[made["tfjs", live]].note == "TF.js model" and listed[made["tfjs", live]].bytes == 102
    assert listed[made["tfjs", dead]].note == f"TF.js model; {cache.ORPHAN}"
    assert listed[engines / "openvino_cache"].bytes == 7
    assert set(cache.clean()) == {made["ort", dead], made["tfjs", dead]}
    assert made["ort", live].exists() and made["tfjs", live].is_dir() and not made["tfjs", dead].exists()
