"""The Open Inference Protocol (v2) beside TF Serving's API: tritonclient's and KServe's stock
clients against the running server, its wire format against the real protos, and the same
hostile-input and overload behaviour as the TF Serving routes."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tritongrpc
import tritonclient.http as tritonhttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.grpc import service_pb2
from tritonclient.utils import InferenceServerException

from conftest import IMAGES, reference
from inception_hub.cli import main
from inception_hub.serve import Limits, v2
from inception_hub.serve import v2_protos as ours
from inception_hub.serve.core import InvalidArgument, TooLarge
from test_serve import Running, http, raw_post, slow, status_of

GRACE = IMAGES / "grace_hopper.jpg"
SAMPLES = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:3]
PHOTOS = [GRACE, *SAMPLES]
INFER = "/v2/models/inception_v1/infer"


# Without a server --------------------------------------------------------------------------------


def messages(descriptor, seen=None) -> dict:
    """A message and every message its fields reach, by full name."""
    seen = {} if seen is None else seen
    if descriptor.full_name not in seen:
        seen[descriptor.full_name] = descriptor
        for f in descriptor.fields:
            if f.message_type is not None:
                messages(f.message_type, seen)
    return seen


def field_signature(f) -> tuple:
    kind = f.message_type or f.enum_type
    oneof = f.containing_oneof.name if f.containing_oneof and not f.containing_oneof.name.startswith("_") else None
    return f.number, f.type, f.is_repeated, kind.full_name if kind else None, oneof


def assert_declared_as_real(declared: dict, real_file, service: str) -> None:
    """Every message, field and method declared here is the real proto's, number for number."""
    real_service = real_file.services_by_name[service.rsplit(".", 1)[1]]
    for method, (request, response) in declared.items():
        real = real_service.methods_by_name[method]
        assert real.input_type.full_name == request.DESCRIPTOR.full_name, method
        assert real.output_type.full_name == response.DESCRIPTOR.full_name, method
        ours_seen, real_seen = {}, {}
        for cls, twin in ((request, real.input_type), (response, real.output_type)):
            messages(cls.DESCRIPTOR, ours_seen)
            messages(twin, real_seen)
        for name, descriptor in ours_seen.items():
            for f in descriptor.fields:
                twin = real_seen[name].fields_by_name.get(f.name)
                assert twin is not None and field_signature(f) == field_signature(twin), f"{name}.{f.name}"
            for enum in descriptor.enum_types:
                values = {v.name: v.number for v in real_seen[name].enum_types_by_name[enum.name].values}
                assert {v.name: v.number for v in enum.values} == values


def test_the_inference_service_is_declared_as_tritons_and_kserves():
    assert_declared_as_real(ours.SERVICES[ours.INFERENCE], service_pb2.DESCRIPTOR, ours.INFERENCE)
    assert len(ours.SERVICES[ours.INFERENCE]) == 6


def test_rest_bodies_are_parsed_with_the_binary_extension():
    x = np.random.default_rng(0).random((2, 8, 8, 3), dtype=np.float32)
    header = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [2, 8, 8, 3],
                          "parameters": {"binary_data_size": x.nbytes}}],
              "outputs": [{"name": "logits", "parameters": {"classification": 3, "binary_data": True}}],
              "id": "r1"}  # fmt: skip
    head = json.dumps(header).encode()
    parsed = v2.parse_rest(head + x.tobytes(), len(head), max_images=64)
    np.testing.assert_array_equal(parsed.images, x)
    assert parsed.outputs == [v2.Wanted("logits", True, 3)] and parsed.id == "r1"
    photos = [b"\xff\xd8one", b"two"]
    raw = b"".join(struct.pack("<I", len(p)) + p for p in photos)
    header["inputs"] = [
        {"name": "images", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": len(raw)}}
    ]
    head = json.dumps(header).encode()
    assert v2.parse_rest(head + raw, len(head), max_images=64).images == photos
    # JSON tensors: nested or flat numbers; BYTES as base64.
    body = {"inputs": [{"name": "images", "datatype": "FP32", "shape": [1, 1, 2, 3], "data": [[[[0, 1, 0.5]] * 2]]}]}
    assert v2.parse_rest(json.dumps(body).encode(), None, 64).images.shape == (1, 1, 2, 3)
    body["inputs"][0]["data"] = [0, 1, 0.5, 0, 1, 0.5]
    assert v2.parse_rest(json.dumps(body).encode(), None, 64).images.dtype == np.float32
    body = {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], "data": ["b25l", {"b64": "dHdv"}]}]}
    assert v2.parse_rest(json.dumps(body).encode(), None, 64).images == [b"one", b"two"]


def fp32(shape, **tensor) -> dict:
    return {"inputs": [{"name": "images", "datatype": "FP32", "shape": shape, **tensor}]}


def framed(header: dict, tail: bytes) -> tuple[bytes, int]:
    """A body of the binary extension: the JSON header, then `tail`; and the header's length."""
    head = json.dumps(header).encode()
    return head + tail, len(head)


def photos_header(size: int) -> dict:
    return {"inputs": [{"name": "images", "datatype": "BYTES", "shape": [1], "parameters": {"binary_data_size": size}}]}


def plain(body: dict) -> tuple[bytes, None]:
    return json.dumps(body).encode(), None


ONE = fp32([1, 1, 1, 3], data=[0, 0, 0])
BYTES = {"name": "images", "datatype": "BYTES"}
HOSTILE = [
    ((b"", None), "JSON"),
    ((b"[]", None), "JSON object"),
    (plain({"inputs": []}), "one tensor"),
    (plain(fp32([1, 2, 2, 3])), "neither"),
    (plain(fp32([1, 2, 2, 3], data=[0.5])), "12 numbers"),  # no broadcasting of a short list
    (plain(fp32([1, 1, 1, 3], data=[True, 0.5, 0.5])), "numbers"),
    (plain(fp32([1, 1, 1, 3], data=["0.5", "0.5", "0.5"])), "numbers"),
    (plain(fp32([1, 1, 1, 3], data=[[0.5], [0.5, 0.5]])), "numbers"),
    (plain(fp32([1, 1, 1, 3], data={"a": 1})), "list of numbers"),
    (plain(fp32([65, 1, 1, 3], data=[0.5] * 195)), "at most 64"),
    (plain(fp32([1, 2.5, 1, 3], data=[0])), "integers"),
    (plain(fp32([1, True, 1, 3], data=[0])), "integers"),
    (plain(fp32([1, -1, 1, 3], data=[0])), "shape"),
    (plain(fp32([1, 1, 1, 4], data=[0] * 4)), "shape"),
    (plain({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 1, 1, 3]}]}), "'x'"),
    (plain({"inputs": [{"name": "images", "datatype": "INT8", "shape": [1]}]}), "INT8"),
    (plain({"inputs": [{**BYTES, "shape": [1], "data": [5]}]}), "base64"),
    (plain({"inputs": [{**BYTES, "shape": [1], "data": ["!!"]}]}), "base64"),
    (plain({"inputs": [{**BYTES, "shape": [2, 1], "data": []}]}), "[N]"),
    (plain({"inputs": [{**BYTES, "shape": [65], "data": []}]}), "at most 64"),
    (plain({**ONE, "outputs": [{"name": "logits", "parameters": {"classification": -1}}]}), "classification"),
    (plain({**ONE, "outputs": [{"name": "logits", "parameters": {"binary_data": "yes"}}]}), "binary_data"),
    (plain({**ONE, "outputs": [{"name": 5}]}), "name"),
    (plain({**ONE, "outputs": "logits"}), "outputs"),
    (plain({**ONE, "parameters": []}), "parameters"),
    (plain({**ONE, "parameters": {"binary_data_output": 1}}), "binary_data_output"),
    (plain({**ONE, "id": 5}), "id"),
    ((b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}", None), "JSON"),
    # The binary extension: lengths that do not add up are refused before anything is allocated.
    ((b'{"inputs": []}', 1 << 40), "not within"),
    ((b'{"inputs": []}', 0), "not within"),
    ((b'{"inputs": []}', -5), "not within"),
    (framed(fp32([64, 1024, 1024, 3], parameters={"binary_data_size": 4}), b"abcd"), "takes"),
    (framed(fp32([1, 1, 1, 3], parameters={"binary_data_size": 12}), b"\0" * 8), "binary_data_size"),
    (framed(fp32([1, 1, 1, 3], parameters={"binary_data_size": True}), b"\0"), "binary_data_size"),
    (framed(ONE, b"\0\0"), "no input gives"),
    (framed(photos_header(8), struct.pack("<I", 1 << 31) + b"abcd"), "length-prefixed"),
    (framed(photos_header(9), struct.pack("<I", 4) + b"abcde"), "length-prefixed"),  # a byte too many
    (framed(photos_header(2), b"ab"), "length-prefixed"),
]


@pytest.mark.parametrize(("request_", "expect"), HOSTILE)
def test_hostile_bodies_are_refused_with_the_reason(request_, expect):
    body, header_length = request_
    with pytest.raises((InvalidArgument, TooLarge)) as e:
        v2.parse_rest(body, header_length, max_images=64)
    assert expect in e.value.message, e.value.message


def test_classification_strings_are_tritons():
    values = np.array([[0.5, 2.0, -1.0, 2.0]], np.float32)
    out = v2.classification(values, 3, ("a", "b", "c", "d"))
    assert out.tolist() == [[b"2.000000:1:b", b"2.000000:3:d", b"0.500000:0:a"]]  # ties: the lower index first
    assert v2.classification(values, 9).shape == (1, 4)  # at most every class; no labels, no third part
    assert v2.classification(values, 1).tolist() == [[b"2.000000:1"]]


# Against a server ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(models):
    s = Running(models, max_batch=8, batch_timeout_ms=20, workers=1)
    yield s
    s.shutdown()


def hostport(server) -> str:
    return server.url.removeprefix("http://")


@pytest.fixture(scope="module")
def classified(v1_ckpt):
    """`inception-hub classify`'s top-5 labels of each photo, as the CLI prints them."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert (
            main(["classify", *map(str, PHOTOS), "--checkpoint", v1_ckpt, "-f", "json", "-k", "5", "--no-progress"])
            == 0
        )
    return {r["path"]: [p["label"] for p in r["predictions"]] for r in json.loads(out.getvalue())}


def labels_of(strings: np.ndarray) -> list[list[str]]:
    """The labels of Triton's classification strings ("score:index:label")."""
    return [[s.decode().split(":", 2)[2] for s in row] for row in strings]


@pytest.mark.slow
def test_tritonclient_http_stock_usage(server, classified):
    client = tritonhttp.InferenceServerClient(hostport(server))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("inception_v1")
    assert client.is_model_ready("inception_v1", "1") and not client.is_model_ready("inception_v1", "2")
    assert not client.is_model_ready("resnet")
    meta = client.get_model_metadata("inception_v1")
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, -1, -1, 3]}]
    assert [(o["name"], o["shape"]) for o in meta["outputs"]] == [
        ("logits", [-1, 1001]),
        ("feature_vector", [-1, 1024]),
    ]
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data", "classification"]

    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:2].astype(np.float32) / 255
    images = tritonhttp.InferInput("images", list(x.shape), "FP32")
    images.set_data_from_numpy(x, binary_data=True)
    result = client.infer("inception_v1", [images])  # no outputs named: the main one, in binary
    np.testing.assert_allclose(result.as_numpy("logits"), ref["logits"][:2], atol=1e-4)
    wanted = [
        tritonhttp.InferRequestedOutput("logits", binary_data=False),
        tritonhttp.InferRequestedOutput("feature_vector", binary_data=True),
    ]
    result = client.infer("inception_v1", [images], outputs=wanted, request_id="7")
    np.testing.assert_allclose(result.as_numpy("logits"), ref["logits"][:2], atol=1e-4)
    np.testing.assert_allclose(result.as_numpy("feature_vector"), ref["feature_vector"][:2], atol=1e-4)
    assert result.get_response()["id"] == "7"
    images.set_data_from_numpy(x, binary_data=False)  # JSON tensors both ways
    result = client.infer("inception_v1", [images], outputs=[tritonhttp.InferRequestedOutput("logits", False)])
    np.testing.assert_allclose(result.as_numpy("logits"), ref["logits"][:2], atol=1e-4)

    # Encoded photos, decoded on the server as classify decodes them: the same top-5 labels.
    photos = tritonhttp.InferInput("images", [len(PHOTOS)], "BYTES")
    photos.set_data_from_numpy(np.array([p.read_bytes() for p in PHOTOS], dtype=object), binary_data=True)
    top = tritonhttp.InferRequestedOutput("logits", class_count=5)
    result = client.infer("inception_v1", [photos], outputs=[top])
    assert result.as_numpy("logits").shape == (len(PHOTOS), 5)
    assert labels_of(result.as_numpy("logits")) == [classified[str(p)] for p in PHOTOS]

    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("resnet", [images])
    with pytest.raises(InferenceServerException, match="unexpected output"):
        client.infer("inception_v1", [images], outputs=[tritonhttp.InferRequestedOutput("probabilities")])


@pytest.mark.slow
def test_tritonclient_grpc_stock_usage(server, classified):
    client = tritongrpc.InferenceServerClient(server.grpc)
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("inception_v1")
    assert not client.is_model_ready("resnet")
    meta = client.get_model_metadata("inception_v1_feature_vector", as_json=True)
    assert meta["outputs"] == [{"name": "feature_vector", "datatype": "FP32", "shape": ["-1", "1024"]}]
    assert client.get_server_metadata().name == "inception-hub"

    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:2].astype(np.float32) / 255
    images = tritongrpc.InferInput("images", list(x.shape), "FP32")
    images.set_data_from_numpy(x)
    wanted = [tritongrpc.InferRequestedOutput("logits"), tritongrpc.InferRequestedOutput("feature_vector")]
    result = client.infer("inception_v1", [images], outputs=wanted, request_id="r")
    np.testing.assert_allclose(result.as_numpy("logits"), ref["logits"][:2], atol=1e-4)
    np.testing.assert_allclose(result.as_numpy("feature_vector"), ref["feature_vector"][:2], atol=1e-4)
    assert result.get_response().id == "r" and result.get_response().model_version == "1"

    photos = tritongrpc.InferInput("images", [len(PHOTOS)], "BYTES")
    photos.set_data_from_numpy(np.array([p.read_bytes() for p in PHOTOS], dtype=object))
    result = client.infer("inception_v1", [photos], outputs=[tritongrpc.InferRequestedOutput("logits", class_count=5)])
    assert labels_of(result.as_numpy("logits")) == [classified[str(p)] for p in PHOTOS]

    for model, tensor, code in [
        ("resnet", images, grpc.StatusCode.NOT_FOUND),
        ("inception_v1", tritongrpc.InferInput("x", [1, 8, 8, 3], "FP32"), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        if tensor is not images:
            tensor.set_data_from_numpy(np.zeros((1, 8, 8, 3), np.float32))
        with pytest.raises(InferenceServerException) as e:
            client.infer(model, [tensor])
        assert e.value.status() == str(code), e.value


KSERVE = """
import asyncio, json, sys
import numpy as np
from kserve import InferenceGRPCClient, InferenceRESTClient, InferInput, InferRequest, RESTConfig

async def main(url, grpc_url, photo):
    x = np.asarray(json.loads(sys.stdin.read()), np.float32)
    rest = InferenceRESTClient(RESTConfig(protocol="v2"))
    out = {"live": await rest.is_server_live(url), "ready": await rest.is_server_ready(url),
           "model_ready": await rest.is_model_ready(url, "inception_v1")}
    for binary in (True, False):
        images = InferInput("images", list(x.shape), "FP32")
        images.set_data_from_numpy(x, binary_data=binary)
        answer = await rest.infer(url, InferRequest("inception_v1", [images]), model_name="inception_v1")
        out[f"rest_{binary}"] = answer.outputs[0].as_numpy().tolist()
    await rest.close()
    client = InferenceGRPCClient(grpc_url)
    out["grpc_live"] = await client.is_server_live()
    out["grpc_model_ready"] = await client.is_model_ready("inception_v1")
    images = InferInput("images", list(x.shape), "FP32")
    images.set_data_from_numpy(x)
    answer = await client.infer(InferRequest("inception_v1", [images]))
    out["grpc"] = answer.outputs[0].as_numpy().tolist()
    photo_input = InferInput("images", [1], "BYTES")
    photo_input.set_data_from_numpy(np.array([open(photo, "rb").read()], dtype=object))
    answer = await client.infer(InferRequest("inception_v1", [photo_input]))
    out["grpc_photo"] = answer.outputs[0].as_numpy().tolist()
    await client.close()
    print(json.dumps(out))

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.slow
def test_kserve_clients_get_the_same_answers(server, clf):
    """KServe's InferenceRESTClient and InferenceGRPCClient, in a process of their own: kserve and
    tritonclient.grpc register the same protos, which one process cannot hold twice."""
    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:2].astype(np.float32) / 255
    run = subprocess.run(
        [sys.executable, "-c", KSERVE, server.url, server.grpc, str(GRACE)],
        input=json.dumps(x.tolist()),
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["live"] and out["ready"] and out["model_ready"] and out["grpc_live"] and out["grpc_model_ready"]
    for key in ("rest_True", "rest_False", "grpc"):
        np.testing.assert_allclose(out[key], ref["logits"][:2], atol=1e-4, err_msg=key)
    from inception_hub.images import load_image

    np.testing.assert_allclose(out["grpc_photo"], clf(load_image(GRACE, (224, 224))[None]), atol=1e-4)


@pytest.mark.slow
def test_health_routes_and_errors(server):
    assert http("GET", server.url + "/v2/health/live") == (200, b'{"live": true}')
    assert http("GET", server.url + "/v2/health/ready") == (200, b'{"ready": true}')
    assert json.loads(http("GET", server.url + "/v2")[1])["name"] == "inception-hub"
    assert json.loads(http("GET", server.url + "/v2/models/inception_v1/ready")[1]) == {
        "name": "inception_v1",
        "ready": True,
    }
    for path, status, words in [
        ("/v2/models/nope", 404, "unknown model: 'nope'"),
        ("/v2/models/inception_v1/versions/3", 404, "version 3"),
        ("/v2/models/nope/ready", 404, "unknown model"),
        ("/v2/nope", 404, "Not Found"),
    ]:
        code, body = http("GET", server.url + path)
        assert code == status and words in json.loads(body)["error"], (path, body)
    code, body = http("POST", server.url + "/v2/models/nope/infer", fp32([1, 1, 1, 3], data=[0, 0, 0]))
    assert code == 404 and "error" in json.loads(body)
    code, body = http("GET", server.url + INFER)
    assert code == 405 and "error" in json.loads(body)
    # Float inputs meet the module's contract, and a shape is never filled from less data.
    code, body = http("POST", server.url + INFER, fp32([1, 40, 40, 3], data=[2.0] * 4800))
    assert code == 400 and "[0, 1]" in json.loads(body)["error"]
    code, body = http("POST", server.url + INFER, fp32([1, 4000, 4000, 3], parameters={"binary_data_size": 0}))
    assert code == 400 and "FP32 [1, 4000, 4000, 3] takes" in json.loads(body)["error"]
    code, body = http("POST", server.url + INFER, fp32([65, 1, 1, 3], data=[0.5] * 195))
    assert code == 413 and "at most 64 images" in json.loads(body)["error"]


@pytest.mark.slow
def test_hostile_requests_leave_memory_bounded(server):
    """Declared shapes and lengths of gigabytes with a few bytes behind them: each refused at
    once, and the server's peak memory does not move."""

    def peak() -> int:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) << 10

    before = peak()
    huge = json.dumps(fp32([64, 1024, 1024, 3], parameters={"binary_data_size": 4})).encode()
    for _ in range(20):
        req = urllib.request.Request(server.url + INFER, data=huge + b"abcd", method="POST",
                                     headers={"Inference-Header-Content-Length": str(len(huge))})  # fmt: skip
        code = http_status(req)
        assert code in (400, 413), code
    channel = grpc.insecure_channel(server.grpc)
    stub = channel.unary_unary(
        "/inference.GRPCInferenceService/ModelInfer",
        request_serializer=service_pb2.ModelInferRequest.SerializeToString,
        response_deserializer=service_pb2.ModelInferResponse.FromString,
    )
    for dims, raw in [([64, 2000, 2000, 3], b"abcd"), ([4], struct.pack("<I", 1 << 31) + b"x")]:
        request = service_pb2.ModelInferRequest(model_name="inception_v1")
        request.inputs.add(name="images", datatype="BYTES" if len(dims) == 1 else "FP32", shape=dims)
        request.raw_input_contents.append(raw)
        with pytest.raises(grpc.RpcError) as e:
            stub(request, timeout=30)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT, e.value.details()
    assert peak() - before < 64 << 20
    assert http("GET", server.url + "/v2/health/ready")[0] == 200


def http_status(req) -> int:
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


@pytest.mark.slow
def test_overload_is_refused_with_429_and_counted(models):
    """A full queue refuses v2 requests (REST 429, gRPC RESOURCE_EXHAUSTED) as it refuses TF
    Serving's, and /metrics counts them under their protocol."""
    s = Running([slow(models[0], 0.4)], max_batch=1, batch_timeout_ms=0, limits=Limits(max_queue=2, timeout_s=10.0))
    body = json.dumps(fp32([1, 32, 32, 3], data=[0.5] * 3072)).encode()
    try:
        with ThreadPoolExecutor(8) as pool:
            codes = sorted(pool.map(lambda _: http("POST", s.url + INFER, body)[0], range(8)))
        assert 200 in codes and 429 in codes and set(codes) <= {200, 429}, codes
        client = tritongrpc.InferenceServerClient(s.grpc)
        images = tritongrpc.InferInput("images", [1, 32, 32, 3], "FP32")
        images.set_data_from_numpy(np.full((1, 32, 32, 3), 0.5, np.float32))

        def one(_):
            try:
                client.infer("inception_v1", [images], client_timeout=60)
                return "OK"
            except InferenceServerException as e:
                return e.status()

        with ThreadPoolExecutor(8) as pool:
            grpc_codes = list(pool.map(one, range(8)))
        assert "OK" in grpc_codes and "StatusCode.RESOURCE_EXHAUSTED" in grpc_codes, grpc_codes
        text = http("GET", f"{s.url}/metrics")[1].decode()
        assert 'code="RESOURCE_EXHAUSTED",model="inception_v1",protocol="rest_v2"' in text
        refused = [
            float(line.split()[-1])
            for line in text.splitlines()
            if line.startswith("inception_hub_requests_total{") and 'code="RESOURCE_EXHAUSTED"' in line
            and 'protocol="grpc_v2"' in line
        ]  # fmt: skip
        assert sum(refused) == grpc_codes.count("StatusCode.RESOURCE_EXHAUSTED")
        # The probes answer even now (never refused under load).
        with ThreadPoolExecutor(8) as pool:
            busy = [pool.submit(http, "POST", s.url + INFER, body) for _ in range(4)]
            time.sleep(0.2)
            assert client.is_server_live()
            [f.result() for f in busy]
    finally:
        s.shutdown()


@pytest.mark.slow
def test_a_slow_v2_body_holds_no_one_up_and_a_large_one_is_refused_first(models):
    s = Running(models[:1], grpc=False, limits=Limits(max_body_bytes=1 << 20, timeout_s=30.0))
    try:
        port = int(s.url.rsplit(":", 1)[1])
        headers = {"Content-Length": 100 << 20, "Expect": "100-continue"}
        with raw_post(port, INFER, headers, b"") as sock:
            assert status_of(sock) == 413  # not "100 Continue"
        small = fp32([1, 32, 32, 3], data=[0.5] * 3072)
        with raw_post(port, INFER, {"Content-Length": 500_000}, b"{"):  # a body that never comes
            assert [http("POST", s.url + INFER, small)[0] for _ in range(3)] == [200] * 3
    finally:
        s.shutdown()


v2_paths = st.sampled_from(
    [
        "/v2",
        "/v2/health/live",
        "/v2/health/ready",
        "/v2/models/inception_v1",
        "/v2/models/inception_v1/ready",
        "/v2/models/inception_v1/versions/1/infer",
        "/v2/models/inception_v1/infer",
        "/v2/models/x/infer",
        "/v2/models/inception_v1/versions/9/infer",
    ]
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=10),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
tensors = st.fixed_dictionaries(
    {},
    optional={
        "name": st.sampled_from(["images", "x"]) | json_values,
        "datatype": st.sampled_from(["FP32", "BYTES", "INT8"]) | json_values,
        "shape": st.lists(st.integers(-2, 70), max_size=5) | json_values,
        "data": json_values,
        "parameters": st.fixed_dictionaries({}, optional={"binary_data_size": st.integers(-5, 100)}) | json_values,
    },
)
v2_bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries(
        {},
        optional={
            "inputs": st.lists(tensors, max_size=2) | json_values,
            "outputs": json_values,
            "parameters": json_values,
            "id": json_values,
        },
    ).map(lambda v: json.dumps(v).encode()),  # fmt: skip
    st.binary(max_size=200),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(method=st.sampled_from(["GET", "POST"]), path=v2_paths, body=v2_bodies, header=st.none() | st.integers(-3, 300))
@pytest.mark.slow
def test_fuzz_finds_no_5xx(server, method, path, body, header):
    headers = {} if header is None else {"Inference-Header-Content-Length": str(header)}
    req = urllib.request.Request(server.url + path, data=body if method == "POST" else None, method=method,
                                 headers=headers)  # fmt: skip
    assert http_status(req) < 500


@pytest.mark.slow
def test_the_openapi_file_lists_the_v2_routes(server):
    spec = json.loads(http("GET", server.url + "/openapi.json")[1])
    for path in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{name}/infer",
                 "/v2/models/{name}/versions/{version}/ready"):  # fmt: skip
        assert path in spec["paths"], path
    content = spec["paths"]["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    assert set(content) == {"application/json", "application/octet-stream"}
