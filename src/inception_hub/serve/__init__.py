"""A TensorFlow-Serving-compatible server that also speaks the Open Inference Protocol (v2):
REST and gRPC in one process, one event loop, one core for both protocols.

inception-hub serve --models inception_v1,inception_resnet_v2 --port 8501 --grpc-port 8500
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from ..catalog import resolve
from ..errors import InceptionHubError
from ..metadata import is_export
from ..similar.index import Index
from .app import make_app
from .core import Limits, ServingCore
from .grpc_service import make_grpc_server
from .http import OneLineErrors
from .models import ServedModel, build
from .similar import matching_models

__all__ = ["Limits", "ModelSource", "ServedModel", "ServingCore", "build", "run_server", "serve"]


@dataclass(frozen=True)
class ModelSource:
    """A model to serve: a handle, short name or export folder, served as `name` (default: as
    `build` names it) and `version`."""

    path: str
    name: str | None = None
    version: int = 1


async def run_server(
    core: ServingCore,
    host: str = "127.0.0.1",
    port: int | None = 8501,
    grpc_port: int | None = 8500,
    ready: Callable[[int | None, int | None], None] | None = None,
    stop: asyncio.Event | None = None,
    drain_timeout_s: float | None = None,
    index: Index | None = None,
) -> None:
    """Serve REST on `port` and gRPC on `grpc_port` (either None: not at all) until `stop` is
    set (or SIGINT/SIGTERM), then shut down gracefully: stop accepting, answer what is queued and
    in flight, close. The drain takes at most `drain_timeout_s` (default: the request timeout,
    within which every admitted request is answered, plus a second)."""
    if index is not None:
        index.prepare()  # before listening: nothing heavy is built inside a request
    await core.start()
    runner, rest_port = None, None
    if port is not None:
        # The drain below waits for requests itself; the runner then only closes idle connections.
        # handler_cancellation: a client that disconnects cancels its request, so its images are
        # dropped from the queue instead of run for nobody.
        runner = web.AppRunner(
            make_app(core, index),
            access_log=None,
            shutdown_timeout=1.0,
            handler_cancellation=True,
            logger=OneLineErrors(),  # malformed requests as one line each, not tracebacks
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        rest_port = runner.addresses[0][1]
    grpc_server, bound = (None, None)
    if grpc_port is not None:
        grpc_server, bound = make_grpc_server(core, host, grpc_port)
        if not bound:
            if runner is not None:
                await runner.cleanup()
            raise InceptionHubError(f"cannot listen on {host}:{grpc_port} for gRPC; choose another --grpc-port")
        await grpc_server.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(rest_port, bound)
    await stop.wait()
    # Drain: new requests get 503 / UNAVAILABLE at once while admitted ones complete; then the
    # pools close (nothing can reach them any more) and the listeners, all within the timeout.
    if drain_timeout_s is None:
        drain_timeout_s = core.limits.timeout_s + 1.0
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(core.close(), drain_timeout_s)
    if grpc_server is not None:
        await grpc_server.stop(grace=1.0)
    if runner is not None:
        await runner.cleanup()


def check_port(host: str, port: int, flag: str) -> None:
    """Fail now, naming the port and the flag, if `port` cannot be listened on (0 means any).
    Bound as the listeners bind (SO_REUSEADDR), so connections of a previous run still in
    TIME-WAIT do not stop a restart, while a server listening there does."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError as e:
        raise InceptionHubError(
            f"cannot listen on {host}:{port}: {e.strerror or e} (another server?); choose another port with {flag}"
        ) from None


def serve(
    models: list[str | ModelSource],
    *,
    host: str = "127.0.0.1",
    port: int | None = 8501,
    grpc_port: int | None = 8500,
    max_batch: int = 32,
    batch_timeout_ms: float = 5.0,
    workers: int = 1,
    limits: Limits | None = None,
    checkpoints: dict[str, str] | None = None,
    backend: str | None = None,
    index: str | None = None,
) -> None:
    """Load the models and serve them until interrupted (REST on `port`, gRPC on `grpc_port`;
    None: not that one). The settings and the ports are checked first, so a mistake is reported
    before minutes of loading."""
    limits = limits or Limits()
    if limits.max_queue < limits.max_images:
        raise InceptionHubError(
            f"--max-queue ({limits.max_queue}) is smaller than --max-images ({limits.max_images}): a full request "
            "could never be queued; raise --max-queue or lower --max-images"
        )
    if port is not None:
        check_port(host, port, "--port")
    if grpc_port is not None:
        check_port(host, grpc_port, "--grpc-port")
    similar = Index.load(index) if index else None  # a wrong folder is reported before loading models
    checkpoints = checkpoints or {}
    served = []
    for item in models:
        source = item if isinstance(item, ModelSource) else ModelSource(item)
        ckpt = None if is_export(source.path) else checkpoints.get(resolve(source.path).arch)
        served.append(build(source.path, ckpt, backend, name=source.name, version=source.version))
    core = ServingCore(served, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms, workers=workers, limits=limits)
    if similar is not None and not matching_models(similar, core):
        raise InceptionHubError(
            f"{index} holds features of {similar.model.get('handle')}, which no served model computes: "
            "serve that model (with the same weights) too"
        )

    def ready(rest_port: int | None, bound: int | None) -> None:
        names = ", ".join(m.name if m.version == 1 else f"{m.name} (version {m.version})" for m in served)
        where = [f"REST on http://{host}:{rest_port}"] if rest_port else []
        where += [f"gRPC on {host}:{bound}"] if bound else []
        print(f"serving {names}: {', '.join(where)}", flush=True)
        if rest_port:
            print(f"try them in a browser: http://{host}:{rest_port}/", flush=True)

    asyncio.run(run_server(core, host, port, grpc_port, ready, index=similar))
    print("stopped", file=sys.stderr)
