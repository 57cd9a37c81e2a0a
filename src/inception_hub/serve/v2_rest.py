"""The Open Inference Protocol's HTTP/REST transport (KServe's v2, which Triton, tritonclient and
KServe's InferenceRESTClient speak), beside TF Serving's API on the same port and core.

- `GET /v2`: the server's name, version and extensions.
- `GET /v2/health/live`, `GET /v2/health/ready`: 200, or 503 while draining (ready also while
  the server would refuse any request, as /healthz).
- `GET /v2/models/{name}[/versions/{v}]`: the model's inputs and outputs; `.../ready`.
- `POST /v2/models/{name}[/versions/{v}]/infer`: JSON tensors, or with the binary tensor data
  extension (an `Inference-Header-Content-Length` header, the inputs' `binary_data_size`, the
  outputs' `binary_data` or the request's `binary_data_output`), and `classification`.
Errors are `{"error": "..."}` with a 4xx status (see `v2` for the tensors).
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from . import v2
from .core import InvalidArgument, ServingCore
from .http import CORE, dumps, expect_continue, handle, parsed_body
from .models import ServedModel

NAME = r"{name:[^/:]+}"
VERSION = r"{version:[^/:]+}"
HEADER_LENGTH = "Inference-Header-Content-Length"


def add_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2", server_metadata)
    r.add_get("/v2/health/live", live)
    r.add_get("/v2/health/ready", ready)
    for prefix in (f"/v2/models/{NAME}", f"/v2/models/{NAME}/versions/{VERSION}"):
        r.add_get(prefix, model_metadata)
        r.add_get(prefix + "/ready", model_ready)
        r.add_post(prefix + "/infer", infer, expect_handler=expect)


async def expect(request: web.Request) -> web.StreamResponse | None:
    return await expect_continue(request, model_of)


def model_of(request: web.Request) -> ServedModel:
    return v2.lookup(request.app[CORE], request.match_info["name"], request.match_info.get("version"))


async def server_metadata(request: web.Request) -> web.Response:
    return web.json_response(v2.server_metadata())


async def live(request: web.Request) -> web.Response:
    return web.json_response({"live": True})


async def ready(request: web.Request) -> web.Response:
    reason = request.app[CORE].busy()
    if reason is not None:
        return web.json_response({"ready": False, "reason": reason}, status=503)
    return web.json_response({"ready": True})


async def model_metadata(request: web.Request) -> web.Response:
    return web.json_response(v2.model_metadata(model_of(request)))


async def model_ready(request: web.Request) -> web.Response:
    model = model_of(request)
    if request.app[CORE].draining:
        return web.json_response({"name": model.name, "ready": False}, status=503)
    return web.json_response({"name": model.name, "ready": True})


async def infer(request: web.Request) -> web.StreamResponse:
    return await handle(request, _infer, protocol="rest_v2", lookup=model_of)


async def _infer(request: web.Request, core: ServingCore, model: ServedModel) -> web.Response:
    """Read, parse (off the event loop) and run one infer request; answer JSON, followed by the
    binary outputs' data when there are any."""
    length = request.headers.get(HEADER_LENGTH)
    try:
        header_length = None if length is None else int(length)
    except ValueError:
        raise InvalidArgument(f"{HEADER_LENGTH} must be a number of bytes, got {length[:40]!r}") from None
    parse = partial(v2.parse_rest, header_length=header_length, max_images=core.limits.max_images)
    parsed = await parsed_body(request, core, parse)
    answer, blobs = v2.response(model, parsed.id, await v2.infer(core, model, parsed))
    if not blobs:
        return web.json_response(answer, dumps=dumps)
    header = dumps(answer).encode()
    return web.Response(
        body=b"".join([header, *blobs]),
        headers={HEADER_LENGTH: str(len(header))},
        content_type="application/octet-stream",
    )
