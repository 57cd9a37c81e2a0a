"""The gRPC plumbing every service of the port shares: admission of calls (`Calls`,
`admitted_call`, `read_first`), status codes, and the method handlers (`rpc_handlers`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc

from .core import DeadlineExceeded, InvalidArgument, ResourceExhausted, ServingCore, ServingError

T = TypeVar("T")


def abort_code(e: ServingError) -> grpc.StatusCode:
    return getattr(grpc.StatusCode, e.grpc_code)


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


async def admitted_call(
    core: ServingCore,
    calls: Calls,
    context,
    protocol: str,
    name_of: Callable[[Any], str],
    work: Callable[[Any], Awaitable[T]],
) -> T:
    """One call that runs a model, admitted as a REST POST is: counted in `calls` (refused past
    `max_queue`), its message read within the request timeout and held in the in-flight budget,
    then `work(message)`; every outcome counted under `protocol` and the model `name_of` names."""
    started = time.perf_counter()
    label, code, entered = "unknown", "OK", False
    try:
        calls.enter()
        entered = True

        async def answer() -> T:
            nonlocal label
            request = await context.read()
            if request is grpc.aio.EOF:
                raise InvalidArgument("the call carries no request message")
            core.hold(request.ByteSize())
            name = name_of(request)
            label = name if name in core.models else "unknown"
            return await work(request)

        return await core.admitted(None, answer)
    except ServingError as e:
        code = e.grpc_code
        await context.abort(abort_code(e), e.message)
    finally:
        if entered:
            calls.count -= 1
        core.observe(protocol, label, code, started)


def read_first(servicer, method: Callable[..., Awaitable]) -> Callable[..., Awaitable]:
    """A handler of one request message that admits its call (`Calls`) before reading it, within the timeout."""
    core, calls = servicer.core, servicer.calls

    async def handler(requests, context):
        try:
            calls.enter()
        except ServingError as e:
            core.observe("grpc", "unknown", e.grpc_code, time.perf_counter())
            await context.abort(abort_code(e), e.message)
        try:
            request = await asyncio.wait_for(context.read(), core.limits.timeout_s)
            if request is grpc.aio.EOF:
                raise InvalidArgument("the call carries no request message")
        except asyncio.TimeoutError:
            e = DeadlineExceeded(f"no request message within {core.limits.timeout_s:g}s")
            await context.abort(abort_code(e), e.message)
        except ServingError as e:
            await context.abort(abort_code(e), e.message)
        finally:
            calls.count -= 1
        return await method(request, context)

    return handler


def rpc_handlers(service: str, servicer, methods: dict[str, tuple[type, type]]) -> grpc.GenericRpcHandler:
    """The handlers of a service's methods: those in the servicer's ADMITS_ITSELF read their own
    message (see `admitted_call`); PROBES (health and liveness, never refused under load) and
    STREAMS (one message in, a stream out) are plain; the rest `read_first`."""
    admits, probes, streams = (getattr(servicer, k, frozenset()) for k in ("ADMITS_ITSELF", "PROBES", "STREAMS"))
    handlers = {}
    for name, (request, response) in methods.items():
        fn, codec = (
            getattr(servicer, name),
            {
                "request_deserializer": request.FromString,
                "response_serializer": response.SerializeToString,
            },
        )
        if name in streams:
            handlers[name] = grpc.unary_stream_rpc_method_handler(fn, **codec)
        elif name in probes:
            handlers[name] = grpc.unary_unary_rpc_method_handler(fn, **codec)
        else:
            handlers[name] = grpc.stream_unary_rpc_method_handler(
                fn if name in admits else read_first(servicer, fn), **codec
            )
    return grpc.method_handlers_generic_handler(service, handlers)
