"""The loaded, callable module: `inception_hub.load(handle)(images) -> np.ndarray`."""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from .catalog import ModelSpec, resolve
from .errors import InputError
from .labels import Prediction, decode_predictions, imagenet_labels
from .nets import ARCHITECTURES
from .nets.layers import Shape, ShapeBuilder
from .nets.tf_module import InceptionNet
from .weights import cached_path, load_weights

#: Images are run in chunks of this many so memory stays bounded for large arrays.
DEFAULT_BATCH_SIZE = 32
#: Slack on the [0, 1] range check: resampling can overshoot by a rounding error.
RANGE_TOLERANCE = 1e-3


class Module:
    """A TF-Hub Inception module: rebuilt from its TF-Slim checkpoint, or a SavedModel that
    inception-hub exported or fine-tuned.

    Call it on float32 RGB images `[N, H, W, 3]` in [0, 1] (numpy or tf.Tensor); it returns
    logits `[N, 1001]` (class 0 is "background"), logits over a fine-tuned model's own classes, or
    feature vectors `[N, 1024 | 1536]`."""

    def __init__(
        self,
        spec: ModelSpec,
        infer: Callable[[np.ndarray], np.ndarray],
        *,
        labels: tuple[str, ...] | None,
        handle: str | None = None,
        image_size: tuple[int, int] | None = None,
        backend: str = "tf",
    ) -> None:
        self.spec = spec
        self.backend = backend
        self._infer = infer
        self._labels = labels
        self._handle = handle or spec.handle
        self._image_size = tuple(image_size) if image_size else spec.image_size

    @classmethod
    def from_weights(
        cls,
        spec: ModelSpec,
        weights: Mapping[str, np.ndarray],
        backend: str = "tf",
        precision: str = "fp32",
        source: str | None = None,
        threads: int | None = None,
    ) -> Module:
        """The network on `backend`: "tf", or an inference engine ("onnxruntime", "openvino")
        running the graph converted from the same definition and weights (`source` names the
        weights file, to key the converted-model cache). `threads` caps an engine's compute
        threads, for several modules sharing a machine (default: all cores)."""
        labels = imagenet_labels() if spec.num_classes else None
        if backend == "tf":
            if precision != "fp32":
                raise InputError(f"the tf backend runs fp32 only; {precision} needs backend='openvino'")
            net = InceptionNet(spec.arch, spec.num_classes, weights)
            module = cls(spec, tf_runner(lambda x: net(x, training=False)), labels=labels)
            module.net = net
            return module
        from .engine import runner

        return cls(spec, runner(spec, weights, backend, precision, source, threads), labels=labels, backend=backend)

    @classmethod
    def from_saved_model(cls, path: str | os.PathLike, kind: str | None = None) -> Module:
        """A TF2 SavedModel written by `inception-hub export` or `finetune`. `kind="feature_vector"`
        runs its `image_feature_vector` signature instead of its main output."""
        from .export import read_metadata

        meta = read_metadata(path)
        if meta["format"] != "tf2_saved_model":
            raise InputError(f"{path} is a TF1 Hub module: load it with tensorflow_hub.load(path, tags=[])")
        spec = ModelSpec(meta["architecture"], meta["kind"], meta["version"])
        labels = tuple(meta["labels"]) if meta.get("labels") else None
        loaded = tf.saved_model.load(str(path))
        if kind == "feature_vector" and spec.kind != "feature_vector":
            if "image_feature_vector" not in loaded.signatures:
                raise InputError(f"{path} has no image_feature_vector signature")
            signature = loaded.signatures["image_feature_vector"]
            spec = dataclasses.replace(spec, kind="feature_vector")
            fn = tf_runner(lambda x: signature(images=x)["default"])
            labels = None
        else:
            fn = tf_runner(lambda x: loaded(x, training=False))
        module = cls(spec, fn, labels=labels, handle=str(path), image_size=meta["default_image_size"])
        module.loaded = loaded
        return module

    @property
    def handle(self) -> str:
        return self._handle

    @property
    def expected_image_size(self) -> tuple[int, int]:
        """(height, width) the network was trained at; version 1 modules accept only this size."""
        return self._image_size

    @property
    def output_dim(self) -> int:
        return len(self._labels) if self._labels else self.spec.output_dim

    @property
    def labels(self) -> tuple[str, ...] | None:
        """Class names of a classifier (the 1001 ImageNet ones, "background" first, or a
        fine-tuned model's own); None for feature vectors."""
        return self._labels

    def __repr__(self) -> str:
        return f"<inception_hub.Module {self.handle} input={self.expected_image_size} output={self.output_dim}>"

    def __call__(self, images: Any, *, batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
        x = self.check_images(images)
        if len(x) == 0:
            return np.zeros((0, self.output_dim), np.float32)
        outs = [self._infer(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return np.concatenate(outs)

    def predict(self, images: Any, top: int = 5) -> list[list[Prediction]]:
        """Ranked (index, label, probability) per image, for classification modules."""
        if not self.labels:
            raise InputError(f"{self.handle} outputs feature vectors; load a classification handle to predict")
        return decode_predictions(self(images), top=top, labels=self.labels)

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


def tf_runner(fn: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[np.ndarray], np.ndarray]:
    """numpy in, numpy out, through one graph traced for any batch and image size."""
    graph = tf.function(fn, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    return lambda x: graph(tf.constant(x)).numpy()


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


def load(
    handle: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    kind: str | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    progress: bool = True,
) -> Module:
    """Load a module by handle (`google/imagenet/inception_v1/classification/5`, its tfhub.dev URL,
    or a short name such as `inception_v1`), or a folder written by `export` or `finetune`.

    `checkpoint` is a TF-Slim checkpoint file, V2 prefix or the official .tar.gz; without it the
    cached weights are used, downloaded the first time (see `inception-hub fetch`).
    `kind="feature_vector"` gives the feature-vector variant of a classification handle.

    `backend`: "tf", "onnxruntime" or "openvino"; the default is the fastest exact (fp32) one
    installed. `precision="bf16"` (OpenVINO only) is faster and not exact: see the README."""
    from .engine import choose_backend

    if is_saved_model(handle):
        if checkpoint is not None:
            raise InputError(f"{handle} is a saved module with its own weights; drop the checkpoint argument")
        if backend not in (None, "tf") or precision != "fp32":
            raise InputError(f"{handle} is a SavedModel: it runs on the tf backend in fp32")
        return Module.from_saved_model(handle, kind)
    spec = resolve(os.fspath(handle))
    if kind and kind != spec.kind:
        spec = dataclasses.replace(spec, kind=kind)
    backend = choose_backend(backend, precision, spec.arch)
    weights = load_weights(spec.arch, checkpoint, progress=progress)
    source = str(checkpoint if checkpoint is not None else cached_path(spec.arch))
    return Module.from_weights(spec, weights, backend, precision, source)


def is_saved_model(path: str | os.PathLike) -> bool:
    return os.path.isfile(os.path.join(os.fspath(path), "saved_model.pb"))
