"""The loaded, callable module: `inception_hub.load(handle)(images) -> np.ndarray`."""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from .catalog import ModelSpec, resolve
from .errors import InputError
from .labels import Prediction, decode_predictions, imagenet_labels
from .nets import ARCHITECTURES
from .nets.layers import Shape, ShapeBuilder
from .nets.tf_module import InceptionNet
from .weights import load_weights

#: Images are run in chunks of this many so memory stays bounded for large arrays.
DEFAULT_BATCH_SIZE = 32
#: Slack on the [0, 1] range check: resampling can overshoot by a rounding error.
RANGE_TOLERANCE = 1e-3


class Module:
    """A TF-Hub Inception module rebuilt from its TF-Slim checkpoint.

    Call it on float32 RGB images `[N, H, W, 3]` in [0, 1] (numpy or tf.Tensor); it returns
    logits `[N, 1001]` (class 0 is "background") or feature vectors `[N, 1024 | 1536]`."""

    def __init__(self, spec: ModelSpec, weights: Mapping[str, np.ndarray]) -> None:
        self.spec = spec
        self.net = InceptionNet(spec.arch, spec.num_classes, weights)
        self._infer = tf.function(
            lambda x: self.net(x, training=False),
            input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)],
        )

    @property
    def handle(self) -> str:
        return self.spec.handle

    @property
    def expected_image_size(self) -> tuple[int, int]:
        """(height, width) the network was trained at; version 1 modules accept only this size."""
        return self.spec.image_size

    @property
    def output_dim(self) -> int:
        return self.spec.output_dim

    @property
    def labels(self) -> tuple[str, ...] | None:
        """The 1001 class names for classification modules ("background" first); None otherwise."""
        return imagenet_labels() if self.spec.kind == "classification" else None

    def __repr__(self) -> str:
        return f"<inception_hub.Module {self.handle} input={self.expected_image_size} output={self.output_dim}>"

    def __call__(self, images: Any, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        x = self.check_images(images)
        if len(x) == 0:
            return np.zeros((0, self.output_dim), np.float32)
        outs = [self._infer(tf.constant(x[i : i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
        return np.concatenate(outs)

    def predict(self, images: Any, top: int = 5) -> list[list[Prediction]]:
        """Ranked (index, label, probability) per image, for classification modules."""
        if self.spec.kind != "classification":
            raise InputError(f"{self.handle} outputs feature vectors; load a classification handle to predict")
        return decode_predictions(self(images), top=top)

    def check_images(self, images: Any) -> np.ndarray:
        """The input contract, checked up front so mistakes get a message instead of a TF error."""
        if isinstance(images, tf.Tensor):
            images = images.numpy()
        if isinstance(images, (str, os.PathLike)):
            raise InputError(
                "a module takes image arrays; for files use inception_hub.load_image(path, "
                "module.expected_image_size) or the `inception-hub classify` command"
            )
        try:
            x = np.asarray(images)
        except ValueError:  # ragged nested lists
            x = np.empty((), object)
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
        x = np.ascontiguousarray(x, dtype=np.float32)
        self._check_size(x.shape[1], x.shape[2])
        if x.size:
            if not np.isfinite(x).all():
                raise InputError("images contain NaN or infinite values")
            lo, hi = float(x.min()), float(x.max())
            if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
                hint = " (they look like 0-255: divide by 255)" if hi > 2 else ""
                raise InputError(f"images must be in [0, 1], got values in [{lo:.3g}, {hi:.3g}]{hint}")
        return x

    def _check_size(self, h: int, w: int) -> None:
        if not self.spec.variable_size and (h, w) != self.expected_image_size:
            eh, ew = self.expected_image_size
            raise InputError(
                f"{self.handle} takes images of exactly {eh}x{ew}, got {h}x{w}; resize them, "
                f"or use version 3 or later for variable input size"
            )
        if not fits(self.spec.arch, h, w):
            raise InputError(
                f"images of {h}x{w} are too small for {self.spec.arch} (at least {min_image_size(self.spec.arch)} "
                "pixels on each side)"
            )


@functools.lru_cache(maxsize=256)
def fits(arch: str, height: int, width: int) -> bool:
    """Whether the network's VALID convolutions and pools accept this input size."""
    try:
        ARCHITECTURES[arch].fn(ShapeBuilder(), Shape(height, width, 3), num_classes=None)
    except ValueError:
        return False
    return True


def min_image_size(arch: str) -> int:
    """Smallest square input the network accepts."""
    return next(s for s in range(1, 1024) if fits(arch, s, s))


def load(handle: str, checkpoint: str | os.PathLike | None = None, *, progress: bool = True) -> Module:
    """Load a module by handle (`google/imagenet/inception_v1/classification/5`, its tfhub.dev URL,
    or a short name such as `inception_v1`).

    `checkpoint` is a TF-Slim checkpoint file, V2 prefix or the official .tar.gz; without it the
    cached weights are used, downloaded the first time (see `inception-hub fetch`)."""
    spec = resolve(handle)
    return Module(spec, load_weights(spec.arch, checkpoint, progress=progress))
