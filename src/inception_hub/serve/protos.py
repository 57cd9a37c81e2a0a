"""TensorFlow Serving's wire format, declared here so that serving needs no TensorFlow.

The messages keep the full names and field numbers of `tensorflow/core/framework/*.proto`,
`tensorflow/core/protobuf/meta_graph.proto` and `tensorflow_serving/apis/*.proto`, so the
tensorflow-serving-api stubs and TF Serving's example clients talk to this server unchanged (a
test compares every field declared here with the real descriptors). Only the fields this server
reads or writes are declared; protobuf keeps any other field a client sends as an unknown one.
The classes live in a pool of their own (`POOL`, which the Open Inference Protocol's and the
health service's declarations join), so they coexist with TensorFlow's in one process; the
services are declared too, so server reflection can describe them.
"""

from __future__ import annotations

import numpy as np
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

_F = descriptor_pb2.FieldDescriptorProto
_KINDS = {
    "int32": _F.TYPE_INT32,
    "int64": _F.TYPE_INT64,
    "uint32": _F.TYPE_UINT32,
    "uint64": _F.TYPE_UINT64,
    "bool": _F.TYPE_BOOL,
    "string": _F.TYPE_STRING,
    "bytes": _F.TYPE_BYTES,
    "float": _F.TYPE_FLOAT,
    "double": _F.TYPE_DOUBLE,
}

#: tensorflow.DataType values this server meets (tensorflow/core/framework/types.proto).
DT_INVALID, DT_FLOAT, DT_DOUBLE, DT_INT32, DT_UINT8, DT_STRING, DT_INT64, DT_BOOL, DT_HALF = 0, 1, 2, 3, 4, 7, 9, 10, 19
_DTYPES = {DT_FLOAT: "<f4", DT_DOUBLE: "<f8", DT_HALF: "<f2"}

#: tensorflow.serving.ModelVersionStatus.State
STATE_UNKNOWN, STATE_AVAILABLE, STATE_UNLOADING = 0, 30, 40


def add_message(parent, name: str, fields: list[tuple], oneofs: tuple[str, ...] = ()) -> descriptor_pb2.DescriptorProto:
    """Add a message to a file or a message. Each field: (name, number, kind, repeated), where
    kind is a scalar name, or ".full.Name" of a message (or "enum:.full.Name")."""
    msg = (parent.message_type if isinstance(parent, descriptor_pb2.FileDescriptorProto) else parent.nested_type).add()
    msg.name = name
    for oneof in oneofs:
        msg.oneof_decl.add(name=oneof)
    for field_name, number, kind, *rest in fields:
        f = msg.field.add(name=field_name, number=number)
        f.label = _F.LABEL_REPEATED if "repeated" in rest else _F.LABEL_OPTIONAL
        if kind.startswith("enum:"):
            f.type, f.type_name = _F.TYPE_ENUM, kind[5:]
        elif kind.startswith("."):
            f.type, f.type_name = _F.TYPE_MESSAGE, kind
        else:
            f.type = _KINDS[kind]
        if rest and rest[-1] in oneofs:
            f.oneof_index = oneofs.index(rest[-1])
    return msg


def add_map(msg: descriptor_pb2.DescriptorProto, field_name: str, number: int, value: str) -> None:
    """A `map<string, value>` field: a repeated nested entry message, as protoc writes it."""
    entry_name = "".join(part.capitalize() for part in field_name.split("_")) + "Entry"
    entry = add_message(msg, entry_name, [("key", 1, "string"), ("value", 2, value)])
    entry.options.map_entry = True
    f = msg.field.add(name=field_name, number=number, label=_F.LABEL_REPEATED, type=_F.TYPE_MESSAGE)
    f.type_name = entry_name  # resolved relative to the message


def new_file(name: str, package: str, *deps: str) -> descriptor_pb2.FileDescriptorProto:
    return descriptor_pb2.FileDescriptorProto(name=name, package=package, syntax="proto3", dependency=list(deps))


def add_service(file: descriptor_pb2.FileDescriptorProto, name: str, methods: dict[str, tuple[str, str]]) -> None:
    """Declare a service: {method: (".full.Request", ".full.Response")}; a method whose
    response type is written with a leading "stream " streams its answers."""
    service = file.service.add(name=name)
    for method, (request, response) in methods.items():
        streams = response.startswith("stream ")
        service.method.add(
            name=method, input_type=request, output_type=response.removeprefix("stream "), server_streaming=streams
        )


def _files() -> list[descriptor_pb2.FileDescriptorProto]:
    framework = new_file("inception_hub/tensorflow_framework.proto", "tensorflow")
    dtype = framework.enum_type.add(name="DataType")
    for value_name, number in [
        ("DT_INVALID", DT_INVALID), ("DT_FLOAT", DT_FLOAT), ("DT_DOUBLE", DT_DOUBLE), ("DT_INT32", DT_INT32),
        ("DT_UINT8", DT_UINT8), ("DT_STRING", DT_STRING), ("DT_INT64", DT_INT64), ("DT_BOOL", DT_BOOL),
        ("DT_HALF", DT_HALF),
    ]:  # fmt: skip
        dtype.value.add(name=value_name, number=number)
    shape = add_message(framework, "TensorShapeProto", [
        ("dim", 2, ".tensorflow.TensorShapeProto.Dim", "repeated"),
        ("unknown_rank", 3, "bool"),
    ])  # fmt: skip
    add_message(shape, "Dim", [("size", 1, "int64"), ("name", 2, "string")])
    add_message(framework, "TensorProto", [
        ("dtype", 1, "enum:.tensorflow.DataType"),
        ("tensor_shape", 2, ".tensorflow.TensorShapeProto"),
        ("version_number", 3, "int32"),
        ("tensor_content", 4, "bytes"),
        ("float_val", 5, "float", "repeated"),
        ("double_val", 6, "double", "repeated"),
        ("int_val", 7, "int32", "repeated"),
        ("string_val", 8, "bytes", "repeated"),
        ("int64_val", 10, "int64", "repeated"),
        ("bool_val", 11, "bool", "repeated"),
        ("half_val", 13, "int32", "repeated"),
    ])  # fmt: skip
    add_message(framework, "TensorInfo", [
        ("name", 1, "string", "encoding"),
        ("dtype", 2, "enum:.tensorflow.DataType"),
        ("tensor_shape", 3, ".tensorflow.TensorShapeProto"),
    ], oneofs=("encoding",))  # fmt: skip
    signature = add_message(framework, "SignatureDef", [("method_name", 3, "string")])
    add_map(signature, "inputs", 1, ".tensorflow.TensorInfo")
    add_map(signature, "outputs", 2, ".tensorflow.TensorInfo")
    add_map(signature, "defaults", 4, ".tensorflow.TensorProto")  # values of inputs a caller may omit

    apis = new_file(
        "inception_hub/tensorflow_serving_apis.proto",
        "tensorflow.serving",
        framework.name,
        "google/protobuf/any.proto",
        "google/protobuf/wrappers.proto",
    )
    add_message(apis, "ModelSpec", [
        ("name", 1, "string"),
        ("version", 2, ".google.protobuf.Int64Value", "version_choice"),
        ("signature_name", 3, "string"),
        ("version_label", 4, "string", "version_choice"),
    ], oneofs=("version_choice",))  # fmt: skip
    request = add_message(apis, "PredictRequest", [
        ("model_spec", 1, ".tensorflow.serving.ModelSpec"),
        ("output_filter", 3, "string", "repeated"),
    ])  # fmt: skip
    add_map(request, "inputs", 2, ".tensorflow.TensorProto")
    response = add_message(apis, "PredictResponse", [("model_spec", 2, ".tensorflow.serving.ModelSpec")])
    add_map(response, "outputs", 1, ".tensorflow.TensorProto")
    sig_map = add_message(apis, "SignatureDefMap", [])
    add_map(sig_map, "signature_def", 1, ".tensorflow.SignatureDef")
    add_message(apis, "GetModelMetadataRequest", [
        ("model_spec", 1, ".tensorflow.serving.ModelSpec"),
        ("metadata_field", 2, "string", "repeated"),
    ])  # fmt: skip
    metadata = add_message(apis, "GetModelMetadataResponse", [("model_spec", 1, ".tensorflow.serving.ModelSpec")])
    add_map(metadata, "metadata", 2, ".google.protobuf.Any")
    add_message(apis, "GetModelStatusRequest", [("model_spec", 1, ".tensorflow.serving.ModelSpec")])
    status = add_message(apis, "ModelVersionStatus", [
        ("version", 1, "int64"),
        ("state", 2, "enum:.tensorflow.serving.ModelVersionStatus.State"),
    ])  # fmt: skip
    state = status.enum_type.add(name="State")
    for value_name, number in [("UNKNOWN", 0), ("START", 10), ("LOADING", 20), ("AVAILABLE", 30),
                               ("UNLOADING", 40), ("END", 50)]:  # fmt: skip
        state.value.add(name=value_name, number=number)
    add_message(apis, "GetModelStatusResponse", [
        ("model_version_status", 1, ".tensorflow.serving.ModelVersionStatus", "repeated"),
    ])  # fmt: skip
    ts = ".tensorflow.serving."
    add_service(apis, "PredictionService", {
        "Predict": (ts + "PredictRequest", ts + "PredictResponse"),
        "GetModelMetadata": (ts + "GetModelMetadataRequest", ts + "GetModelMetadataResponse"),
    })  # fmt: skip
    add_service(apis, "ModelService", {"GetModelStatus": (ts + "GetModelStatusRequest", ts + "GetModelStatusResponse")})
    return [framework, apis]


def _pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()
    for wkt in (any_pb2, wrappers_pb2):
        proto = descriptor_pb2.FileDescriptorProto()
        wkt.DESCRIPTOR.CopyToProto(proto)
        pool.Add(proto)
    for proto in _files():
        pool.Add(proto)
    return pool


#: The pool of every message and service this server declares (see `declare`).
POOL = _pool()


def declare(file: descriptor_pb2.FileDescriptorProto) -> None:
    """Add a file of messages and services to `POOL`."""
    POOL.Add(file)


def declare_copy(descriptor) -> None:
    """Add a copy of a generated file's descriptor to `POOL` (once)."""
    try:
        POOL.FindFileByName(descriptor.name)
    except KeyError:
        proto = descriptor_pb2.FileDescriptorProto()
        descriptor.CopyToProto(proto)
        POOL.Add(proto)


def message_class(full_name: str) -> type:
    """The class of a message declared in `POOL`."""
    return message_factory.GetMessageClass(POOL.FindMessageTypeByName(full_name))


TensorProto = message_class("tensorflow.TensorProto")
PredictRequest = message_class("tensorflow.serving.PredictRequest")
PredictResponse = message_class("tensorflow.serving.PredictResponse")
SignatureDefMap = message_class("tensorflow.serving.SignatureDefMap")
GetModelMetadataRequest = message_class("tensorflow.serving.GetModelMetadataRequest")
GetModelMetadataResponse = message_class("tensorflow.serving.GetModelMetadataResponse")
GetModelStatusRequest = message_class("tensorflow.serving.GetModelStatusRequest")
GetModelStatusResponse = message_class("tensorflow.serving.GetModelStatusResponse")

#: Service and method names on the wire, with their request and response classes.
SERVICES = {
    "tensorflow.serving.PredictionService": {
        "Predict": (PredictRequest, PredictResponse),
        "GetModelMetadata": (GetModelMetadataRequest, GetModelMetadataResponse),
    },
    "tensorflow.serving.ModelService": {"GetModelStatus": (GetModelStatusRequest, GetModelStatusResponse)},
}


def float_dtype_itemsize(dtype: int) -> int | None:
    """Bytes per value of a floating-point DataType, or None for any other type."""
    return np.dtype(_DTYPES[dtype]).itemsize if dtype in _DTYPES else None


def to_ndarray(proto) -> np.ndarray:
    """A floating-point TensorProto whose values fill its shape exactly, as float32. (TF would
    repeat a short value list to fill any shape; the server refuses those before calling this.)"""
    dims = [d.size for d in proto.tensor_shape.dim]
    if proto.tensor_content:
        values = np.frombuffer(proto.tensor_content, dtype=_DTYPES[proto.dtype])
    elif proto.dtype == DT_HALF:
        values = np.asarray(proto.half_val, dtype=np.uint16).view(np.float16)
    elif proto.dtype == DT_DOUBLE:
        values = np.asarray(proto.double_val, dtype=np.float64)
    else:
        values = np.asarray(proto.float_val, dtype=np.float32)
    return values.astype(np.float32, copy=False).reshape(dims)


def from_ndarray(array: np.ndarray):
    """A DT_FLOAT TensorProto holding `array` in `float_val`, as TF Serving fills response tensors
    by default (its clients, TF Serving's own examples among them, read `float_val`)."""
    array = np.asarray(array, dtype=np.float32)
    proto = TensorProto(dtype=DT_FLOAT)
    proto.float_val.extend(array.ravel().tolist())
    for size in array.shape:
        proto.tensor_shape.dim.add(size=size)
    return proto
