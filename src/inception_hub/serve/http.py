"""What every REST route shares: the app's state keys, errors as JSON, admission and metrics for
POSTs that run a model, and bounded reads of JSON bodies.

The route modules (`rest`, `explain`, `similar`, `page`) build on this one and `app` puts them
together, so imports run one way: app -> routes -> http -> core.
"""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import HttpVersion11, web

from ..similar.index import Index
from .core import InvalidArgument, ServingCore, ServingError, TooLarge, UnsupportedMediaType
from .models import ServedModel

CORE = web.AppKey("core", ServingCore)
#: The photo index of `serve --index`, and the names of the served models that compute its features.
INDEX = web.AppKey("index", Index)
MATCHING = web.AppKey("matching", frozenset)

#: The work of one admitted POST: its answer, as JSON.
Answer = Callable[[web.Request, ServingCore, ServedModel], Awaitable[dict]]


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Refusals as `{"error": "..."}` with the status of their `ServingError` (or aiohttp's)."""
    try:
        return await handler(request)
    except ServingError as e:
        return web.json_response({"error": e.message}, status=e.http_status)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CORE].limits.max_body_bytes
        return web.json_response({"error": f"request body larger than {limit} bytes"}, status=413)
    except web.HTTPException as e:
        if e.status >= 400:
            kept = {k: v for k, v in e.headers.items() if k in ("Allow",)}  # a 405 says what is allowed
            return web.json_response({"error": e.reason}, status=e.status, headers=kept)
        raise


def requested_model(request: web.Request) -> ServedModel:
    """The model (and version) the request's path names; NotFound otherwise."""
    core: ServingCore = request.app[CORE]
    return core.model(request.match_info["name"], request.match_info.get("version"))


async def expect_continue(request: web.Request) -> web.StreamResponse | None:
    """`Expect: 100-continue` (curl sends it for large bodies): a request the server would refuse
    is refused before its client sends the body."""
    core: ServingCore = request.app[CORE]
    try:
        model = requested_model(request)
        core.check_admission(model, request.content_length or core.limits.max_body_bytes)
    except ServingError as e:
        return web.json_response({"error": e.message}, status=e.http_status)
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None
    raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers.get('Expect')}")


async def handle(request: web.Request, answer: Answer) -> web.Response:
    """Admit, answer and count one POST: the checks that need only the headers come first."""
    core: ServingCore = request.app[CORE]
    started = time.perf_counter()
    name = request.match_info["name"]
    label = name if name in core.models else "unknown"
    code = "OK"
    try:
        model = requested_model(request)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed")
        # Admission needs only the headers: a refused request's body is never read.
        size = request.content_length if request.content_length is not None else core.limits.max_body_bytes
        body = await core.admitted(model, size, lambda: answer(request, core, model))
        return web.json_response(body, dumps=_dumps)
    except ServingError as e:
        code = e.grpc_code
        raise
    finally:
        core.observe("rest", label, code, started)


async def read_body(request: web.Request, core: ServingCore) -> bytes:
    """The whole body, within `max_body_bytes` (TooLarge past it)."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise TooLarge(f"request body larger than {core.limits.max_body_bytes} bytes") from None


def json_object(raw: bytes, expected: str) -> dict:
    """The body as a JSON object (`expected` names what it should hold, for the message), with
    `signature_name`, where given, a string."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as e:  # ValueError: also over-long integers
        raise InvalidArgument(f"the body is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument(f"the body must be a JSON object with {expected}")
    sig_name = body.get("signature_name")
    if sig_name is not None and not isinstance(sig_name, str):
        raise InvalidArgument("signature_name must be a string")
    return body


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))
