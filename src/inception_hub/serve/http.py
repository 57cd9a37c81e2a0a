"""What every REST route shares: the app's state keys, errors as JSON, admission and metrics for
POSTs that run a model, and bounded reads of JSON bodies (parsed off the event loop).

The route modules (`rest`, `explain`, `similar`, `page`) build on this one and `app` puts them
together, so imports run one way: app -> routes -> http -> core.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from aiohttp import HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.log import server_logger

from ..similar.index import Index
from .core import (
    BODY_GRACE_S,
    InvalidArgument,
    RequestTimeout,
    ServingCore,
    ServingError,
    TooLarge,
    UnsupportedMediaType,
)
from .models import ServedModel

T = TypeVar("T")

CORE = web.AppKey("core", ServingCore)
#: The photo index of `serve --index`, and the names of the served models that compute its features.
INDEX = web.AppKey("index", Index)
MATCHING = web.AppKey("matching", frozenset)

#: The work of one admitted POST: its answer, as JSON (or a response of its own).
Answer = Callable[[web.Request, ServingCore, ServedModel], Awaitable[dict | web.StreamResponse]]
#: The model a request's path names (NotFound otherwise).
Lookup = Callable[[web.Request], ServedModel]


@web.middleware
async def errors_as_json(request: web.Request, handler) -> web.StreamResponse:
    """Refusals as `{"error": "..."}` with the status of their `ServingError` (or aiohttp's)."""
    try:
        return await handler(request)
    except ServingError as e:
        response = web.json_response({"error": e.message}, status=e.http_status)
        if e.http_status == 408:  # the rest of a body that slow is not waited for
            response.force_close()
        return response
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CORE].limits.max_body_bytes
        return web.json_response({"error": f"request body larger than {limit} bytes"}, status=413)
    except web.HTTPException as e:
        if e.status >= 400:
            kept = {k: v for k, v in e.headers.items() if k in ("Allow",)}  # a 405 says what is allowed
            return web.json_response({"error": e.reason}, status=e.status, headers=kept)
        raise


class OneLineErrors(logging.LoggerAdapter):
    """aiohttp's server log, where a malformed request (a bad header, URL or chunk: the client's
    mistake, answered 400) is one line, not a traceback; server errors keep theirs."""

    def __init__(self, logger: logging.Logger = server_logger) -> None:
        super().__init__(logger, {})

    def exception(self, msg, *args, exc_info=True, **kwargs) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError) and 400 <= (exc.code or 500) < 500:
            text = " ".join(str(exc).split())
            self.warning(msg + ": %s", *args, text[:200] + ("..." if len(text) > 200 else ""), **kwargs)
        else:
            super().exception(msg, *args, exc_info=exc_info, **kwargs)


def requested_model(request: web.Request) -> ServedModel:
    """The model (and version) the request's path names; NotFound otherwise."""
    core: ServingCore = request.app[CORE]
    return core.model(request.match_info["name"], request.match_info.get("version"))


async def expect_continue(request: web.Request, lookup: Lookup = requested_model) -> web.StreamResponse | None:
    """`Expect: 100-continue` (curl sends it for large bodies): a request the server would refuse
    is refused before its client sends the body."""
    core: ServingCore = request.app[CORE]
    try:
        model = lookup(request)
        core.check_admission(model, request.content_length or 0)
    except ServingError as e:
        return web.json_response({"error": e.message}, status=e.http_status)
    if request.version == HttpVersion11 and request.headers.get("Expect", "").lower() == "100-continue":
        await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        request.writer.output_size = 0
        return None
    raise web.HTTPExpectationFailed(text=f"unknown Expect: {request.headers.get('Expect')}")


async def handle(
    request: web.Request, answer: Answer, protocol: str = "rest", lookup: Lookup = requested_model
) -> web.StreamResponse:
    """Admit, answer and count one POST: the checks that need only the headers come first.
    `answer` gives JSON, or a response of its own; `protocol` labels it in the metrics."""
    core: ServingCore = request.app[CORE]
    started = time.perf_counter()
    name = request.match_info["name"]
    label = name if name in core.models else "unknown"
    code = "OK"
    try:
        model = lookup(request)
        encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not accepted; send the body uncompressed")
        # Admission needs only the headers: a refused request's body is never read, and an admitted
        # one holds only the bytes of its body that have arrived (see read_body).
        body = await core.admitted(model, lambda: answer(request, core, model), declared=request.content_length or 0)
        return body if isinstance(body, web.StreamResponse) else web.json_response(body, dumps=dumps)
    except ServingError as e:
        code = e.grpc_code
        raise
    finally:
        core.observe(protocol, label, code, started)


async def read_body(request: web.Request, core: ServingCore) -> bytearray:
    """The whole body, each part counted in the in-flight budget as it arrives (`core.hold`):
    TooLarge past `max_body_bytes`, RequestTimeout when it falls behind `min_body_rate`."""
    limit, rate = core.limits.max_body_bytes, core.limits.min_body_rate
    loop = asyncio.get_running_loop()
    start = loop.time()
    body = bytearray()
    while True:
        # When the bytes so far stop covering the minimum rate (after the grace), the body is late.
        behind = start + BODY_GRACE_S + len(body) / rate - loop.time() if rate else math.inf
        try:
            if behind <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(request.content.readany(), None if math.isinf(behind) else behind)
        except asyncio.TimeoutError:
            raise RequestTimeout(
                f"the request body arrived slower than {rate >> 10} KiB/s ({len(body)} bytes in "
                f"{loop.time() - start:.1f}s); send it at once"
            ) from None
        if not chunk:
            return body
        if len(body) + len(chunk) > limit:
            raise TooLarge(f"request body larger than {limit} bytes")
        core.hold(len(chunk))
        body += chunk


async def parsed_body(request: web.Request, core: ServingCore, parse: Callable[[bytes], T]) -> T:
    """`parse` of the body read by `read_body`, off the event loop (a large body in the parsing
    process: see `parsing`). `parse` must be a module-level function (or a partial of one)."""
    return await core.parse(parse, await read_body(request, core))


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


def dumps(obj: Any) -> str:
    """Strict JSON: a value that is not finite (NaN from a model or an index) is written as null,
    never as the NaN or Infinity that JSON parsers (browsers' among them) refuse."""
    try:
        return json.dumps(obj, separators=(",", ":"), allow_nan=False)
    except ValueError:
        return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
