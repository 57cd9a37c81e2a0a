"""`inception-hub serve` and `serve-hub`: the TF-Serving-compatible server, and the modules
served the way tfhub.dev served them."""

from __future__ import annotations

import argparse
import re

from ..catalog import all_specs
from ..errors import InputError
from .common import arch_checkpoints


def cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import Limits, serve

    limits = Limits(
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_inflight_bytes=int(args.max_inflight_mb * (1 << 20)),
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        max_input_pixels=args.max_input_pixels,
        timeout_s=args.timeout,
        max_queue=args.max_queue,
    )
    serve(
        [m.strip() for m in args.models.split(",") if m.strip()],
        host=args.host,
        port=args.port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
        workers=args.workers,
        limits=limits,
        checkpoints=arch_checkpoints(args.checkpoint),
        backend=args.backend,
        index=args.index,
    )
    return 0


def cmd_serve_hub(args: argparse.Namespace) -> int:
    from ..tfhub.server import ModuleStore, make_server

    store = ModuleStore(arch_checkpoints(args.checkpoint), allow_download=args.allow_download)
    public_url = args.public_url.rstrip("/") if args.public_url else None
    if public_url and not re.match(r"^https?://[^/\s]+(/\S*)?$", public_url):
        raise InputError(f"--public-url {args.public_url!r} is not an http(s) address, e.g. https://hub.example.com")
    server = make_server(args.host, args.port, store, quiet=args.quiet, public_url=public_url)
    host, port = server.server_address[:2]
    base = public_url or f"http://{host}:{port}"
    print(f"serving modules on http://{host}:{port}/ (e.g. {base}/{all_specs()[0].handle})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0
