"""The batch core: one source (a path or encoded bytes) to a model input or the reason it
cannot be read, and a batch of those through a module. The CLI's pipeline, the Ray actors, the
server and fine-tuning all decode and preprocess through here, so they give the same numbers."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from .catalog import CENTRAL_FRACTION
from .errors import ImageDecodeError
from .images import DEFAULT_MAX_PIXELS, load_image
from .module import Module

Decoded = np.ndarray | str  # the module input, or why the image could not be read


def decode(
    source: str | os.PathLike | bytes,
    size: tuple[int, int],
    *,
    central_fraction: float | None = CENTRAL_FRACTION,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> Decoded:
    """TF-Slim's evaluation input for one image: float32 `[H, W, 3]` in [0, 1], or a reason."""
    try:
        return load_image(source, size, central_fraction=central_fraction, max_pixels=max_pixels)
    except ImageDecodeError as e:
        return e.reason
    except Exception as e:  # one odd file never ends a run
        return f"{type(e).__name__}: {e}"


def run_batch(module: Module, decoded: Sequence[Decoded]) -> tuple[np.ndarray, np.ndarray]:
    """(outputs of the readable images, in order; a mask of which entries were readable)."""
    ok = np.array([isinstance(d, np.ndarray) for d in decoded], dtype=bool)
    if ok.any():
        outputs = module(np.stack([d for d in decoded if isinstance(d, np.ndarray)]), batch_size=int(ok.sum()))
    else:
        outputs = np.zeros((0, module.output_dim), np.float32)
    return outputs, ok
