"""What TF Serving's own clients see: its example gRPC client's logic run unchanged, the REST
Classify API, the metadata fields, and the message for an image sent without its batch dimension."""

from __future__ import annotations

import base64
import io
import json

import grpc
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from tensorflow_serving.apis import get_model_metadata_pb2, predict_pb2, prediction_service_pb2_grpc

import inception_hub
from conftest import IMAGES
from inception_hub.serve import build
from test_serve import Running, http

pytestmark = pytest.mark.slow  # starts a server

GRACE = IMAGES / "grace_hopper.jpg"
SAMPLES = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:3]


@pytest.fixture(scope="module")
def server(checkpoints):
    ckpt = str(checkpoints["inception_v1", "v1"])
    s = Running([build("inception_v1", ckpt), build("inception_v1/feature_vector", ckpt)], max_batch=8)
    yield s
    s.shutdown()


def test_the_tf_serving_example_grpc_client_runs_unchanged(server, clf):
    # tensorflow_serving/example/resnet_client_grpc.py, step by step: only the model's name, input
    # and output keys and the image differ.
    with open(GRACE, "rb") as f:
        content = f.read()
    data = Image.open(io.BytesIO(content))
    data = np.array(data) / 255.0
    data = np.expand_dims(data, 0)
    data = data.astype(np.float32)
    channel = grpc.insecure_channel(server.grpc)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "inception_v1"
    request.model_spec.signature_name = "serving_default"
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(data))
    result = stub.Predict(request, 10.0)
    result = result.outputs["logits"].float_val
    predicted = np.argmax(result)
    channel.close()

    expected = clf(data)[0]  # the same whole photo through the module API
    np.testing.assert_allclose(np.asarray(result), expected, atol=1e-4, rtol=0)
    assert predicted == int(np.argmax(expected))


def test_rest_classify_gives_label_score_pairs(server, clf):
    files = [GRACE, *SAMPLES]
    body = {"examples": [{"image": {"b64": base64.b64encode(p.read_bytes()).decode()}} for p in files]}
    status, raw = http("POST", f"{server.url}/v1/models/inception_v1:classify", body)
    assert status == 200, raw
    result = json.loads(raw)["result"]
    expected = inception_hub.decode_predictions(clf(np.stack([inception_hub.load_image(p, (224, 224)) for p in files])))
    assert len(result) == len(files)
    for pairs, preds in zip(result, expected, strict=True):
        assert [label for label, _ in pairs] == [p.label for p in preds]  # our labels, best first
        np.testing.assert_allclose([s for _, s in pairs], [p.score for p in preds], atol=1e-5)

    # The image as a one-element feature list, the context, top_k, and the versioned path.
    image = [{"b64": base64.b64encode(GRACE.read_bytes()).decode()}]
    status, raw = http(
        "POST",
        f"{server.url}/v1/models/inception_v1/versions/1:classify",
        {"context": {"image/encoded": image}, "examples": [{}], "top_k": 2, "signature_name": "image_classification"},
    )
    assert status == 200 and [p[0] for p in json.loads(raw)["result"][0]] == [p[0] for p in result[0][:2]]
    spec = json.loads(http("GET", f"{server.url}/openapi.json")[1])
    assert "/v1/models/{name}/versions/{version}:classify" in spec["paths"]


@pytest.mark.parametrize(
    "path, body, message",
    [
        ("inception_v1_feature_vector", {"examples": [{"image": {"b64": ""}}]}, "does not classify"),
        ("inception_v1", {"examples": [{"image": {"b64": ""}}], "signature_name": "image_feature_vector"}, "classify"),
        ("inception_v1", {"examples": [{"pixels": [1.0]}]}, "image, images, image/encoded"),
        ("inception_v1", {"examples": "x"}, '"examples" must be a list'),
        ("inception_v1", {"examples": [], "top_k": 0}, "top_k"),
        ("inception_v1", [1], '"examples"'),
    ],
)
def test_rest_classify_refusals(server, path, body, message):
    status, raw = http("POST", f"{server.url}/v1/models/{path}:classify", body)
    assert status == 400 and message in json.loads(raw)["error"]


def test_metadata_carries_tf_servings_fields(server):
    status, raw = http("GET", f"{server.url}/v1/models/inception_v1/metadata")
    sig = json.loads(raw)["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert status == 200 and set(sig) == {"inputs", "outputs", "method_name", "defaults"}
    assert sig["defaults"] == {} and sig["method_name"] == "tensorflow/serving/predict"
    with grpc.insecure_channel(server.grpc) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        request.model_spec.name = "inception_v1"
        response = stub.GetModelMetadata(request, timeout=30)
    sig_map = get_model_metadata_pb2.SignatureDefMap()
    response.metadata["signature_def"].Unpack(sig_map)
    real = sig_map.signature_def["serving_default"]
    assert real.inputs["images"].tensor_shape.dim[3].size == 3 and len(real.defaults) == 0


@pytest.mark.parametrize("key", ["inputs", "instances"])
def test_one_image_without_its_batch_dimension_is_named_as_such(server, key):
    image = np.full((224, 224, 3), 0.5, np.float32).tolist()  # 224 "images" to a naive reading: over 64
    status, raw = http("POST", f"{server.url}/v1/models/inception_v1:predict", {key: image})
    error = json.loads(raw)["error"]
    assert status == 400 and "without a batch dimension" in error and f'"{key}": [image]' in error
