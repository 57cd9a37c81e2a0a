"""TensorFlow Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and
ModelService (GetModelStatus), on the wire format of `protos`, so the tensorflow-serving-api
stubs work unchanged while the server itself needs no TensorFlow.

`images` is a DT_FLOAT tensor `[N, H, W, 3]` in [0, 1], or a DT_STRING tensor `[N]` of encoded
JPEG/PNG images.
"""

from __future__ import annotations

import time

import grpc
import numpy as np

from . import protos
from .core import InvalidArgument, ServingCore, ServingError
from .models import ServedModel

INPUT = "images"


def _abort_code(e: ServingError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, e.grpc_code)


def signature_def_map(model: ServedModel):
    """The `tensorflow.serving.SignatureDefMap` of a served model."""
    h, w = model.fixed_size or (-1, -1)
    sig_map = protos.SignatureDefMap()
    for name, sig in model.signatures.items():
        d = sig_map.signature_def[name]
        d.method_name = "tensorflow/serving/predict"
        i = d.inputs[INPUT]
        i.name, i.dtype = f"{INPUT}:0", protos.DT_FLOAT
        for size in (-1, h, w, 3):
            i.tensor_shape.dim.add(size=size)
        o = d.outputs[sig.output_key]
        o.name, o.dtype = f"{sig.output_key}:0", protos.DT_FLOAT
        for size in (-1, model.output_dim(sig.output)):
            o.tensor_shape.dim.add(size=size)
    return sig_map


class PredictionService:
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def Predict(self, request, context):  # noqa: N802
        core = self.core
        started = time.perf_counter()
        name = request.model_spec.name
        label = name if name in core.models else "unknown"
        code = "OK"
        try:
            version = request.model_spec.version.value if request.model_spec.HasField("version") else None
            model = core.model(name, version)
            sig = core.signature(model, request.model_spec.signature_name)
            if set(request.inputs) != {INPUT}:
                raise InvalidArgument(f"expected one input named {INPUT!r}, got {sorted(request.inputs)}")
            for alias in request.output_filter:
                if alias != sig.output_key:
                    raise InvalidArgument(f"output tensor alias not found in signature: {alias}")

            async def answer():
                return await core.predict(model, sig, await self._images(model, request.inputs[INPUT]))

            out = await core.admitted(model, request.ByteSize(), answer)
            response = protos.PredictResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = sig.name
            response.outputs[sig.output_key].CopyFrom(protos.from_ndarray(out))
            return response
        except ServingError as e:
            code = e.grpc_code
            await context.abort(_abort_code(e), e.message)
        finally:
            core.observe("grpc", label, code, started)

    async def _images(self, model: ServedModel, proto) -> np.ndarray:
        if proto.dtype == protos.DT_STRING:
            if len(proto.tensor_shape.dim) > 1:
                raise InvalidArgument("encoded images must be a 1-D DT_STRING tensor")
            return await self.core.decode(model, list(proto.string_val))
        itemsize = protos.float_dtype_itemsize(proto.dtype)
        if itemsize is None:
            raise InvalidArgument("images must be DT_FLOAT [N, H, W, 3] in [0, 1] or DT_STRING encoded images")
        dims = [d.size for d in proto.tensor_shape.dim]
        self.core.check_declared(model, dims)
        # The values must be exactly what the shape declares: TF would repeat a short list (one
        # value fills any shape), which turns a few bytes on the wire into gigabytes in memory.
        count = int(np.prod(dims))
        if proto.tensor_content:
            if len(proto.tensor_content) % itemsize:
                raise InvalidArgument(
                    f"tensor_content holds {len(proto.tensor_content)} bytes, not a whole number of values"
                )
            given = len(proto.tensor_content) // itemsize
        else:
            given = len(proto.float_val) + len(proto.double_val) + len(proto.half_val)
        if given != count:
            raise InvalidArgument(f"the tensor holds {given} values, but its shape {dims} declares {count}")
        return protos.to_ndarray(proto)

    async def GetModelMetadata(self, request, context):  # noqa: N802
        try:
            version = request.model_spec.version.value if request.model_spec.HasField("version") else None
            model = self.core.model(request.model_spec.name, version)
            if set(request.metadata_field) - {"signature_def"}:
                raise InvalidArgument("only metadata_field 'signature_def' is available")
        except ServingError as e:
            await context.abort(_abort_code(e), e.message)
        response = protos.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].Pack(signature_def_map(model))
        return response


class ModelService:
    def __init__(self, core: ServingCore) -> None:
        self.core = core

    async def GetModelStatus(self, request, context):  # noqa: N802
        try:
            version = request.model_spec.version.value if request.model_spec.HasField("version") else None
            model = self.core.model(request.model_spec.name, version)
        except ServingError as e:
            await context.abort(_abort_code(e), e.message)
        response = protos.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = model.version
        status.state = protos.STATE_UNLOADING if self.core.draining else protos.STATE_AVAILABLE
        return response


def _handler(service: str, servicer) -> grpc.GenericRpcHandler:
    methods = {
        name: grpc.unary_unary_rpc_method_handler(
            getattr(servicer, name),
            request_deserializer=request.FromString,
            response_serializer=response.SerializeToString,
        )
        for name, (request, response) in protos.SERVICES[service].items()
    }
    return grpc.method_handlers_generic_handler(service, methods)


def make_grpc_server(core: ServingCore, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    limit = core.limits.max_body_bytes
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", limit),
            ("grpc.max_send_message_length", limit),
            # No SO_REUSEPORT: two servers on one port would silently split the calls between them.
            ("grpc.so_reuseport", 0),
        ],
        # gRPC reads a message whole before the handler runs: bound how many are held at once.
        maximum_concurrent_rpcs=max(4, core.limits.max_inflight_bytes // limit),
    )
    servicers = {"tensorflow.serving.PredictionService": PredictionService(core),
                 "tensorflow.serving.ModelService": ModelService(core)}  # fmt: skip
    server.add_generic_rpc_handlers([_handler(name, servicers[name]) for name in protos.SERVICES])
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    return server, bound
