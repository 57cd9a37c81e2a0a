"""Import TensorFlow without its C++ start-up chatter on stderr (for the command line)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: TensorFlow's native logs bypass Python's sys.stderr
    and, since TF 2.16, ignore TF_CPP_MIN_LOG_LEVEL for messages logged while it loads."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def import_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if sys.modules.get("tensorflow") is not None:
        return
    with silenced_stderr():
        import tensorflow as tf

        tf.constant(0.0) + 1.0  # the second batch of messages comes with the first op
