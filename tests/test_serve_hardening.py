"""The server under hostile or heavy use, on loopback: slow bodies, large JSON, many gRPC
clients, restarts past TIME-WAIT, overload and deadlines, drains, malformed requests, and
hostile indexes. Every loop is counted and every wait bounded; timings are only asserted with
wide margins over what the failure they guard against would take. The measured numbers are
printed (`pytest -s`) for the README's serving section."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.client import HTTPConnection

import grpc
import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

import inception_hub.similar.index as index_module
from conftest import IMAGES
from inception_hub.serve import Limits, check_port
from inception_hub.serve.batcher import Batcher, Expired
from inception_hub.serve.core import InvalidArgument
from inception_hub.serve.http import dumps
from inception_hub.serve.rest import parse_predict
from inception_hub.similar.index import Index, model_identity
from test_serve import Running, batch_counts, http, raw_post, slow, status_of

GRACE = IMAGES / "grace_hopper.jpg"
PREDICT = "/v1/models/inception_v1:predict"
SMALL = json.dumps({"instances": np.full((1, 32, 32, 3), 0.5).tolist()}).encode()


def port_of(server: Running) -> int:
    return int(server.url.rsplit(":", 1)[1])


def strict_json(body: bytes):
    """JSON as browsers read it: NaN and Infinity are errors."""

    def refuse(token):
        raise ValueError(f"{token} is not JSON")

    return json.loads(body, parse_constant=refuse)


# Without a server -------------------------------------------------------------------------------


def time_wait_port() -> int:
    """A free port with a connection of ours in TIME-WAIT on it, as a stopped server leaves."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port), timeout=5)
        accepted, _ = listener.accept()
        accepted.close()  # the server's side closes first, so its port goes to TIME-WAIT
        client.recv(1)
        client.close()
    return port


def test_the_port_check_binds_past_time_wait():
    port = time_wait_port()
    check_port("127.0.0.1", port, "--port")  # "Address already in use" for 60 s before
    with socket.socket() as taken:  # a server listening there is still found
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(Exception, match="cannot listen"):
            check_port("127.0.0.1", taken.getsockname()[1], "--port")


@pytest.mark.parametrize(
    "body", [b'{"instances": [[[[true, 0.5, 0.5]]]]}', b'{"inputs": [[[[0.5, 0.5, 0.5], [0.5, false, 1]]]]}']
)
def test_pixels_mixing_booleans_and_numbers_are_refused(body):
    with pytest.raises(InvalidArgument, match="lists of numbers"):
        parse_predict(body, max_images=64)
    columnar, _, x = parse_predict(b'{"inputs": [[[[0.5, 1, 0]]]], "note": "true"}', max_images=64)
    assert columnar and x.dtype == np.float32 and x.tolist() == [[[[0.5, 1.0, 0.0]]]]


def test_answers_are_strict_json():
    text = dumps({"predictions": [[1.5, float("nan")], [float("inf"), -float("inf")]], "name": "x"})
    assert strict_json(text.encode()) == {"predictions": [[1.5, None], [None, None]], "name": "x"}
    assert dumps({"a": [0.25]}) == '{"a":[0.25]}'


def test_the_batcher_drops_work_that_cannot_finish_in_time():
    """Six one-image requests with 0.3 s left and a model that takes 0.2 s: once a run has shown
    that, the five behind the first are answered Expired at once instead of run for nobody."""
    runs = []

    def fn(x):
        runs.append(len(x))
        time.sleep(0.2)
        return x.reshape(len(x), -1)[:, :2]

    async def main():
        batcher = Batcher(fn, ThreadPoolExecutor(1), max_batch=1, timeout_ms=0, workers=1)
        loop = asyncio.get_running_loop()
        start = loop.time()

        async def one():
            try:
                await asyncio.wait_for(batcher.submit(np.zeros((1, 2, 2, 3), np.float32), 0, start + 0.3), 0.3)
                return "ok", loop.time() - start
            except (Expired, asyncio.TimeoutError) as e:
                return type(e).__name__, loop.time() - start

        results = await asyncio.gather(*(one() for _ in range(6)))
        await batcher.close()
        return results

    results = asyncio.run(main())
    assert [r for r, _ in results] == ["ok"] + ["Expired"] * 5, results
    assert len(runs) == 1  # the run that showed the model's speed, nothing after it
    assert all(t < 0.3 for r, t in results[1:])  # told at once, before their deadline


# Admission: slow bodies and the in-flight budget ------------------------------------------------


def trickle(port: int, declared: int, stop: threading.Event, every_s: float = 0.2) -> socket.socket:
    """A client that declares a large body and sends a byte of it now and then, until `stop`."""
    sock = raw_post(port, PREDICT, {"Content-Type": "application/json", "Content-Length": declared}, b"{")

    def drip():
        for _ in range(600):  # at most two minutes
            if stop.wait(every_s):
                return
            try:
                sock.sendall(b" ")
            except OSError:
                return

    threading.Thread(target=drip, daemon=True).start()
    return sock


def chunked_post(url_port: int, body: bytes) -> int:
    conn = HTTPConnection("127.0.0.1", url_port, timeout=60)
    try:
        conn.request("POST", PREDICT, iter([body[:100], body[100:]]), {"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


@pytest.mark.slow
def test_a_slow_body_does_not_lock_out_rest_inference(models):
    """One connection declaring a 64 MiB body and trickling it used to hold the whole in-flight
    budget: every other request got 429 while /healthz said ok."""
    s = Running(models[:1], grpc=False, limits=Limits(timeout_s=30.0))
    stop = threading.Event()
    try:
        port = port_of(s)
        with trickle(port, 64 << 20, stop):
            time.sleep(0.5)
            codes = [http("POST", s.url + PREDICT, SMALL)[0] for _ in range(10)]
            with ThreadPoolExecutor(10) as pool:  # chunked bodies declare no size at all
                chunked = list(pool.map(lambda _: chunked_post(port, SMALL), range(10)))
            assert codes == [200] * 10 and chunked == [200] * 10, (codes, chunked)
            assert http("GET", s.url + "/healthz")[0] == 200
            stop.set()
    finally:
        stop.set()
        s.shutdown()


@pytest.mark.slow
def test_a_body_slower_than_the_minimum_rate_is_ended_with_408(models):
    s = Running(models[:1], grpc=False, limits=Limits(timeout_s=30.0))
    stop = threading.Event()
    try:
        started = time.perf_counter()
        with trickle(port_of(s), 1 << 20, stop, every_s=0.5) as sock:  # 2 bytes/s
            answer = sock.recv(4096)
            took = time.perf_counter() - started
            assert answer.split(b" ", 2)[1] == b"408" and b"slower than 16 KiB/s" in answer
            assert b"Connection: close" in answer
        print(f"\na 2 B/s body ended with 408 after {took:.1f}s")
        assert 4.5 < took < 15  # the 5 s grace, then the rate: not the 30 s timeout
    finally:
        stop.set()
        s.shutdown()


@pytest.mark.slow
def test_health_says_busy_while_the_bodies_held_fill_the_budget(models):
    s = Running(
        models[:1], grpc=False, limits=Limits(max_body_bytes=8 << 20, max_inflight_bytes=1 << 20, timeout_s=3.0)
    )
    try:
        port = port_of(s)
        headers = {"Content-Type": "application/json", "Content-Length": 3_000_000}
        with raw_post(port, PREDICT, headers, b'{"instances": [' + b" " * (1_200_000)) as held:
            deadline = time.perf_counter() + 10
            status, body = http("GET", s.url + "/healthz")
            while status == 200 and time.perf_counter() < deadline:  # until the server has read it
                time.sleep(0.05)
                status, body = http("GET", s.url + "/healthz")
            assert status == 503 and json.loads(body)["status"] == "busy", body
            assert "max-inflight-mb" in json.loads(body)["reason"]
            status, body = http("POST", s.url + PREDICT, SMALL)
            assert status == 429 and "MiB of requests in progress" in json.loads(body)["error"]
            assert status_of(held) == 504  # the rest never came: its deadline ended it
        assert http("GET", s.url + "/healthz")[0] == 200
        assert http("POST", s.url + PREDICT, SMALL)[0] == 200
    finally:
        s.shutdown()


# Large JSON bodies, deadlines and the drain ------------------------------------------------------


def float_body(images: int, size: int) -> bytes:
    """A :predict body of `images` float images, written fast (the same row over and over)."""
    row = "[" + ",".join(["[0.5,0.25,0.125]"] * size) + "]"
    image = "[" + ",".join([row] * size) + "]"
    return ('{"instances": [' + ",".join([image] * images) + "]}").encode()


class HealthProbe:
    """Polls /healthz on a keep-alive connection in a thread and keeps the latencies."""

    def __init__(self, port: int) -> None:
        self.port, self.latencies, self.stop = port, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        conn = HTTPConnection("127.0.0.1", self.port, timeout=60)
        for _ in range(5000):
            if self.stop.wait(0.02):
                break
            t = time.perf_counter()
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            self.latencies.append(time.perf_counter() - t)
        conn.close()

    def finish(self) -> float:
        self.stop.set()
        self.thread.join(60)
        return max(self.latencies)


def timed_post(url: str, body: bytes) -> tuple[int, float]:
    t = time.perf_counter()
    status, _ = http("POST", url, body)
    return status, time.perf_counter() - t


@pytest.mark.slow
def test_large_json_bodies_stall_no_route_and_deadlines_and_the_drain_hold(models):
    """Two 20 MB float bodies used to stall every route for seconds (json.loads holding the
    interpreter lock on the event loop's behalf); with a 1.5 s timeout, answers came late."""
    timeout = 1.5
    s = Running([slow(models[0], 0.3)], grpc=False, limits=Limits(timeout_s=timeout))
    body = float_body(64, 128)
    try:
        probe = HealthProbe(port_of(s))
        time.sleep(0.3)
        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(lambda _: timed_post(s.url + PREDICT, body), range(2)))
        worst_health = probe.finish()
        mb = len(body) / 1e6
        print(f"\n{mb:.0f} MB float bodies: /healthz at worst {worst_health * 1000:.0f} ms; answers {answers}")
        assert worst_health < 0.5, probe.latencies
        assert all(status in (200, 504) and took < timeout + 0.75 for status, took in answers), answers
        # Stopped while two such bodies are parsed: the drain ends within the timeout.
        with ThreadPoolExecutor(2) as pool:
            during = [pool.submit(timed_post, s.url + PREDICT, body) for _ in range(2)]
            time.sleep(0.3)
            stopped = time.perf_counter()
            s.loop.call_soon_threadsafe(s.stop.set)
            s.thread.join(60)
            drain = time.perf_counter() - stopped
            answered = [f.result() for f in during]
        print(f"drain with two large bodies in flight: {drain:.2f}s; answers {answered}")
        assert not s.thread.is_alive() and drain < timeout + 1.5
        assert all(status in (200, 503, 504) and took < timeout + 0.75 for status, took in answered), answered
    finally:
        if s.thread.is_alive():
            s.shutdown()


@pytest.mark.slow
def test_work_whose_deadline_would_pass_is_not_run(models):
    """Requests every 0.1 s, each run 0.4 s, 0.6 s to answer: a run that cannot end in time is
    not started, so the model's runs are (nearly) all answers, and every 504 is on time."""
    timeout = 0.6
    s = Running([slow(models[0], 0.4)], max_batch=1, batch_timeout_ms=0, grpc=False, limits=Limits(timeout_s=timeout))
    try:
        runs_before, _ = batch_counts(s)
        with ThreadPoolExecutor(10) as pool:
            futures = []
            for _ in range(10):
                futures.append(pool.submit(timed_post, s.url + PREDICT, SMALL))
                time.sleep(0.1)
            answers = [f.result() for f in futures]
        time.sleep(1.0)  # anything still queued would have run by now
        runs = batch_counts(s)[0] - runs_before
        ok = sum(1 for status, _ in answers if status == 200)
        print(f"\nruns {runs:.0f}, answers {ok}, latencies {[round(t, 2) for _, t in answers]}")
        assert {status for status, _ in answers} <= {200, 504} and ok >= 1
        assert runs - ok <= 1, (runs, answers)  # at most the run that was going when time ran out
        assert max(t for _, t in answers) < timeout + 0.5
    finally:
        s.shutdown()


def photo_body(photos: int) -> bytes:
    return json.dumps({"instances": [{"b64": base64.b64encode(GRACE.read_bytes()).decode()}] * photos}).encode()


@pytest.mark.slow
def test_refusals_under_overload_are_immediate_and_late_answers_none(models):
    """Many clients posting 64 photos each at a server whose queue holds two such requests: the
    refusals (429) come at once and no answer comes after its deadline."""
    timeout = 5.0
    s = Running(models[:1], grpc=False, limits=Limits(max_queue=128, timeout_s=timeout))
    body = photo_body(64)
    results: list = []
    try:
        stop_at = time.perf_counter() + 10.0

        def client():
            for _ in range(1000):
                if time.perf_counter() > stop_at:
                    return
                results.append(timed_post(s.url + PREDICT, body))

        threads = [threading.Thread(target=client) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        refused = np.array([t for status, t in results if status == 429])
        answered = np.array([t for status, t in results if status in (200, 504)])
        codes = {c: sum(1 for r, _ in results if r == c) for c in {r for r, _ in results}}
        p50, p99 = np.percentile(refused, [50, 99])
        print(
            f"\n16 clients x 64 photos ({len(body) / 1e6:.1f} MB) for 10 s: {codes}; 429 p50 {p50 * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms; slowest answer {answered.max():.2f}s"
        )
        assert set(codes) <= {200, 429, 504} and codes.get(200) and codes.get(429)
        # Wide margins (the machine may be busy): before the fix the 429s took p50 2.5 s, p99 11.6 s.
        assert p50 < 1.0 and p99 < 3.0
        assert answered.max() < timeout + 1.5
    finally:
        s.shutdown()


# gRPC -----------------------------------------------------------------------------------------------


def grpc_predict(stub, images: np.ndarray) -> grpc.StatusCode:
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception_v1"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images))
    try:
        stub.Predict(request, timeout=60)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def grpc_refusals(server: Running) -> float:
    text = http("GET", f"{server.url}/metrics")[1].decode()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("inception_hub_requests_total{")
        and 'code="RESOURCE_EXHAUSTED"' in line
        and 'protocol="grpc"' in line
    )


@pytest.mark.slow
def test_grpc_takes_concurrent_calls_and_counts_its_refusals(models):
    """Ten clients on an idle server used to get RESOURCE_EXHAUSTED past four calls at once,
    and those refusals showed nowhere."""
    x = np.full((1, 32, 32, 3), 0.5, np.float32)
    s = Running(models[:1])
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(s.grpc))
        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(lambda _: grpc_predict(stub, x), range(50)))
        assert codes == [grpc.StatusCode.OK] * 50, {c: codes.count(c) for c in set(codes)}
    finally:
        s.shutdown()
    # A full queue refuses gRPC as it refuses REST, and each refusal is counted.
    s = Running([slow(models[0], 0.3)], max_batch=1, limits=Limits(max_queue=2))
    try:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(s.grpc))
        with ThreadPoolExecutor(10) as pool:
            codes = list(pool.map(lambda _: grpc_predict(stub, x), range(10)))
        refused = codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED)
        assert refused and set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes
        assert grpc_refusals(s) == refused
    finally:
        s.shutdown()


# Restarts ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_restart_listens_on_ports_in_time_wait(models):
    rest, grpc_port = time_wait_port(), time_wait_port()
    check_port("127.0.0.1", rest, "--port")
    check_port("127.0.0.1", grpc_port, "--grpc-port")
    s = Running(models[:1], port=rest, grpc_port=grpc_port)
    try:
        assert s.ports == (rest, grpc_port)
        assert http("GET", s.url + "/healthz")[0] == 200
        stub = prediction_service_pb2_grpc.PredictionServiceStub(grpc.insecure_channel(s.grpc))
        assert grpc_predict(stub, np.full((1, 32, 32, 3), 0.5, np.float32)) == grpc.StatusCode.OK
    finally:
        s.shutdown()


# Smaller things ---------------------------------------------------------------------------------------


def photo_index(models, paths: list[str], vectors: np.ndarray) -> Index:
    index = Index(model_identity(models[1].module), vectors.shape[1])
    index.add(paths, vectors)
    return index


@pytest.mark.slow
def test_similar_explain_and_thumbnails_refuse_as_the_other_routes_do(models, tmp_path):
    gone = tmp_path / "photos" / "gone.jpg"
    vectors = np.random.default_rng(0).standard_normal((1, models[1].output_dim("feature_vector")))
    s = Running(models, grpc=False, index=photo_index(models, [str(gone)], vectors))
    try:
        port = port_of(s)
        for path in ("/models/inception_v1_feature_vector/similar", "/models/inception_v1/explain", PREDICT):
            headers = {"Content-Type": "application/json", "Content-Length": 100 << 20, "Expect": "100-continue"}
            with raw_post(port, path, headers, b"") as sock:
                assert status_of(sock) == 413, path  # not "100 Continue" first
        status, body = http("GET", s.url + "/index/thumbnails/0")
        assert status == 404 and "gone.jpg" in json.loads(body)["error"]
        assert str(tmp_path) not in body.decode()  # no path of the server's
    finally:
        s.shutdown()


@pytest.mark.slow
def test_malformed_requests_are_logged_in_one_line_each(models, caplog):
    s = Running(models[:1], grpc=False)
    bad = [
        b"Content-Length: abc\r\n\r\n",
        b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"X: " + b"a" * 20_000 + b"\r\n\r\n",
        b"Content-Length: 10\r\nContent-Length: 12\r\n\r\n",
    ]
    try:
        with caplog.at_level(logging.INFO, logger="aiohttp.server"):
            for head in bad:
                with socket.create_connection(("127.0.0.1", port_of(s)), timeout=10) as sock:
                    sock.sendall(b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n" + head)
                    assert status_of(sock) == 400
            time.sleep(0.2)
        records = [r for r in caplog.records if r.name == "aiohttp.server"]
        assert len(records) == len(bad), [r.getMessage() for r in records]
        for r in records:
            assert not r.exc_info and "\n" not in r.getMessage() and r.levelno == logging.WARNING, r.getMessage()
    finally:
        s.shutdown()


@pytest.mark.slow
def test_an_index_without_its_graph_is_prepared_at_start_up(models, monkeypatch):
    """A large index saved without its HNSW graph used to have it built inside the first
    request: every request timed out for minutes."""
    monkeypatch.setattr(index_module, "EXACT_LIMIT", 50)  # "large" for this test: approximate search
    built = []
    build = index_module.build_graph
    monkeypatch.setattr(index_module, "build_graph", lambda parts: built.append(1) or build(parts))
    dim = models[1].output_dim("feature_vector")
    vectors = np.random.default_rng(0).standard_normal((200, dim)).astype(np.float32)
    s = Running(models, grpc=False, index=photo_index(models, [f"/photos/{i}.jpg" for i in range(200)], vectors))
    try:
        assert built == [1]  # before the server listened
        body = {"b64": base64.b64encode(GRACE.read_bytes()).decode(), "k": 5}
        status, answer = http("POST", s.url + "/models/inception_v1_feature_vector/similar", body)
        assert status == 200 and len(json.loads(answer)["neighbours"]) == 5
        assert built == [1]
    finally:
        s.shutdown()


def test_an_index_holding_nan_vectors_is_refused_before_serving(tmp_path, capsys):
    """NaN vectors in an index folder used to be answered as invalid JSON on every search; now
    `serve --index` refuses the folder in one line before loading any model or listening."""
    from inception_hub.cli import main

    model = {"handle": "h", "architecture": "inception_v1", "kind": "feature_vector", "weights": "abc"}
    index = Index(model, 8)
    index.add(["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"], np.eye(3, 8, dtype=np.float32))
    folder = index.save(tmp_path / "ix")
    vectors = np.load(folder / "vectors.npy")
    vectors[1:] = np.nan
    np.save(folder / "vectors.npy", vectors)
    code = main(["serve", "--models", "inception_v1", "--index", str(folder), "--port", "0", "--grpc-port", "-1"])
    err = capsys.readouterr().err
    assert code == 2 and "NaN" in err and str(folder) in err, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
