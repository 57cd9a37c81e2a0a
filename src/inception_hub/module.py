"""The loaded, callable module: `inception_hub.load(handle)(images) -> np.ndarray`."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .catalog import ModelSpec
from .engine import FAST, Choice, Infer, Runner
from .errors import InputError
from .inputs import RANGE_TOLERANCE, check_images
from .labels import Prediction, decode_predictions
from .metadata import read_metadata, spec_of
from .nets import fits, head_variables, min_image_size
from .source import Source, resolve_source
from .weights import Weights

if TYPE_CHECKING:
    from .cam import Explanation

#: Images are run in chunks of this many so memory stays bounded for large arrays.
DEFAULT_BATCH_SIZE = 32

__all__ = ["DEFAULT_BATCH_SIZE", "RANGE_TOLERANCE", "Module", "fits", "load", "min_image_size", "open_source"]


class Module:
    """A TF-Hub Inception module: rebuilt from its TF-Slim checkpoint, or a SavedModel that
    inception-hub exported or fine-tuned.

    Call it on float32 RGB images `[N, H, W, 3]` in [0, 1] (numpy or tf.Tensor); it returns
    logits `[N, 1001]` (class 0 is "background"), logits over a fine-tuned model's own classes, or
    feature vectors `[N, 1024 | 1536]`. `feature_vector()` gives the pooled features of the same
    network; `net` is the underlying `tf.Module` on the tf backend (None on the engines).
    `backend` and `precision` say what runs it; `choice`, where they were chosen for it, why
    (measured rates or the card's order, and for precision "fast" the agreement with fp32)."""

    def __init__(
        self,
        spec: ModelSpec,
        infer: Infer,
        *,
        labels: tuple[str, ...] | None,
        handle: str | None = None,
        image_size: tuple[int, int] | None = None,
        backend: str = "tf",
        features: Callable[[], Infer] | None = None,
        source: Source | None = None,
        net: Any = None,
        maps: Callable[[], Infer] | None = None,
        head: tuple[np.ndarray, np.ndarray] | Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        identity: str | None = None,
        precision: str = "fp32",
        choice: Choice | None = None,
    ) -> None:
        self.spec = spec
        self.backend = backend
        self.precision = precision
        self.choice = choice
        self.net = net
        self._infer = infer
        self._labels = labels
        self._handle = handle or spec.handle
        self._image_size = tuple(image_size) if image_size else spec.image_size
        self._features = features
        self._source = source
        self._maps = maps
        self._maps_run: Infer | None = None
        self._head = head
        self._identity = identity

    @classmethod
    def from_runner(
        cls,
        source: Source,
        runner: Runner,
        head: tuple[np.ndarray, np.ndarray] | Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        identity: str | None = None,
        choice: Choice | None = None,
    ) -> Module:
        return cls(
            source.spec,
            runner.run,
            labels=source.labels,
            handle=source.name,
            image_size=source.image_size,
            backend=runner.backend,
            features=runner.features,
            source=source,
            net=runner.net,
            maps=runner.maps,
            head=head,
            identity=identity,
            precision=source.precision,
            choice=choice,
        )

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

    def feature_vector(self) -> Module:
        """The feature-vector module of the same network and weights: a classifier's pooled
        features (on the tf backend sharing its variables), or this module itself."""
        if self.spec.kind == "feature_vector" and not self.labels:
            return self
        spec = self.spec.with_kind("feature_vector")
        if self._features is not None:
            return Module(
                spec,
                self._features(),
                labels=None,
                handle=self.handle,
                image_size=self.expected_image_size,
                backend=self.backend,
                net=self.net,
                source=self._source,  # the same weights: the same identity, found when asked
                identity=self._identity,
                precision=self.precision,
                choice=self.choice,
            )
        if self._source is None:
            raise InputError(f"{self.handle} has no feature-vector output")
        return open_source(self._source.with_kind("feature_vector"), progress=False)

    def feature_maps(self) -> Infer:
        """A batch function giving the final end point [N, h, w, C] (`Mixed_5c` of Inception V1,
        `Conv2d_7b_1x1` of Inception-ResNet-V2) of an ImageNet classifier, on the same weights."""
        self.head()  # both parts of a map, or neither
        if self._maps_run is None:
            self._maps_run = self._maps()
        return self._maps_run

    def head(self) -> tuple[np.ndarray, np.ndarray]:
        """The classification head's weights [C, 1001] and biases [1001] (read from the weights
        on first use, where the engine model ran without them)."""
        if self._maps is None or self._head is None:
            raise InputError(
                f"{self.handle} has no class activation maps: they need an ImageNet classification "
                "handle loaded from its checkpoint (not a feature vector or an exported file)"
            )
        if callable(self._head):
            self._head = self._head()
        return self._head

    def explain(self, image: Any, class_index: int | None = None) -> Explanation:
        """Where in one float32 [H, W, 3] image in [0, 1] the network finds class `class_index`
        (default: its top class): Grad-CAM's map at the final end point, computed in closed
        form on any backend (see `inception_hub.cam`), with the top-5 predictions."""
        from .cam import from_feature_map  # drawing code, for the commands that explain

        x = np.asarray(image, np.float32)
        if x.ndim != 3 or x.shape[-1] != 3:
            raise InputError(f"explain takes one image [height, width, 3], got shape {list(x.shape)}")
        x = self.check_images(x[None])
        run = self.feature_maps()
        w, b = self.head()
        return from_feature_map(run(x)[0], w, b, class_index, self.labels)

    def identity(self) -> str:
        """Which weights compute this module: their digest (known since they were loaded, so
        never read again), or an exported model's file and time."""
        if self._identity is None:
            self._identity = self._source.identity() if self._source is not None else self.handle
        return self._identity

    def check_images(self, images: Any) -> np.ndarray:
        """The input contract, checked up front so mistakes get a message instead of a TF error."""
        fixed = None if self.spec.variable_size else self.expected_image_size
        return check_images(images, name=self.handle, arch=self.spec.arch, fixed_size=fixed)


def open_source(
    source: Source, weights: Weights | None = None, *, threads: int | None = None, progress: bool = True
) -> Module:
    """Build the module a resolved source stands for. `weights` skips reading them again (the Ray
    actors receive them from the driver); `threads` caps an engine's compute threads."""
    if source.saved_model is not None:
        from .engine.tf import saved_model_runner

        runner = saved_model_runner(source.saved_model)
        saved_kind = spec_of(read_metadata(source.saved_model)).kind
        if source.spec.kind == "feature_vector" and saved_kind != source.spec.kind:
            # A classifier's folder asked for features: its image_feature_vector signature.
            if runner.features is None:
                raise InputError(f"{source.name} has no image_feature_vector signature")
            runner = Runner(runner.features(), None, runner.backend)
        return Module.from_runner(source, runner)
    if source.model_file is not None:
        from .engine.exported import exported_runner

        return Module.from_runner(source, exported_runner(source.model_file, source.backend, source.precision, threads))
    from .engine import runner as make_runner
    from .engine import settle

    weights = weights if weights is not None else source.lazy_weights(progress=progress)

    def build(spec, backend: str, precision: str) -> Runner:
        return make_runner(spec, weights, backend, precision, threads, source.calibration)

    runner, choice = None, None
    if source.request is not None:  # the backend or the precision is ours to choose: by measurement
        choice, runner = settle(source.spec, weights, *source.request, build, calibration=source.calibration)
        source = replace(source, backend=choice.backend, precision=choice.precision)
        if source.request[0] == FAST:
            print(choice.summary(), file=sys.stderr)
    if runner is None:
        runner = build(source.spec, source.backend, source.precision)
    head = (lambda: _head(source.spec.arch, weights)) if runner.maps else None
    return Module.from_runner(source, runner, head, identity=weights.digest, choice=choice)


def _head(arch: str, weights: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The classification head as a [C, classes] matrix and its biases, for class activation maps."""
    w, b = (np.asarray(weights[name], np.float32) for name in head_variables(arch))
    return w.reshape(-1, b.shape[-1]), b


def load(
    handle: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    kind: str | None = None,
    backend: str | None = None,
    precision: str = "fp32",
    calibration: str | os.PathLike | None = None,
    progress: bool = True,
) -> Module:
    """Load a module by handle (`google/imagenet/inception_v1/classification/5`, its tfhub.dev URL,
    or a short name such as `inception_v1`), or a folder written by `export` or `finetune`.

    `checkpoint` is a TF-Slim checkpoint file, V2 prefix or the official .tar.gz; without it the
    cached weights are used, downloaded the first time (see `inception-hub fetch`).
    `kind="feature_vector"` gives the feature-vector variant of a classification handle.

    `backend`: "tf", "onnxruntime" or "openvino"; the default is the fastest exact (fp32) one
    installed, measured on this CPU at first use. `precision="bf16"` (OpenVINO only) and
    `precision="int8"` (either engine) are faster and not exact: see the README. int8 is
    calibrated once on the photos in `calibration` (default: a bundled set) and cached.
    `precision="fast"` picks the fastest of bf16 and int8 that the CPU runs natively, by
    measurement, and prints its top-1 agreement with fp32 (also in `module.choice`)."""
    source = resolve_source(
        handle, checkpoint, kind=kind, backend=backend, precision=precision, calibration=calibration
    )
    return open_source(source, progress=progress)
