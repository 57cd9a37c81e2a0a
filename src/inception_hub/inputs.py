"""The module input contract, checked in one place for the Python API and the server: float32
RGB `[N, H, W, 3]` in [0, 1], a size the network accepts. Mistakes get a message that says how
to fix them instead of an engine's error from deep inside a graph."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import InputError
from .nets import fits, min_image_size

#: Slack on the [0, 1] range check: resampling can overshoot by a rounding error.
RANGE_TOLERANCE = 1e-3


def as_array(images: Any) -> np.ndarray:
    """numpy from a numpy array, a tf.Tensor or anything else with `.numpy()`, or nested lists."""
    if isinstance(images, (str, os.PathLike, bytes)):
        raise InputError(
            "a module takes image arrays; for files use inception_hub.load_image(path, "
            "module.expected_image_size) or the `inception-hub classify` command"
        )
    if hasattr(images, "numpy") and not isinstance(images, np.ndarray):
        images = images.numpy()
    try:
        return np.asarray(images)
    except (ValueError, TypeError):  # ragged nested lists
        return np.empty((), object)


def check_images(
    images: Any,
    *,
    name: str,
    arch: str,
    fixed_size: tuple[int, int] | None = None,
    max_images: int | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """The images as contiguous float32 `[N, H, W, 3]`, or an InputError naming the problem.

    `name` is the model as the user knows it; `fixed_size` the only size a version-1 module takes;
    `max_images` and `max_pixels` (per image) are a server's limits."""
    x = as_array(images)
    if x.dtype == object or x.ndim == 0:
        raise InputError(f"images must be a numeric array [N, H, W, 3], got {type(images).__name__}")
    if x.ndim == 3 and x.shape[-1] == 3:
        raise InputError(f"images must be a batch [N, H, W, 3]; got one image {list(x.shape)}: use images[None]")
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"images must have shape [N, H, W, 3] (RGB, channels last), got {list(x.shape)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(
            f"images must be float32 in [0, 1], got dtype {x.dtype}; convert with images.astype('float32') / 255"
        )
    n, h, w = x.shape[:3]
    if max_images is not None and not 1 <= n <= max_images:
        raise InputError(f"a request holds 1 to {max_images} images, got {n}")
    if max_pixels is not None and h * w > max_pixels:
        raise InputError(f"images of {h}x{w} exceed the limit of {max_pixels} pixels each")
    check_size(name, arch, h, w, fixed_size)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size:
        if not np.isfinite(x).all():
            raise InputError("images contain NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
        if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
            hint = " (they look like 0-255: divide by 255)" if hi > 2 else ""
            raise InputError(f"images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
    return x


def check_size(name: str, arch: str, h: int, w: int, fixed_size: tuple[int, int] | None = None) -> None:
    if fixed_size is not None and (h, w) != tuple(fixed_size):
        eh, ew = fixed_size
        raise InputError(
            f"{name} takes images of exactly {eh}x{ew}, got {h}x{w}; resize them, "
            f"or use version 3 or later for variable input size"
        )
    if not fits(arch, h, w):
        raise InputError(
            f"images of {h}x{w} are too small for {arch} (at least {min_image_size(arch)} pixels on each side)"
        )
