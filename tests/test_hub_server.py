"""`inception-hub serve-hub`: a real server process, and tensorflow_hub resolving URLs against it."""

from __future__ import annotations

import io
import os
import re
import socket
import subprocess
import sys
import tarfile
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

from conftest import reference
from inception_hub.weights import cache_dir

pytestmark = pytest.mark.slow  # starts a hub server and exports modules


@pytest.fixture(scope="module")
def hub_url(checkpoints, tmp_path_factory):
    env = dict(os.environ, INCEPTION_HUB_CACHE=str(tmp_path_factory.mktemp("hubcache")), INCEPTION_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "inception_hub.cli",
            "serve-hub",
            "--port",
            "0",
            "--quiet",
            "--checkpoint",
            f"inception_v1={checkpoints['inception_v1', 'v2']}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    line = proc.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:\d+", line)
    if not match:
        proc.kill()
        pytest.fail(f"server did not start: {line!r} {proc.stderr.read()}")
    yield match.group(0)
    proc.terminate()
    proc.wait(timeout=30)


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            return r.status, r.headers.get("Content-Type"), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type"), e.read()


def test_keras_layer_loads_a_url_unchanged(hub_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    x = reference("inception_v1", "224x224")
    layer = hub.KerasLayer(f"{hub_url}/google/imagenet/inception_v1/classification/5")
    model = tf_keras.Sequential([layer])
    model.build([None, 224, 224, 3])
    np.testing.assert_allclose(model.predict(x["inputs_u8"] / 255.0, verbose=0), x["logits"], atol=1e-4, rtol=0)
    assert any((tmp_path / "tfhub").iterdir())  # resolved through hub's own download cache


def test_tf1_module_by_url(hub_url, tmp_path, monkeypatch):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path / "tfhub"))
    x = reference("inception_v1", "224x224")
    m = hub.load(f"{hub_url}/google/imagenet/inception_v1/feature_vector/1", tags=[])
    out = m.signatures["image_feature_vector"](images=tf.constant(x["inputs_u8"][:3] / 255.0, tf.float32))
    np.testing.assert_allclose(out["default"], x["feature_vector"][:3], atol=1e-4, rtol=0)


def test_compressed_module_is_built_once_and_cached(hub_url):
    url = f"{hub_url}/google/imagenet/inception_v1/feature_vector/5?tf-hub-format=compressed"
    status, ctype, body = get(url)
    assert status == 200 and ctype == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        names = set(tar.getnames())
    assert {"saved_model.pb", "variables/variables.index", "assets.extra/inception_hub.json"} <= names
    assert get(url)[2] == body  # the same bytes: served from the cache, not rebuilt


@pytest.mark.parametrize(
    "path",
    [
        "/google/imagenet/inception_v1/feature-vector/5/",
        "/models/google/inception-v1/TensorFlow2/feature-vector/2",
        "/models/google/inception-v1/frameworks/tensorFlow2/variations/feature-vector/versions/2",
        "/tfhub-modules/google/imagenet/inception_v1/feature_vector/5.tar.gz",
        "/google/inception-v1/tensorFlow2/feature-vector/2",
        "/api/v1/models/google/inception-v1/tensorFlow2/feature-vector/2/download",
    ],
)
def test_every_published_spelling_gets_the_same_module(hub_url, path):
    canonical = get(f"{hub_url}/google/imagenet/inception_v1/feature_vector/5?tf-hub-format=compressed")
    status, ctype, body = get(f"{hub_url}{path}?tf-hub-format=compressed")
    assert status == 200 and ctype == "application/gzip" and body == canonical[2]


def test_kaggle_tensorflow1_paths_are_the_tf1_modules_and_tfjs_paths_the_tfjs_models(hub_url):
    status, _, body = get(f"{hub_url}/models/google/inception-v1/TensorFlow1/classification/2")
    assert status == 200 and b"<h1>google/imagenet/inception_v1/classification/3</h1>" in body
    # A TF.js handle's page names the TF.js model and links the module it is made from.
    status, _, body = get(f"{hub_url}/google/tfjs-model/imagenet/inception_v1/classification/3/default/1")
    assert (
        status == 200
        and b"TF.js graph model" in body
        and b'href="/google/imagenet/inception_v1/classification/3"' in body
    )


def test_model_page_and_index(hub_url):
    status, ctype, body = get(f"{hub_url}/google/imagenet/inception_v1/classification/3")
    page = body.decode()
    assert status == 200 and ctype.startswith("text/html")
    for section in ("Overview", "Inputs and outputs", "Provenance", "Usage", "Changelog"):
        assert f"<h2>{section}</h2>" in page
    assert "inception_v1_2016_08_28.tar.gz" in page and "any size; trained at 224x224" in page
    assert "(this version)" in page and "serving_default" not in page  # version 5's change is not listed
    status, _, body = get(f"{hub_url}/")
    assert status == 200 and body.decode().count("<li>") == 16


@pytest.mark.parametrize(
    "path",
    [
        "/google/imagenet/inception_v2/classification/5",
        "/google/imagenet/inception_v1/classification/2?tf-hub-format=compressed",
        "/inception_v1",
        "/../etc/passwd",
    ],
)
def test_unknown_handles_are_404(hub_url, path):
    assert get(hub_url + path)[0] == 404


def test_missing_weights_are_503_with_the_fix(hub_url):
    status, _, body = get(f"{hub_url}/google/imagenet/inception_resnet_v2/classification/5?tf-hub-format=compressed")
    assert status == 503 and b"inception-hub fetch inception_resnet_v2" in body


@pytest.fixture
def local_hub(monkeypatch):
    """serve-hub in this process, with no weights cached; `downloads` records download attempts."""
    from inception_hub.tfhub.server import ModuleStore, make_server
    from inception_hub.weights import store as weights

    downloads = []
    monkeypatch.delenv("INCEPTION_HUB_OFFLINE")
    monkeypatch.setattr(weights, "download", lambda url, *a, **k: downloads.append(url))
    server = make_server("127.0.0.1", 0, ModuleStore(), quiet=True, idle_timeout=1.0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", server, downloads
    server.shutdown()
    server.server_close()


def test_an_anonymous_request_starts_no_download_and_sees_no_local_path(local_hub):
    url, _, downloads = local_hub
    status, _, body = get(f"{url}/google/imagenet/inception_v1/classification/5?tf-hub-format=compressed")
    assert status == 503 and b"not cached on this server" in body and b"--allow-download" in body
    assert downloads == [] and str(cache_dir()).encode() not in body and b"/" not in body.split(b";")[0]


def test_the_host_header_is_not_reflected_into_the_page(local_hub):
    url, server, _ = local_hub
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        sock.sendall(
            b'GET /google/imagenet/inception_v1/classification/5 HTTP/1.0\r\nHost: "><script>x()</script>\r\n\r\n'
        )
        page = b""
        while chunk := sock.recv(65536):
            page += chunk
    assert b"200 OK" in page.split(b"\r\n")[0] and b"<script>" not in page
    assert f"http://127.0.0.1:{server.server_address[1]}/google".encode() in page


def test_idle_connections_are_let_go(local_hub):
    _, server, _ = local_hub
    with socket.create_connection(("127.0.0.1", server.server_address[1]), timeout=10) as sock:
        assert sock.recv(1) == b""  # closed by the server after its idle timeout, not held forever


def raw_get(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        page = b""
        while chunk := sock.recv(65536):
            page += chunk
    return page


def test_a_valid_looking_host_header_is_not_echoed_into_links(local_hub):
    url, server, _ = local_hub
    port = server.server_address[1]
    page = raw_get(
        port, b"GET /google/imagenet/inception_v1/classification/5 HTTP/1.0\r\nHost: evil.example.com\r\n\r\n"
    )
    assert b"200 OK" in page.split(b"\r\n")[0] and b"evil.example.com" not in page
    assert f"http://127.0.0.1:{port}/google/imagenet/inception_v1/classification/5".encode() in page


def test_links_use_the_public_url_when_one_is_given():
    from inception_hub.tfhub.server import ModuleStore, base_url, make_server

    server = make_server("127.0.0.1", 0, ModuleStore(), quiet=True, public_url="https://hub.example.org/")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        page = raw_get(server.server_address[1], b"GET / HTTP/1.0\r\nHost: evil.example.com\r\n\r\n")
        assert b"evil.example.com" not in page
        status, _, body = get(
            f"http://127.0.0.1:{server.server_address[1]}/google/imagenet/inception_v1/feature_vector/3"
        )
        assert status == 200 and b"https://hub.example.org/google/imagenet/inception_v1/feature_vector/3" in body
    finally:
        server.shutdown()
        server.server_close()
    assert base_url("::1", 8008) == "http://[::1]:8008"
    assert base_url("0.0.0.0", 8008) == f"http://{socket.gethostname()}:8008"


def test_serve_hub_takes_its_public_url_from_the_command_line(monkeypatch, capsys):
    import inception_hub.tfhub.server as server_module
    from inception_hub.cli import main

    given = {}

    class Stopped:
        server_address = ("127.0.0.1", 8008)

        def serve_forever(self):
            raise KeyboardInterrupt

        def server_close(self):
            pass

    def make_server(host, port, store, quiet=False, public_url=None):
        given["public_url"] = public_url
        return Stopped()

    monkeypatch.setattr(server_module, "make_server", make_server)
    assert main(["serve-hub", "--public-url", "https://hub.example.org/"]) == 0
    assert given == {"public_url": "https://hub.example.org"}
    assert "https://hub.example.org/google/imagenet/" in capsys.readouterr().out
    assert main(["serve-hub", "--public-url", "hub.example.org"]) == 2
    err = capsys.readouterr().err
    assert "is not an http(s) address" in err and "Traceback" not in err


def test_a_server_killed_while_building_leaves_only_what_cache_clean_removes(checkpoints, tmp_path):
    """kill -9 in the middle of a module's build: what is left lies in the cache's tmp folder,
    which `cache --clean` (and start-up cleaning) removes once stale."""
    cache = tmp_path / "cache"
    code = (
        "import os, signal\n"
        "from inception_hub.tfhub import server\n"
        "from inception_hub.catalog import resolve\n"
        "def export(spec, folder, *a, **k):\n"
        "    folder.mkdir(parents=True)\n"
        "    (folder / 'saved_model.pb').write_bytes(b'x' * 1000)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "server.export = export\n"
        f"store = server.ModuleStore({{'inception_v1': {str(checkpoints['inception_v1', 'v2'])!r}}})\n"
        "store.tarball(resolve('inception_v1/feature_vector/5'))\n"
    )
    env = dict(os.environ, INCEPTION_HUB_CACHE=str(cache), INCEPTION_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -9, proc.stderr[-2000:]
    left = [p for p in (cache / "hub").rglob("*") if p.is_file()]
    assert left == [] and any((cache / "tmp").iterdir())  # the half-built module is in tmp/ only

    env["INCEPTION_HUB_CACHE"] = str(cache)
    clean = (
        "import time\nfrom inception_hub.weights import clean_stale\n"
        "print(len(clean_stale(now=time.time() + 2 * 3600)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", clean], env=env, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "1", proc.stderr[-2000:]
    assert not any((cache / "tmp").iterdir())
