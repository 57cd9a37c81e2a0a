"""The Open Inference Protocol's gRPC wire format (KServe's `grpc_predict_v2.proto`, Triton's
`grpc_service.proto`: package `inference`) and gRPC's health service (`grpc.health.v1`),
declared in `protos.POOL` as the TF Serving messages are: no Triton or KServe package is needed
to serve, and a test compares every field with the real descriptors. Only the methods this
server answers are declared.
"""

from __future__ import annotations

from .protos import add_map, add_message, add_service, declare, message_class, new_file

#: grpc.health.v1.HealthCheckResponse.ServingStatus
UNKNOWN, SERVING, NOT_SERVING, SERVICE_UNKNOWN = 0, 1, 2, 3


def _inference():
    f = new_file("inception_hub/grpc_predict_v2.proto", "inference")
    for name in ("ServerLiveRequest", "ServerReadyRequest", "ServerMetadataRequest"):
        add_message(f, name, [])
    add_message(f, "ServerLiveResponse", [("live", 1, "bool")])
    add_message(f, "ServerReadyResponse", [("ready", 1, "bool")])
    add_message(f, "ModelReadyRequest", [("name", 1, "string"), ("version", 2, "string")])
    add_message(f, "ModelReadyResponse", [("ready", 1, "bool")])
    add_message(f, "ServerMetadataResponse", [
        ("name", 1, "string"), ("version", 2, "string"), ("extensions", 3, "string", "repeated"),
    ])  # fmt: skip
    add_message(f, "ModelMetadataRequest", [("name", 1, "string"), ("version", 2, "string")])
    meta = add_message(f, "ModelMetadataResponse", [
        ("name", 1, "string"),
        ("versions", 2, "string", "repeated"),
        ("platform", 3, "string"),
        ("inputs", 4, ".inference.ModelMetadataResponse.TensorMetadata", "repeated"),
        ("outputs", 5, ".inference.ModelMetadataResponse.TensorMetadata", "repeated"),
    ])  # fmt: skip
    add_message(meta, "TensorMetadata", [
        ("name", 1, "string"), ("datatype", 2, "string"), ("shape", 3, "int64", "repeated"),
    ])  # fmt: skip
    add_message(f, "InferParameter", [
        ("bool_param", 1, "bool", "parameter_choice"),
        ("int64_param", 2, "int64", "parameter_choice"),
        ("string_param", 3, "string", "parameter_choice"),
        ("double_param", 4, "double", "parameter_choice"),
        ("uint64_param", 5, "uint64", "parameter_choice"),
    ], oneofs=("parameter_choice",))  # fmt: skip
    add_message(f, "InferTensorContents", [
        ("bool_contents", 1, "bool", "repeated"),
        ("int_contents", 2, "int32", "repeated"),
        ("int64_contents", 3, "int64", "repeated"),
        ("uint_contents", 4, "uint32", "repeated"),
        ("uint64_contents", 5, "uint64", "repeated"),
        ("fp32_contents", 6, "float", "repeated"),
        ("fp64_contents", 7, "double", "repeated"),
        ("bytes_contents", 8, "bytes", "repeated"),
    ])  # fmt: skip
    tensor = [("name", 1, "string"), ("datatype", 2, "string"), ("shape", 3, "int64", "repeated"),
              ("contents", 5, ".inference.InferTensorContents")]  # fmt: skip
    request = add_message(f, "ModelInferRequest", [
        ("model_name", 1, "string"),
        ("model_version", 2, "string"),
        ("id", 3, "string"),
        ("inputs", 5, ".inference.ModelInferRequest.InferInputTensor", "repeated"),
        ("outputs", 6, ".inference.ModelInferRequest.InferRequestedOutputTensor", "repeated"),
        ("raw_input_contents", 7, "bytes", "repeated"),
    ])  # fmt: skip
    add_map(request, "parameters", 4, ".inference.InferParameter")
    add_map(add_message(request, "InferInputTensor", tensor), "parameters", 4, ".inference.InferParameter")
    wanted = add_message(request, "InferRequestedOutputTensor", [("name", 1, "string")])
    add_map(wanted, "parameters", 2, ".inference.InferParameter")
    response = add_message(f, "ModelInferResponse", [
        ("model_name", 1, "string"),
        ("model_version", 2, "string"),
        ("id", 3, "string"),
        ("outputs", 5, ".inference.ModelInferResponse.InferOutputTensor", "repeated"),
        ("raw_output_contents", 6, "bytes", "repeated"),
    ])  # fmt: skip
    add_map(response, "parameters", 4, ".inference.InferParameter")
    add_map(add_message(response, "InferOutputTensor", tensor), "parameters", 4, ".inference.InferParameter")
    add_service(f, "GRPCInferenceService", {
        name: (f".inference.{name}Request", f".inference.{name}Response")
        for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
    })  # fmt: skip
    return f


def _health():
    f = new_file("inception_hub/health.proto", "grpc.health.v1")
    add_message(f, "HealthCheckRequest", [("service", 1, "string")])
    response = add_message(f, "HealthCheckResponse", [
        ("status", 1, "enum:.grpc.health.v1.HealthCheckResponse.ServingStatus"),
    ])  # fmt: skip
    status = response.enum_type.add(name="ServingStatus")
    for value_name, number in [("UNKNOWN", UNKNOWN), ("SERVING", SERVING), ("NOT_SERVING", NOT_SERVING),
                               ("SERVICE_UNKNOWN", SERVICE_UNKNOWN)]:  # fmt: skip
        status.value.add(name=value_name, number=number)
    add_message(f, "HealthListRequest", [])
    add_map(add_message(f, "HealthListResponse", []), "statuses", 1, ".grpc.health.v1.HealthCheckResponse")
    h = ".grpc.health.v1."
    add_service(f, "Health", {
        "Check": (h + "HealthCheckRequest", h + "HealthCheckResponse"),
        "List": (h + "HealthListRequest", h + "HealthListResponse"),
        "Watch": (h + "HealthCheckRequest", "stream " + h + "HealthCheckResponse"),
    })  # fmt: skip
    return f


declare(_inference())
declare(_health())

INFERENCE = "inference.GRPCInferenceService"
HEALTH = "grpc.health.v1.Health"

ModelInferRequest = message_class("inference.ModelInferRequest")
ModelInferResponse = message_class("inference.ModelInferResponse")
ModelMetadataResponse = message_class("inference.ModelMetadataResponse")
HealthCheckRequest = message_class("grpc.health.v1.HealthCheckRequest")
HealthCheckResponse = message_class("grpc.health.v1.HealthCheckResponse")
HealthListResponse = message_class("grpc.health.v1.HealthListResponse")

#: Service and method names on the wire, with their request and response classes.
SERVICES = {
    INFERENCE: {
        name: (message_class(f"inference.{name}Request"), message_class(f"inference.{name}Response"))
        for name in ("ServerLive", "ServerReady", "ModelReady", "ServerMetadata", "ModelMetadata", "ModelInfer")
    },
    HEALTH: {
        "Check": (HealthCheckRequest, HealthCheckResponse),
        "List": (message_class("grpc.health.v1.HealthListRequest"), HealthListResponse),
        "Watch": (HealthCheckRequest, HealthCheckResponse),
    },
}
