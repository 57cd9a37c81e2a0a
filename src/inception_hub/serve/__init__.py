"""A TensorFlow-Serving-compatible server: REST and gRPC in one process, one event loop.

inception-hub serve --models inception_v1,inception_resnet_v2 --port 8501 --grpc-port 8500
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Callable

from aiohttp import web

from ..catalog import resolve
from ..metadata import is_saved_model
from .core import Limits, ServingCore
from .grpc_service import make_grpc_server
from .models import ServedModel, build
from .rest import make_app

__all__ = ["Limits", "ServedModel", "ServingCore", "build", "run_server", "serve"]


async def run_server(
    core: ServingCore,
    host: str = "127.0.0.1",
    port: int = 8501,
    grpc_port: int | None = 8500,
    ready: Callable[[int, int | None], None] | None = None,
    stop: asyncio.Event | None = None,
    drain_timeout_s: float = 30.0,
) -> None:
    """Serve until `stop` is set (or SIGINT/SIGTERM), then shut down gracefully: stop accepting,
    answer what is queued and in flight, close."""
    await core.start()
    runner = web.AppRunner(make_app(core), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    rest_port = runner.addresses[0][1]
    grpc_server, bound = (None, None)
    if grpc_port is not None:
        grpc_server, bound = make_grpc_server(core, host, grpc_port)
        await grpc_server.start()
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(sig, stop.set)
    if ready:
        ready(rest_port, bound)
    await stop.wait()
    # Drain: new requests get 503 / UNAVAILABLE while queued and in-flight ones complete.
    await asyncio.wait_for(core.close(), drain_timeout_s)
    if grpc_server is not None:
        await grpc_server.stop(grace=drain_timeout_s)
    await runner.cleanup()


def serve(
    models: list[str],
    *,
    host: str = "127.0.0.1",
    port: int = 8501,
    grpc_port: int | None = 8500,
    max_batch: int = 32,
    batch_timeout_ms: float = 5.0,
    workers: int = 1,
    limits: Limits | None = None,
    checkpoints: dict[str, str] | None = None,
    backend: str | None = None,
) -> None:
    """Load the models and serve them until interrupted."""
    checkpoints = checkpoints or {}
    served = []
    for name in models:
        ckpt = None if is_saved_model(name) else checkpoints.get(resolve(name).arch)
        served.append(build(name, ckpt, backend))
    core = ServingCore(served, max_batch=max_batch, batch_timeout_ms=batch_timeout_ms, workers=workers, limits=limits)

    def ready(rest_port: int, bound: int | None) -> None:
        names = ", ".join(m.name for m in served)
        grpc_text = f", gRPC on {host}:{bound}" if bound else ""
        print(f"serving {names}: REST on http://{host}:{rest_port}{grpc_text}", flush=True)

    asyncio.run(run_server(core, host, port, grpc_port, ready))
    print("stopped", file=sys.stderr)
