"""The Open Inference Protocol's gRPC transport: `inference.GRPCInferenceService` (ServerLive,
ServerReady, ModelReady, ServerMetadata, ModelMetadata, ModelInfer), which tritonclient.grpc and
KServe's InferenceGRPCClient call, on the wire format of `v2_protos`.

ModelInfer is admitted as TF Serving's Predict is (`grpc_calls.admitted_call`); the tensors are
read from `raw_input_contents` (as those clients send them) or `contents`, and answered in
`raw_output_contents`. The liveness and readiness calls are never refused under load.
"""

from __future__ import annotations

import math

import numpy as np

from . import v2
from .core import InvalidArgument, ServingCore, ServingError
from .grpc_calls import Calls, abort_code, admitted_call
from .v2_protos import INFERENCE, SERVICES, ModelInferResponse, ModelMetadataResponse

_RESPONSES = {name: response for name, (_, response) in SERVICES[INFERENCE].items()}


class InferenceService:
    ADMITS_ITSELF = frozenset({"ModelInfer"})
    PROBES = frozenset({"ServerLive", "ServerReady", "ModelReady"})

    def __init__(self, core: ServingCore, calls: Calls) -> None:
        self.core = core
        self.calls = calls

    async def ServerLive(self, request, context):  # noqa: N802
        return _RESPONSES["ServerLive"](live=True)

    async def ServerReady(self, request, context):  # noqa: N802
        return _RESPONSES["ServerReady"](ready=self.core.busy() is None)

    async def ModelReady(self, request, context):  # noqa: N802
        try:
            v2.lookup(self.core, request.name, request.version)
        except ServingError:
            return _RESPONSES["ModelReady"](ready=False)
        return _RESPONSES["ModelReady"](ready=not self.core.draining)

    async def ServerMetadata(self, request, context):  # noqa: N802
        return _RESPONSES["ServerMetadata"](**v2.server_metadata())

    async def ModelMetadata(self, request, context):  # noqa: N802
        try:
            meta = v2.model_metadata(v2.lookup(self.core, request.name, request.version))
        except ServingError as e:
            await context.abort(abort_code(e), e.message)
        response = ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"])
        for kind in ("inputs", "outputs"):
            for tensor in meta[kind]:
                getattr(response, kind).add(**tensor)
        return response

    async def ModelInfer(self, requests, context):  # noqa: N802
        core = self.core

        async def work(request):
            model = v2.lookup(core, request.model_name, request.model_version)
            core.check_queue(model)
            tensors = await v2.infer(core, model, parse_grpc(request, core.limits.max_images))
            response = ModelInferResponse(model_name=model.name, model_version=str(model.version), id=request.id)
            for t in tensors:
                response.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
                response.raw_output_contents.append(t.raw())
            return response

        return await admitted_call(core, self.calls, context, "grpc_v2", lambda r: r.model_name, work)


def parse_grpc(request, max_images: int) -> v2.Infer:
    """A ModelInferRequest's one input (from its raw contents or its typed contents) and the
    outputs it asks for."""
    if len(request.inputs) != 1:
        raise InvalidArgument(f"expected one input, {v2.INPUT!r}, got {len(request.inputs)}")
    tensor = request.inputs[0]
    dims = v2.check_tensor(tensor.name, tensor.datatype, list(tensor.shape), max_images)
    raw = request.raw_input_contents
    if raw:
        if len(raw) != 1:
            raise InvalidArgument(f"raw_input_contents holds {len(raw)} entries for one input")
        images = v2.encoded(raw[0], dims[0]) if tensor.datatype == "BYTES" else v2.floats(raw[0], dims)
    elif tensor.datatype == "BYTES":
        images = list(tensor.contents.bytes_contents)
        if len(images) != dims[0]:
            raise InvalidArgument(f"bytes_contents holds {len(images)} elements, but the shape declares {dims[0]}")
    else:
        values, count = tensor.contents.fp32_contents, math.prod(dims)
        if len(values) != count:
            raise InvalidArgument(f"fp32_contents holds {len(values)} values, but the shape {dims} declares {count}")
        images = np.asarray(values, np.float32).reshape(dims)
    return v2.Infer(images, dims, [v2.wanted(o.name, _classes(o.parameters)) for o in request.outputs], request.id)


def _classes(parameters) -> int:
    if "classification" not in parameters:
        return 0
    p = parameters["classification"]
    kind = p.WhichOneof("parameter_choice")
    if kind not in ("int64_param", "uint64_param"):
        raise InvalidArgument("classification must be an integer parameter (the number of top classes)")
    return getattr(p, kind)
