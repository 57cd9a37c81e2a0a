"""The server's own declaration of TF Serving's wire format against the real protos."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2,
    predict_pb2,
    prediction_service_pb2,
)

from inception_hub.serve import protos

REAL = {
    "tensorflow.TensorProto": tf.make_tensor_proto(0.0).DESCRIPTOR,
    "tensorflow.serving.PredictRequest": predict_pb2.PredictRequest.DESCRIPTOR,
    "tensorflow.serving.PredictResponse": predict_pb2.PredictResponse.DESCRIPTOR,
    "tensorflow.serving.GetModelMetadataRequest": get_model_metadata_pb2.GetModelMetadataRequest.DESCRIPTOR,
    "tensorflow.serving.GetModelMetadataResponse": get_model_metadata_pb2.GetModelMetadataResponse.DESCRIPTOR,
    "tensorflow.serving.SignatureDefMap": get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR,
    "tensorflow.serving.GetModelStatusRequest": get_model_status_pb2.GetModelStatusRequest.DESCRIPTOR,
    "tensorflow.serving.GetModelStatusResponse": get_model_status_pb2.GetModelStatusResponse.DESCRIPTOR,
}


def _messages(descriptor, seen=None):
    """A message and every message its fields reach."""
    seen = {} if seen is None else seen
    if descriptor.full_name not in seen:
        seen[descriptor.full_name] = descriptor
        for field in descriptor.fields:
            if field.message_type is not None:
                _messages(field.message_type, seen)
    return seen


def _signature(field):
    kind = field.message_type or field.enum_type
    oneof = (
        field.containing_oneof.name
        if field.containing_oneof and not field.containing_oneof.name.startswith("_")
        else None
    )
    return field.number, field.type, field.is_repeated, kind.full_name if kind else None, oneof


def test_every_declared_field_matches_the_real_protos():
    ours = {}
    for cls in (protos.PredictRequest, protos.PredictResponse, protos.GetModelMetadataResponse,
                protos.GetModelMetadataRequest, protos.SignatureDefMap, protos.GetModelStatusRequest,
                protos.GetModelStatusResponse):  # fmt: skip
        _messages(cls.DESCRIPTOR, ours)
    real = {}
    for descriptor in REAL.values():
        _messages(descriptor, real)
    assert len(ours) >= 15  # the requests, responses, maps' entries, tensors and shapes
    for name, descriptor in ours.items():
        assert name in real, name
        for field in descriptor.fields:
            twin = real[name].fields_by_name.get(field.name)
            assert twin is not None, f"{name}.{field.name}"
            assert _signature(field) == _signature(twin), f"{name}.{field.name}"
        for enum in descriptor.enum_types:
            values = {v.name: v.number for v in real[name].enum_types_by_name[enum.name].values}
            assert {v.name: v.number for v in enum.values} == values
    data_type = protos.TensorProto.DESCRIPTOR.fields_by_name["dtype"].enum_type
    real_type = REAL["tensorflow.TensorProto"].fields_by_name["dtype"].enum_type
    assert len(data_type.values) == 9
    for value in data_type.values:
        assert real_type.values_by_number[value.number].name == value.name
    for service, methods in protos.SERVICES.items():
        module = prediction_service_pb2 if "Prediction" in service else model_service_pb2
        real_service = module.DESCRIPTOR.services_by_name[service.rsplit(".", 1)[1]]
        for method, (request, response) in methods.items():
            real_method = real_service.methods_by_name[method]
            assert real_method.input_type.full_name == request.DESCRIPTOR.full_name
            assert real_method.output_type.full_name == response.DESCRIPTOR.full_name


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@pytest.mark.parametrize("packed", [True, False])
def test_tensors_read_as_tensorflow_reads_them(dtype, packed):
    values = np.random.default_rng(0).uniform(0, 1, (2, 5, 4, 3)).astype(dtype)
    real = tf.make_tensor_proto(values)
    if not packed:  # the *_val lists, as clients that build protos by hand send them
        real.ClearField("tensor_content")
        if dtype == np.float16:
            real.half_val.extend(values.view(np.uint16).ravel().tolist())
        else:
            getattr(real, "float_val" if dtype == np.float32 else "double_val").extend(values.ravel().tolist())
    ours = protos.TensorProto.FromString(real.SerializeToString())
    np.testing.assert_array_equal(protos.to_ndarray(ours), tf.make_ndarray(real).astype(np.float32))


def test_responses_read_back_by_tensorflow():
    out = np.random.default_rng(1).normal(size=(3, 1001)).astype(np.float32)
    response = protos.PredictResponse()
    response.model_spec.name = "m"
    response.model_spec.version.value = 5
    response.outputs["logits"].CopyFrom(protos.from_ndarray(out))
    real = predict_pb2.PredictResponse.FromString(response.SerializeToString())
    assert real.model_spec.version.value == 5 and real.model_spec.name == "m"
    np.testing.assert_array_equal(tf.make_ndarray(real.outputs["logits"]), out)
    # As TF Serving answers by default: the values in float_val, which its example clients read.
    tensor = real.outputs["logits"]
    assert not tensor.tensor_content and len(tensor.float_val) == out.size
    np.testing.assert_array_equal(np.array(tensor.float_val, np.float32).reshape(3, 1001), out)
