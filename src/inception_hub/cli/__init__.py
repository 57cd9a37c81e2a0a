"""`inception-hub`: classify and embed images, list models, fetch weights, export, evaluate,
fine-tune and serve.

Exit status: 0 on success, 1 when some images could not be read (the others are still
processed and written), 2 for a usage, model or weights error, 3 when a file or folder could
not be written or read (full disk, read-only or missing folder), 141 when the reader of the
output went away.
"""

from __future__ import annotations

import os
import sys
import warnings

from ..errors import InceptionHubError
from .common import PROG
from .parser import build_parser

#: The pip extra that provides each optional top-level package.
EXTRAS = {
    "tensorflow": "tf",
    "aiohttp": "serve",
    "grpc": "serve",
    "google": "serve",  # protobuf
    "prometheus_client": "serve",
    "openvino": "engine",
    "ray": "distributed",
    "usearch": "search",
    "tensorflow_hub": "hub",
    "tf_keras": "hub",
    "keras": "keras",
    "jax": "jax",
    "torch": "torch",
    "ai_edge_litert": "tflite",
}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    # Warnings (bf16 without hardware support, an unwritable cache, ...) read as the CLI's own.
    warnings.formatwarning = lambda message, *_, **__: f"{PROG}: warning: {message}\n"
    try:
        # A command that needs TensorFlow says so where it is registered (parser.py); it is
        # imported up front, with its start-up banners silenced. classify and embed import it
        # only for the tf backend (common.model_results).
        needs_tf = getattr(args, "needs_tf", False)
        if needs_tf(args) if callable(needs_tf) else needs_tf:
            from ..quiet import import_tensorflow

            import_tensorflow()
        return args.func(args)
    except InceptionHubError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        extra = EXTRAS.get((e.name or "").split(".")[0])
        if extra is None:
            raise
        print(
            f"{PROG}: error: this needs {e.name}, which is not installed: pip install 'inception-hub[{extra}]'",
            file=sys.stderr,
        )
        return 2
    except BrokenPipeError:
        # The reader went away (`... | head`): stop quietly, as command-line tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except OSError as e:  # a full disk, a read-only or missing folder: not the images' fault
        where = f"{e.filename}: " if e.filename else ""
        print(f"{PROG}: error: cannot write or read {where}{e.strerror or e}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


__all__ = ["PROG", "build_parser", "main"]
