"""The TF-Serving-compatible server: REST and gRPC against the module API, batching, limits,
backpressure, graceful shutdown, metrics, and a fuzz test that finds no 5xx."""

from __future__ import annotations

import asyncio
import base64
import gzip
import io
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection, HTTPException
from pathlib import Path

import grpc
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

import inception_hub
from conftest import IMAGES, reference
from inception_hub.cli import main
from inception_hub.images import load_image
from inception_hub.serve import Limits, ServingCore, run_server

pytestmark = pytest.mark.slow  # starts servers

GRACE = IMAGES / "grace_hopper.jpg"
SAMPLES = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:6]


class Running:
    """A server on loopback in a background thread with its own event loop."""

    def __init__(self, models, port=0, grpc_port=0, **kwargs):
        self.core = ServingCore(models, **{k: v for k, v in kwargs.items() if k not in ("grpc", "index")})
        self.loop = asyncio.new_event_loop()
        self.stop = None
        self.ports = None
        ready = threading.Event()

        def serve():
            asyncio.set_event_loop(self.loop)
            self.stop = asyncio.Event()

            def on_ready(rest, grpc_port):
                self.ports = (rest, grpc_port)
                ready.set()

            self.loop.run_until_complete(
                run_server(
                    self.core,
                    "127.0.0.1",
                    port,
                    grpc_port if kwargs.get("grpc", True) else None,
                    on_ready,
                    self.stop,
                    index=kwargs.get("index"),
                )
            )

        self.thread = threading.Thread(target=serve, daemon=True)
        self.thread.start()
        assert ready.wait(60), "server did not start"
        self.url = f"http://127.0.0.1:{self.ports[0]}"
        self.grpc = f"127.0.0.1:{self.ports[1]}"

    def shutdown(self):
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(60)


def http(method, url, body=None):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def b64(path):
    return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def server(models):
    s = Running(models, max_batch=8, batch_timeout_ms=20, workers=1)
    yield s
    s.shutdown()


def test_rest_status_and_metadata(server):
    status, body = http("GET", f"{server.url}/v1/models/inception_v1")
    assert status == 200
    assert json.loads(body) == {
        "model_version_status": [
            {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
        ]
    }
    assert http("GET", f"{server.url}/v1/models/inception_v1/versions/1")[0] == 200
    assert http("GET", f"{server.url}/v1/models/inception_v1/versions/2")[0] == 404
    status, body = http("GET", f"{server.url}/v1/models/inception_v1_feature_vector/metadata")
    sigs = json.loads(body)["metadata"]["signature_def"]["signature_def"]
    assert set(sigs) == {"serving_default", "image_feature_vector"}
    assert sigs["serving_default"]["outputs"]["feature_vector"]["tensor_shape"]["dim"][1]["size"] == "1024"
    status, body = http("GET", f"{server.url}/v1/models/resnet")
    assert status == 404 and "Servable not found" in json.loads(body)["error"]


def test_rest_predictions_match_the_module(server, clf):
    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:3].astype(np.float32) / 255
    status, body = http("POST", f"{server.url}/v1/models/inception_v1:predict", {"instances": x.tolist()})
    assert status == 200
    np.testing.assert_allclose(json.loads(body)["predictions"], ref["logits"][:3], atol=1e-4)
    # Columnar, named input, and another signature.
    status, body = http(
        "POST",
        f"{server.url}/v1/models/inception_v1/versions/1:predict",
        {"signature_name": "image_feature_vector", "inputs": {"images": x[:2].tolist()}},
    )
    np.testing.assert_allclose(json.loads(body)["outputs"], ref["feature_vector"][:2], atol=1e-4)
    # Encoded images are decoded and preprocessed server-side, as the CLI does.
    status, body = http(
        "POST",
        f"{server.url}/v1/models/inception_v1:predict",
        {
            "signature_name": "image_classification",
            "instances": [{"images": {"b64": b64(GRACE)}}, {"images": {"b64": b64(SAMPLES[0])}}],
        },
    )
    expect = clf(np.stack([load_image(GRACE, (224, 224)), load_image(SAMPLES[0], (224, 224))]))
    assert status == 200
    np.testing.assert_allclose(json.loads(body)["predictions"], expect, atol=1e-4)


def test_grpc_with_the_tensorflow_serving_stubs(server, checkpoints):
    channel = grpc.insecure_channel(server.grpc)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    ref = reference("inception_v1", "224x224")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception_v1"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(ref["inputs_u8"][:2].astype(np.float32) / 255))
    response = stub.Predict(request, timeout=120)
    np.testing.assert_allclose(tf.make_ndarray(response.outputs["logits"]), ref["logits"][:2], atol=1e-4)
    assert response.model_spec.signature_name == "serving_default" and response.model_spec.version.value == 1
    # TF Serving's example clients read the values from float_val, as TF Serving fills them.
    logits = np.array(response.outputs["logits"].float_val, np.float32).reshape(2, 1001)
    assert list(logits.argmax(1)) == list(ref["logits"][:2].argmax(1))
    request.output_filter.append("logits")
    assert set(stub.Predict(request, timeout=120).outputs) == {"logits"}
    request.output_filter.append("probabilities")  # not an output of this signature
    with pytest.raises(grpc.RpcError) as e:
        stub.Predict(request, timeout=120)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "probabilities" in e.value.details()

    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception_v1_feature_vector"
    request.model_spec.signature_name = "image_feature_vector"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([GRACE.read_bytes()]))
    features = tf.make_ndarray(stub.Predict(request, timeout=120).outputs["default"])
    fv = inception_hub.load("inception_v1/feature_vector", checkpoint=checkpoints["inception_v1", "v1"])
    np.testing.assert_allclose(features, fv(load_image(GRACE, (224, 224))[None]), atol=1e-4)

    meta = get_model_metadata_pb2.GetModelMetadataRequest()
    meta.model_spec.name = "inception_v1"
    meta.metadata_field.append("signature_def")
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    stub.GetModelMetadata(meta, timeout=30).metadata["signature_def"].Unpack(sig_map)
    assert set(sig_map.signature_def) == {"serving_default", "image_classification", "image_feature_vector"}
    assert [d.size for d in sig_map.signature_def["serving_default"].outputs["logits"].tensor_shape.dim] == [-1, 1001]

    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = "inception_v1"
    answer = model_service_pb2_grpc.ModelServiceStub(channel).GetModelStatus(status, timeout=30)
    assert answer.model_version_status[0].state == get_model_status_pb2.ModelVersionStatus.AVAILABLE

    for name, sig, tensor, code in [
        ("nope", "", np.zeros((1, 224, 224, 3), np.float32), grpc.StatusCode.NOT_FOUND),
        ("inception_v1", "bogus", np.zeros((1, 224, 224, 3), np.float32), grpc.StatusCode.INVALID_ARGUMENT),
        ("inception_v1", "", np.zeros((1, 224, 224), np.float32), grpc.StatusCode.INVALID_ARGUMENT),
        ("inception_v1", "", np.full((1, 8, 8, 3), np.nan, np.float32), grpc.StatusCode.INVALID_ARGUMENT),
        ("inception_v1", "", [b"not an image"], grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name, request.model_spec.signature_name = name, sig
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(tensor))
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, timeout=30)
        assert e.value.code() == code, e.value.details()


def test_grpc_declared_shapes_are_checked_before_any_allocation(server):
    """A tensor whose shape declares far more values than it carries is refused, not expanded:
    a 56-byte request declaring [64, 3651, 3651, 3] with one float would otherwise need 10 GB."""
    stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(server.grpc))
    for dims, values, expect in [
        ([64, 3651, 3651, 3], [0.5], "exceed the limit"),
        ([1, 4000, 4000, 3], [0.5], "exceed the limit"),  # would run the network at 16 MP
        ([1, 224, 224, 3], [0.5], "holds 1 values, but its shape"),  # TF would broadcast the one value
        ([65, 8, 8, 3], [0.5] * (65 * 8 * 8 * 3), "at most 64 images"),
        ([1, 0, 224, 3], [], "shape"),
    ]:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = "inception_v1"
        tensor = request.inputs["images"]
        tensor.dtype = tf.float32.as_datatype_enum
        for d in dims:
            tensor.tensor_shape.dim.add(size=d)
        tensor.float_val.extend(values)
        if dims[0] == 64:
            assert len(request.SerializeToString()) < 100
        with pytest.raises(grpc.RpcError) as e:
            stub.Predict(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and expect in e.value.details(), e.value.details()
    # The server is unharmed: a real request is answered.
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception_v1"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.zeros((1, 224, 224, 3), np.float32)))
    assert tf.make_ndarray(stub.Predict(request, timeout=60).outputs["logits"]).shape == (1, 1001)


def batch_counts(server, model="inception_v1"):
    """(executions, images) so far, from the Prometheus endpoint."""
    text = http("GET", f"{server.url}/metrics")[1].decode()
    values = {}
    for line in text.splitlines():
        for key in ("count", "sum"):
            if line.startswith(f'inception_hub_batch_size_{key}{{model="{model}"}}'):
                values[key] = float(line.split()[-1])
    return values["count"], values["sum"]


def test_concurrent_requests_are_batched(server, clf):
    # Small images and bodies encoded up front, released together: the requests arrive within
    # the batching window instead of trickling in at the pace of JSON encoding.
    x = np.random.default_rng(0).random((8, 96, 96, 3), dtype=np.float32)
    bodies = [json.dumps({"instances": x[i : i + 1].tolist()}).encode() for i in range(8)]
    start = threading.Barrier(8)
    runs_before, images_before = batch_counts(server)

    def one(i):
        start.wait()
        status, body = http("POST", f"{server.url}/v1/models/inception_v1:predict", bodies[i])
        assert status == 200
        return np.array(json.loads(body)["predictions"][0])

    with ThreadPoolExecutor(8) as pool:
        outs = list(pool.map(one, range(8)))
    np.testing.assert_allclose(np.stack(outs), clf(x), atol=1e-4)  # each request got its own row back
    runs, images = batch_counts(server)
    assert images - images_before == 8
    assert runs - runs_before < 8  # eight requests, fewer model executions


MALFORMED = [
    b"",
    b"{",
    b"[]",
    b"null",
    b'"x"',
    b"{}",
    b'{"instances": 5}',
    b'{"instances": []}',
    b'{"inputs": {"x": 1}}',
    b'{"instances": [], "inputs": []}',
    b'{"instances": [[1, 2, 3]]}',
    b'{"instances": [[[[0.1, 0.2]]]]}',
    b'{"instances": [[[[0.1, 0.2, 0.3]]], [[[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]]]]}',
    b'{"instances": [[[[NaN, 0, 0]]]]}',
    b'{"instances": [[[[1e308, 0, 0]]]]}',
    b'{"instances": [[[[2, 0, 0]]]]}',
    b'{"instances": [[[["a", 0, 0]]]]}',
    b'{"instances": [[[["0.5", "0.5", "0.5"]]]]}',  # numbers as strings are not numbers
    b'{"instances": [[[[true, false, true]]]]}',
    b'{"instances": [[[[true, 0.5, 0.5]]]]}',  # numpy would read true as 1.0
    b'{"instances": [[[[0, 1, 0]]], [[[false, 1, 0]]]]}',
    b'{"instances": [[[[1' + b"0" * 5000 + b", 0, 0]]]]}",  # Python refuses ints over 4300 digits
    b'{"instances": [{"b64": "!!!"}]}',
    b'{"instances": [{"b64": "aGVsbG8="}]}',
    b'{"instances": [{"b64": 5}]}',
    b'{"instances": [{"b64": "aGVsbG8="}, [[[0, 0, 0]]]]}',
    b'{"signature_name": 3, "instances": [[[[0, 0, 0]]]]}',
    b'{"signature_name": "nope", "instances": [[[[0, 0, 0]]]]}',
    b'{"":null,"signature_name":[null]}',  # found by the fuzz test: an unhashable signature name
    b'{"signature_name": {"a": 1}, "instances": [[[[0, 0, 0]]]]}',
    b'{"instances": [{"images": {"b64": ""}}]}',
    b"\xff\xfe\x00",
    b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_requests_get_4xx_with_an_error(server, body):
    status, answer = http("POST", f"{server.url}/v1/models/inception_v1:predict", body)
    assert 400 <= status < 500, (status, answer)
    assert "error" in json.loads(answer)


def test_limits(models):
    s = Running(models[:1], limits=Limits(max_body_bytes=200_000, max_images=2, max_pixels=100_000), grpc=False)
    try:
        url = f"{s.url}/v1/models/inception_v1:predict"
        status, body = http("POST", url, {"instances": np.zeros((1, 224, 224, 3)).tolist()})
        assert status == 413 and "larger than 200000 bytes" in json.loads(body)["error"]
        small = io.BytesIO()
        Image.new("RGB", (8, 8)).save(small, "PNG")
        status, body = http("POST", url, {"instances": [{"b64": base64.b64encode(small.getvalue()).decode()}] * 3})
        assert status == 413 and "at most 2 images" in json.loads(body)["error"]
        bomb = io.BytesIO()
        Image.new("L", (1000, 1000)).save(bomb, "PNG")  # tiny file, a million pixels decoded
        status, body = http("POST", url, {"instances": [{"b64": base64.b64encode(bomb.getvalue()).decode()}]})
        assert status == 400 and "too large" in json.loads(body)["error"]
    finally:
        s.shutdown()


def raw_post(port: int, path: str, headers: dict, body: bytes) -> socket.socket:
    """A request written by hand, so a test can send a body more slowly than it declares."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{head}\r\n".encode() + body)
    return sock


def status_of(sock: socket.socket) -> int:
    return int(sock.recv(4096).split(b" ", 2)[1])


def test_wrong_method_gets_405_with_allow(server):
    req = urllib.request.Request(f"{server.url}/v1/models/inception_v1:predict", method="GET")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(req, timeout=30)
    assert e.value.code == 405 and "POST" in e.value.headers["Allow"]


def test_compressed_bodies_are_refused_with_415(server):
    port = int(server.url.rsplit(":", 1)[1])
    body = gzip.compress(json.dumps({"instances": np.zeros((1, 8, 8, 3)).tolist()}).encode())
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip", "Content-Length": len(body)}
    with raw_post(port, "/v1/models/inception_v1:predict", headers, body) as sock:
        assert status_of(sock) == 415


def test_requests_are_admitted_before_their_body_is_read_and_the_deadline_covers_it(models):
    s = Running(
        models[:1], limits=Limits(max_body_bytes=8 << 20, max_inflight_bytes=1 << 20, timeout_s=2.0), grpc=False
    )
    try:
        port = int(s.url.rsplit(":", 1)[1])
        path = "/v1/models/inception_v1:predict"
        headers = {"Content-Type": "application/json", "Content-Length": 3_000_000}
        with raw_post(port, path, headers, b'{"instances": [') as stalled:  # and nothing more
            time.sleep(0.5)
            small = {"instances": np.full((1, 32, 32, 3), 0.5).tolist()}
            # The stalled body holds only the bytes that arrived, not the 3 MB it declared.
            assert http("POST", f"{s.url}{path}", small)[0] == 200
            # A client that asks first (Expect: 100-continue) is refused before it sends its body.
            asking = {**headers, "Content-Length": 2_000_000, "Expect": "100-continue"}
            with raw_post(port, path, asking, b"") as sock:
                assert status_of(sock) == 429
            assert status_of(stalled) == 504  # the body never came: the deadline ended it
        assert http("POST", f"{s.url}{path}", small)[0] == 200  # the budget is free again
        body = json.dumps(small).encode()
        with raw_post(port, path, {**headers, "Content-Length": len(body), "Expect": "100-continue"}, b"") as sock:
            assert status_of(sock) == 100  # go ahead
            sock.sendall(body)
            assert status_of(sock) == 200
    finally:
        s.shutdown()


def test_requests_whose_client_went_away_are_not_run(models):
    s = Running([slow(models[0], 0.5)], max_batch=1, workers=1, grpc=False)
    try:
        port = int(s.url.rsplit(":", 1)[1])
        body = json.dumps({"instances": np.full((1, 32, 32, 3), 0.5).tolist()}).encode()
        headers = {"Content-Type": "application/json", "Content-Length": len(body)}
        socks = [raw_post(port, "/v1/models/inception_v1:predict", headers, body) for _ in range(4)]
        time.sleep(0.3)  # all four are in: one runs, three wait in the queue
        for sock in socks:  # and then their clients leave
            sock.close()
        time.sleep(3.0)  # anything still queued would have run by now
        executions, _ = batch_counts(s)
        assert executions <= 2, executions  # at most the first, already running, and one more
    finally:
        s.shutdown()


def test_requests_whose_deadline_passed_are_not_run(models):
    s = Running([slow(models[0], 0.5)], max_batch=1, workers=1, limits=Limits(timeout_s=0.3), grpc=False)
    try:
        body = {"instances": np.full((1, 32, 32, 3), 0.5).tolist()}
        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(lambda _: http("POST", f"{s.url}/v1/models/inception_v1:predict", body)[0], range(4)))
        assert codes == [504] * 4
        time.sleep(1.5)  # anything still queued would have run by now
        executions, _ = batch_counts(s)
        assert executions <= 2, executions  # the one running when the deadline passed, at most one more
    finally:
        s.shutdown()


def slow(model, seconds):
    """The same model with each execution taking at least `seconds`."""
    import copy

    def slowly(fn):
        def run(x):
            time.sleep(seconds)
            return fn(x)

        return run

    m = copy.copy(model)
    m.compute = {k: slowly(fn) for k, fn in model.compute.items()}
    return m


def test_backpressure_timeouts_and_graceful_shutdown(models):
    s = Running(
        [slow(models[0], 0.5)],
        max_batch=1,
        batch_timeout_ms=0,
        workers=1,
        limits=Limits(max_queue=2, timeout_s=5.0),
        grpc=False,
    )
    url = f"{s.url}/v1/models/inception_v1:predict"
    body = {"instances": np.full((1, 64, 64, 3), 0.5).tolist()}
    with ThreadPoolExecutor(8) as pool:
        codes = sorted(pool.map(lambda _: http("POST", url, body)[0], range(8)))
    assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
    text = http("GET", f"{s.url}/metrics")[1].decode()
    assert 'code="RESOURCE_EXHAUSTED",model="inception_v1",protocol="rest"' in text
    # Shutdown while requests are in flight: they complete, later ones are refused.
    with ThreadPoolExecutor(2) as pool:
        inflight = [pool.submit(http, "POST", url, body) for _ in range(2)]
        time.sleep(0.2)
        s.loop.call_soon_threadsafe(s.stop.set)
        results = [f.result() for f in inflight]
    s.thread.join(60)
    assert [r[0] for r in results] == [200, 200]
    assert not s.thread.is_alive()


def test_shutdown_under_load_answers_503_and_never_500(models):
    s = Running([slow(models[0], 0.3)], max_batch=1, batch_timeout_ms=0, workers=1, grpc=False)
    url = f"{s.url}/v1/models/inception_v1:predict"
    body = {"instances": [{"b64": b64(GRACE)}]}  # decoded on the pool that shutdown closes

    def post(_):
        try:
            return http("POST", url, body)[0]
        except OSError:  # the listener is gone: connection refused
            return "closed"

    with ThreadPoolExecutor(12) as pool:
        before = [pool.submit(post, i) for i in range(6)]
        time.sleep(0.4)
        s.loop.call_soon_threadsafe(s.stop.set)
        during = list(pool.map(post, range(24)))
        codes = [f.result() for f in before] + during
    s.thread.join(60)
    assert not s.thread.is_alive()
    assert set(codes) <= {200, 503, "closed"}, codes
    assert [f.result() for f in before].count(200) >= 1 and 503 in codes + ["closed"]


def test_sigterm_under_load_drains_and_exits(v1_ckpt, tmp_path):
    """The real command, SIGTERM while keep-alive clients post photos: no 5xx but 503, and the
    process exits by itself, promptly, with status 0."""
    cmd = [sys.executable, "-m", "inception_hub.cli", "serve", "--port", "0", "--grpc-port", "0"]
    proc = subprocess.Popen(
        cmd + ["--checkpoint", f"inception_v1={v1_ckpt}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        line = proc.stdout.readline()
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)", line).group(1))
        # The default engine serves REST and gRPC without loading TensorFlow at all (TensorFlow's own
        # libraries; OpenVINO's "tensorflow_frontend" library is OpenVINO's converter, not TensorFlow).
        assert "site-packages/tensorflow/" not in Path(f"/proc/{proc.pid}/maps").read_text()
        body = json.dumps({"instances": [{"b64": b64(GRACE)}]}).encode()
        codes: list = []
        stop = threading.Event()

        def client():
            conn = HTTPConnection("127.0.0.1", port, timeout=60)
            while not stop.is_set():
                try:
                    conn.request("POST", "/v1/models/inception_v1:predict", body, {"Content-Type": "application/json"})
                    response = conn.getresponse()
                    response.read()
                    codes.append(response.status)
                except (OSError, HTTPException):
                    codes.append("closed")
                    conn.close()
                    conn = HTTPConnection("127.0.0.1", port, timeout=60)
                    time.sleep(0.05)

        threads = [threading.Thread(target=client) for _ in range(12)]
        for t in threads:
            t.start()
        time.sleep(3.0)
        maps = Path(f"/proc/{proc.pid}/maps").read_text()  # after requests ran
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=45) == 0  # it exits by itself, within the drain
        stop.set()
        for t in threads:
            t.join(60)
    finally:
        proc.kill()
    answered = [c for c in codes if c != "closed"]
    assert "site-packages/tensorflow/" not in maps and "libtensorflow" not in maps
    assert 200 in answered and all(c in (200, 429, 503) for c in answered), sorted(set(map(str, codes)))


def test_ports_in_use_and_impossible_limits_are_reported_before_loading(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port), "--grpc-port", "-1"]) == 2
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err and "choose another port with --port" in err
        assert main(["serve", "--port", "0", "--grpc-port", str(port)]) == 2
        err = capsys.readouterr().err
        assert f"cannot listen on 127.0.0.1:{port}" in err and "--grpc-port" in err and "Traceback" not in err
    assert main(["serve", "--max-queue", "8", "--max-images", "64"]) == 2
    assert "--max-queue (8) is smaller than --max-images (64)" in capsys.readouterr().err


def test_deadline(models):
    s = Running([slow(models[0], 1.0)], max_batch=1, limits=Limits(timeout_s=0.3), grpc=False)
    try:
        status, body = http(
            "POST", f"{s.url}/v1/models/inception_v1:predict", {"instances": np.full((1, 32, 32, 3), 0.5).tolist()}
        )
        assert status == 504 and "no result within 0.3s" in json.loads(body)["error"]
    finally:
        s.shutdown()


def test_health_metrics_and_openapi(server):
    status, body = http("GET", f"{server.url}/healthz")
    assert status == 200 and json.loads(body)["models"] == ["inception_v1", "inception_v1_feature_vector"]
    http("POST", f"{server.url}/v1/models/inception_v1:predict", {"instances": []})  # counted, though refused
    text = http("GET", f"{server.url}/metrics")[1].decode()
    for name in (
        "inception_hub_requests_total",
        "inception_hub_request_latency_seconds_bucket",
        "inception_hub_batch_size_bucket",
        "inception_hub_queue_depth",
    ):
        assert name in text
    spec = json.loads(http("GET", f"{server.url}/openapi.json")[1])
    assert spec["openapi"].startswith("3.") and "/v1/models/{name}:predict" in spec["paths"]
    # Every route the API answers is described (the page's HTML and static files are not API).
    from inception_hub.serve.app import make_app
    from inception_hub.similar.index import Index

    app = make_app(server.core, Index({"architecture": "inception_v1"}, 1024))
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.method != "HEAD"}
    page = {"/", "/models/{name}", "/static/{file}"}
    assert {(p, m) for p, m in routes if p not in page} == {(p, m) for p, ops in spec["paths"].items() for m in ops}


def test_the_openapi_file_is_what_its_generator_writes(tmp_path, monkeypatch):
    """tools/make_openapi.py is how the file is made: it writes every route the file describes."""
    import importlib.util

    tool = Path(__file__).resolve().parents[1] / "tools" / "make_openapi.py"
    spec = importlib.util.spec_from_file_location("make_openapi", tool)
    make_openapi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_openapi)
    monkeypatch.setattr(make_openapi, "OUT", tmp_path / "openapi.json")
    make_openapi.main()
    shipped = Path(inception_hub.__file__).parent / "serve" / "openapi.json"
    assert (tmp_path / "openapi.json").read_text() == shipped.read_text()


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=30,
)
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {}, optional={"instances": json_values, "inputs": json_values, "signature_name": json_values}
    ).map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)
paths = st.sampled_from(
    [
        "/v1/models/inception_v1",
        "/v1/models/inception_v1/versions/1",
        "/v1/models/x",
        "/v1/models/inception_v1/metadata",
        "/healthz",
        "/nope",
        "/v1/models/inception_v1:predict",
        "/v1/models/inception_v1/versions/7:predict",
        "/v1/models/:predict",
    ]
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST", "PUT", "DELETE"]), path=paths, body=bodies)
def test_fuzz_finds_no_5xx(server, method, path, body):
    status, _ = http(method, server.url + path, body if method in ("POST", "PUT") else None)
    assert status < 500


def test_serve_passes_backend_and_limits_from_the_command_line(monkeypatch):
    import inception_hub.serve as serve_module

    seen = {}
    monkeypatch.setattr(serve_module, "serve", lambda models, **kwargs: seen.update(kwargs, models=models))
    argv = ["serve", "--models", "inception_v1", "--backend", "openvino", "--max-inflight-mb", "8"]
    assert main(argv + ["--max-input-pixels", "4096", "--port", "0", "--grpc-port", "-1"]) == 0
    assert seen["backend"] == "openvino" and seen["models"] == ["inception_v1"]  # --backend was once ignored
    assert seen["limits"].max_inflight_bytes == 8 << 20 and seen["limits"].max_input_pixels == 4096
    assert seen["index"] is None
