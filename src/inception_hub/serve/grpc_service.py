"""TensorFlow Serving's gRPC API: PredictionService (Predict, GetModelMetadata) and
ModelService (GetModelStatus), on the wire format of `protos`, so the tensorflow-serving-api
stubs work unchanged while the server itself needs no TensorFlow.

`images` is a DT_FLOAT tensor `[N, H, W, 3]` in [0, 1], or a DT_STRING tensor `[N]` of encoded
JPEG/PNG images.

Predict is admitted as a REST :predict is, with the same limits: refused (RESOURCE_EXHAUSTED,
counted in /metrics) before its message is read while the request bodies held fill
`max_inflight_bytes`, then, once read, when its model's queue is full or its bytes would pass the
budget. Every handler reads its own message (the methods are registered as client-streaming,
which is the same on the wire), so admission comes first and the deadline covers the read; and
past `max_queue` calls in progress (a Predict holds queue room for at least one image, so more
could not all be admitted anyway) a new call is refused, counted too, before its message is read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import grpc
import numpy as np

from . import protos
from .core import DeadlineExceeded, InvalidArgument, ResourceExhausted, ServingCore, ServingError
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


class Calls:
    """The gRPC calls in progress, of every method, their message read or not."""

    def __init__(self, core: ServingCore) -> None:
        self.core = core
        self.count = 0

    def enter(self) -> None:
        """Count one more call; ResourceExhausted (and the call not counted) past `max_queue`."""
        if self.count >= self.core.limits.max_queue:
            raise ResourceExhausted(f"{self.count} gRPC calls in progress; retry later")
        self.count += 1


class PredictionService:
    def __init__(self, core: ServingCore, calls: Calls) -> None:
        self.core = core
        self.calls = calls

    async def Predict(self, requests, context):  # noqa: N802
        core = self.core
        started = time.perf_counter()
        label, code = "unknown", "OK"
        entered = False
        try:
            self.calls.enter()
            entered = True

            async def answer():
                nonlocal label
                request = await context.read()
                if request is grpc.aio.EOF:
                    raise InvalidArgument("the call carries no PredictRequest")
                core.hold(request.ByteSize())
                name = request.model_spec.name
                label = name if name in core.models else "unknown"
                version = request.model_spec.version.value if request.model_spec.HasField("version") else None
                model = core.model(name, version)
                core.check_queue(model)
                sig = core.signature(model, request.model_spec.signature_name)
                if set(request.inputs) != {INPUT}:
                    raise InvalidArgument(f"expected one input named {INPUT!r}, got {sorted(request.inputs)}")
                for alias in request.output_filter:
                    if alias != sig.output_key:
                        raise InvalidArgument(f"output tensor alias not found in signature: {alias}")
                return model, sig, await core.predict(model, sig, await self._images(model, request.inputs[INPUT]))

            model, sig, out = await core.admitted(None, answer)
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
            if entered:
                self.calls.count -= 1
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
    def __init__(self, core: ServingCore, calls: Calls) -> None:
        self.core = core
        self.calls = calls

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


def _read_first(servicer, method: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """A handler of one request message that admits its call (`Calls`) before reading it, within the timeout."""
    core, calls = servicer.core, servicer.calls

    async def handler(requests, context):
        try:
            calls.enter()
        except ServingError as e:
            core.observe("grpc", "unknown", e.grpc_code, time.perf_counter())
            await context.abort(_abort_code(e), e.message)
        try:
            request = await asyncio.wait_for(context.read(), core.limits.timeout_s)
            if request is grpc.aio.EOF:
                raise InvalidArgument("the call carries no request message")
        except asyncio.TimeoutError:
            e = DeadlineExceeded(f"no request message within {core.limits.timeout_s:g}s")
            await context.abort(_abort_code(e), e.message)
        except ServingError as e:
            await context.abort(_abort_code(e), e.message)
        finally:
            calls.count -= 1
        return await method(request, context)

    return handler


def _handler(service: str, servicer) -> grpc.GenericRpcHandler:
    methods = {
        name: grpc.stream_unary_rpc_method_handler(
            # Predict admits itself (its model and size decide) and reads its message then.
            getattr(servicer, name) if name == "Predict" else _read_first(servicer, getattr(servicer, name)),
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
            # (SO_REUSEADDR, which lets a restarted server bind past TIME-WAIT, gRPC sets itself.)
            ("grpc.so_reuseport", 0),
        ],
    )
    calls = Calls(core)
    servicers = {"tensorflow.serving.PredictionService": PredictionService(core, calls),
                 "tensorflow.serving.ModelService": ModelService(core, calls)}  # fmt: skip
    server.add_generic_rpc_handlers([_handler(name, servicers[name]) for name in protos.SERVICES])
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    return server, bound
