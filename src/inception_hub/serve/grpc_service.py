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

`make_grpc_server` puts these beside the Open Inference Protocol's service (`v2_grpc`), gRPC's
health service (`health`) and, where grpcio-reflection is installed, server reflection.
"""

from __future__ import annotations

import grpc
import numpy as np

from . import protos, v2_protos
from .core import InvalidArgument, ServingCore, ServingError
from .grpc_calls import Calls, abort_code, admitted_call, rpc_handlers
from .health import HealthService
from .models import ServedModel
from .v2_grpc import InferenceService

INPUT = "images"


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
    #: Methods that admit themselves (their model and size decide) and read their message then.
    ADMITS_ITSELF = frozenset({"Predict"})

    def __init__(self, core: ServingCore, calls: Calls) -> None:
        self.core = core
        self.calls = calls

    async def Predict(self, requests, context):  # noqa: N802
        core = self.core

        async def work(request):
            version = request.model_spec.version.value if request.model_spec.HasField("version") else None
            model = core.model(request.model_spec.name, version)
            core.check_queue(model)
            sig = core.signature(model, request.model_spec.signature_name)
            if set(request.inputs) != {INPUT}:
                raise InvalidArgument(f"expected one input named {INPUT!r}, got {sorted(request.inputs)}")
            for alias in request.output_filter:
                if alias != sig.output_key:
                    raise InvalidArgument(f"output tensor alias not found in signature: {alias}")
            out = await core.predict(model, sig, await self._images(model, request.inputs[INPUT]))
            response = protos.PredictResponse()
            response.model_spec.name = model.name
            response.model_spec.version.value = model.version
            response.model_spec.signature_name = sig.name
            response.outputs[sig.output_key].CopyFrom(protos.from_ndarray(out))
            return response

        return await admitted_call(core, self.calls, context, "grpc", lambda r: r.model_spec.name, work)

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
            await context.abort(abort_code(e), e.message)
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
            await context.abort(abort_code(e), e.message)
        response = protos.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = model.version
        status.state = protos.STATE_UNLOADING if self.core.draining else protos.STATE_AVAILABLE
        return response


def make_grpc_server(core: ServingCore, host: str, port: int) -> tuple[grpc.aio.Server, int]:
    """TF Serving's services, the Open Inference Protocol's, health checking and reflection, on one port."""
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
    servicers = {
        "tensorflow.serving.PredictionService": PredictionService(core, calls),
        "tensorflow.serving.ModelService": ModelService(core, calls),
        v2_protos.INFERENCE: InferenceService(core, calls),
    }
    tables = {**protos.SERVICES, **v2_protos.SERVICES}
    servicers[v2_protos.HEALTH] = HealthService(core, list(servicers))
    server.add_generic_rpc_handlers([rpc_handlers(name, servicers[name], tables[name]) for name in servicers])
    enable_reflection(server, list(servicers))
    try:
        bound = server.add_insecure_port(f"{host}:{port}")
    except RuntimeError:  # newer grpcio raises where older ones returned 0
        bound = 0
    return server, bound


def enable_reflection(server: grpc.aio.Server, services: list[str]) -> bool:
    """Server reflection (what `grpcurl list` asks) over this server's own declarations, where
    grpcio-reflection is installed; False where it is not."""
    try:
        from grpc_reflection.v1alpha import reflection, reflection_pb2
    except ImportError:
        return False
    # Its own service is described from a copy of its descriptor in the pool the others are in.
    protos.declare_copy(reflection_pb2.DESCRIPTOR)
    reflection.enable_server_reflection([*services, reflection.SERVICE_NAME], server, pool=protos.POOL)
    return True
