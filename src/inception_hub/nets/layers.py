"""The vocabulary the network definitions are written in, and a builder that only tracks shapes.

A network is a plain function `net(b, inputs)` that calls the primitives of a `Builder`
(`conv2d`, `max_pool2d`, ...) inside named scopes, exactly as TF-Slim code reads. Each backend
implements the primitives once: `ShapeBuilder` (here) derives the variable list and output
shapes, `TFBuilder` runs the network in TensorFlow. So every backend and export derives from the
one definition in `inception_v1.py` / `inception_resnet_v2.py`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

Kernel = int | tuple[int, int]

#: TF-Slim's BatchNorm epsilon for both networks (the arg scopes set 0.001).
BN_EPSILON = 1e-3
#: Dropout before the logits keeps 80% of activations (TF-Slim's dropout_keep_prob=0.8).
DROPOUT_KEEP_PROB = 0.8
#: L2 weight decay TF-Slim trained both networks with (arg scope weight_decay=0.00004).
WEIGHT_DECAY = 4e-5
#: BatchNorm momentum of training mode: the published modules' `batch_norm_momentum` default.
BATCH_NORM_MOMENTUM = 0.99
#: The networks' outputs, named as the engines' graphs and the published signatures name them:
#: the logits, the pooled feature vector, and the final end point [N, h, w, C] the features
#: pool (for class activation maps; no published signature has it, exports leave it out).
LOGITS, FEATURES, FEATURE_MAP = "logits", "feature_vector", "feature_map"
#: ImageNet classes of the released checkpoints: "background" and the 1000 ILSVRC-2012 ones.
NUM_CLASSES = 1001


def pair(k: Kernel) -> tuple[int, int]:
    return (k, k) if isinstance(k, int) else (int(k[0]), int(k[1]))


@dataclass(frozen=True)
class Architecture:
    """What a network definition fixes: each net file declares its own."""

    name: str
    scope: str  # the checkpoint's top-level variable scope
    fn: Callable[..., Any]  # fn(b, inputs, num_classes=..., create_aux_logits=...)
    default_image_size: int  # the training size, and the fixed input size of version 1
    num_features: int  # width of the pooled feature vector
    final_endpoint: str  # the last spatial map, which the feature vector pools (TF-Slim's name)
    has_aux_logits: bool = False


@dataclass(frozen=True)
class VariableSpec:
    """One checkpoint variable: its TF-Slim name, shape and role."""

    name: str
    shape: tuple[int, ...]

    @property
    def leaf(self) -> str:
        return self.name.rsplit("/", 1)[-1]

    @property
    def trainable(self) -> bool:
        """BatchNorm moving statistics are state, not parameters."""
        return self.leaf not in ("moving_mean", "moving_variance")

    @property
    def regularized(self) -> bool:
        """TF-Slim put the L2 regularizer on conv and fully connected weights only."""
        return self.leaf == "weights"


class Builder:
    """Scope bookkeeping shared by all backends; subclasses implement the primitives."""

    def __init__(self) -> None:
        self._scopes: list[str] = []
        self.end_points: dict[str, Any] = {}

    @contextlib.contextmanager
    def scope(self, name: str) -> Iterator[None]:
        self._scopes.append(name)
        try:
            yield
        finally:
            self._scopes.pop()

    def name(self, leaf: str) -> str:
        """Full variable name under the current scopes, e.g. `InceptionV1/Mixed_3b/.../weights`."""
        return "/".join([*self._scopes, leaf])

    def end_point(self, name: str, net: Any) -> Any:
        self.end_points[name] = net
        return net

    # Primitives. `scope` names the layer's variables, as in TF-Slim.
    def conv2d(
        self,
        x: Any,
        filters: int,
        kernel: Kernel,
        *,
        scope: str,
        stride: int = 1,
        padding: str = "SAME",
        batch_norm: bool = True,
        activation: bool = True,
    ) -> Any:
        """Convolution, then BatchNorm without scale (or biases if `batch_norm` is False), then ReLU."""
        raise NotImplementedError

    def max_pool2d(self, x: Any, kernel: Kernel, *, stride: int = 1, padding: str = "SAME") -> Any:
        raise NotImplementedError

    def avg_pool2d(self, x: Any, kernel: Kernel, *, stride: int = 1, padding: str = "SAME") -> Any:
        """Average pooling; with SAME padding the padded cells are not counted (TF semantics)."""
        raise NotImplementedError

    def concat(self, xs: Sequence[Any]) -> Any:
        """Concatenate along channels."""
        raise NotImplementedError

    def residual(self, x: Any, up: Any, *, scale: float, activation: bool) -> Any:
        """`x + scale * up`, then ReLU if `activation`."""
        raise NotImplementedError

    def global_pool(self, x: Any) -> Any:
        """Mean over all spatial positions: [N,H,W,C] -> [N,C], for any input size."""
        raise NotImplementedError

    def flatten(self, x: Any) -> Any:
        raise NotImplementedError

    def dropout(self, x: Any) -> Any:
        """Dropout with keep probability DROPOUT_KEEP_PROB when training, identity otherwise."""
        raise NotImplementedError

    def fully_connected(self, x: Any, units: int, *, scope: str, as_conv1x1: bool = False) -> Any:
        """Dense layer with biases and no activation on [N,C].

        `as_conv1x1` stores the weights as a [1,1,C,units] kernel, the way TF-Slim's Inception V1
        computes its logits with a 1x1 convolution."""
        raise NotImplementedError


@dataclass(frozen=True)
class Shape:
    """Static shape of an activation: spatial size (None when unknown) and channels."""

    height: int | None
    width: int | None
    channels: int


def out_size(size: int | None, kernel: int, stride: int, padding: str) -> int | None:
    if size is None:
        return None
    if padding == "SAME":
        return math.ceil(size / stride)
    if padding == "VALID":
        out = math.ceil((size - kernel + 1) / stride)
        if out < 1:
            raise ValueError(f"input too small: a {kernel}-wide VALID window does not fit in {size}")
        return out
    raise ValueError(f"unknown padding {padding!r}")


class ShapeBuilder(Builder):
    """Runs a definition on shapes alone, collecting its variables in creation order."""

    def __init__(self) -> None:
        super().__init__()
        self.variables: list[VariableSpec] = []

    def _var(self, leaf: str, shape: tuple[int, ...]) -> None:
        self.variables.append(VariableSpec(self.name(leaf), tuple(int(d) for d in shape)))

    def _spatial(self, x: Shape, kernel: Kernel, stride: int, padding: str, channels: int) -> Shape:
        kh, kw = pair(kernel)
        return Shape(out_size(x.height, kh, stride, padding), out_size(x.width, kw, stride, padding), channels)

    def conv2d(self, x, filters, kernel, *, scope, stride=1, padding="SAME", batch_norm=True, activation=True):
        kh, kw = pair(kernel)
        with self.scope(scope):
            self._var("weights", (kh, kw, x.channels, filters))
            if batch_norm:
                with self.scope("BatchNorm"):
                    for leaf in ("beta", "moving_mean", "moving_variance"):
                        self._var(leaf, (filters,))
            else:
                self._var("biases", (filters,))
        return self._spatial(x, kernel, stride, padding, filters)

    def max_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self._spatial(x, kernel, stride, padding, x.channels)

    avg_pool2d = max_pool2d

    def concat(self, xs):
        return Shape(xs[0].height, xs[0].width, sum(x.channels for x in xs))

    def residual(self, x, up, *, scale, activation):
        if up.channels != x.channels:
            raise ValueError("residual branch must keep the channel count")
        return x

    def global_pool(self, x):
        return Shape(None, None, x.channels)

    def flatten(self, x):
        return Shape(None, None, x.channels * (x.height or 1) * (x.width or 1))

    def dropout(self, x):
        return x

    def fully_connected(self, x, units, *, scope, as_conv1x1=False):
        with self.scope(scope):
            self._var("weights", (1, 1, x.channels, units) if as_conv1x1 else (x.channels, units))
            self._var("biases", (units,))
        return Shape(None, None, units)
