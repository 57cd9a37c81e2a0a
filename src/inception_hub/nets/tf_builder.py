"""The network primitives in TensorFlow 2 (eager, tf.function or a TF1 graph)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from .layers import BATCH_NORM_MOMENTUM, BN_EPSILON, DROPOUT_KEEP_PROB, Builder, pair


class TFBuilder(Builder):
    """Runs a definition on real tensors with variables looked up by their TF-Slim names.

    training=False: BatchNorm uses the moving statistics and dropout is off, as TF-Slim's
    `is_training=False`. training=True: BatchNorm normalizes with batch statistics and moves the
    moving averages by `moving = momentum * moving + (1 - momentum) * batch`, and dropout keeps
    80%. Both use TF's fused BatchNorm kernel, which is what TF-Slim ran.
    """

    def __init__(
        self,
        variables: Mapping[str, tf.Variable],
        *,
        training: bool = False,
        batch_norm_momentum: Any = BATCH_NORM_MOMENTUM,
        frozen: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__()
        self.variables = variables
        self.training = training
        self.momentum = batch_norm_momentum
        #: End-point blocks (`Mixed_4b`, ...) that stay in inference mode while the rest trains.
        self.frozen = frozen

    def _get(self, leaf: str) -> tf.Variable:
        return self.variables[self.name(leaf)]

    def _batch_norm(self, x: tf.Tensor) -> tf.Tensor:
        with self.scope("BatchNorm"):
            beta = self._get("beta")
            mean, var = self._get("moving_mean"), self._get("moving_variance")
        scale = tf.ones_like(beta)
        if not self.training or self._scopes[1] in self.frozen:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, scale, beta, mean=mean, variance=var, epsilon=BN_EPSILON, is_training=False
            )
            return y
        # The kernel returns the unbiased batch variance for the moving average, like TF-Slim.
        y, batch_mean, batch_var = tf.compat.v1.nn.fused_batch_norm(
            x, scale, beta, epsilon=BN_EPSILON, is_training=True
        )
        decay = 1.0 - tf.cast(self.momentum, x.dtype)
        updates = [mean.assign_sub((mean - batch_mean) * decay), var.assign_sub((var - batch_var) * decay)]
        if not tf.executing_eagerly():
            # TF1 graphs run these only when asked, through UPDATE_OPS, exactly as TF-Slim did.
            # (Inside a tf.function they run anyway: automatic control dependencies.)
            for op in updates:
                tf.compat.v1.add_to_collection(tf.compat.v1.GraphKeys.UPDATE_OPS, op)
        return y

    def conv2d(self, x, filters, kernel, *, scope, stride=1, padding="SAME", batch_norm=True, activation=True):
        with self.scope(scope):
            y = tf.nn.conv2d(x, self._get("weights"), strides=stride, padding=padding)
            y = self._batch_norm(y) if batch_norm else tf.nn.bias_add(y, self._get("biases"))
        return tf.nn.relu(y) if activation else y

    def max_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return tf.nn.max_pool2d(x, pair(kernel), stride, padding)

    def avg_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return tf.nn.avg_pool2d(x, pair(kernel), stride, padding)

    def concat(self, xs):
        return tf.concat(list(xs), axis=3)

    def residual(self, x, up, *, scale, activation):
        y = x + scale * up if scale != 1.0 else x + up
        return tf.nn.relu(y) if activation else y

    def global_pool(self, x):
        return tf.reduce_mean(x, axis=[1, 2])

    def flatten(self, x):
        return tf.reshape(x, [tf.shape(x)[0], -1])

    def dropout(self, x):
        return tf.nn.dropout(x, rate=1.0 - DROPOUT_KEEP_PROB) if self.training else x

    def fully_connected(self, x, units, *, scope, as_conv1x1=False):
        with self.scope(scope):
            w = self._get("weights")
            if as_conv1x1:
                w = tf.reshape(w, [-1, units])
            return tf.nn.bias_add(tf.matmul(x, w), self._get("biases"))


class FixedSizeTFBuilder(TFBuilder):
    """TFBuilder for a fixed input size whose SAME average pools are a zero pad, a VALID pool and a
    constant rescale (for LiteRT's converter).

    TF excludes the padded cells from a SAME average (sum / cells covered). XLA lowers that as a
    reduce_window over a mask, which litert-converter 0.5 keeps as reduce_window with a body
    subgraph (MediaPipe refuses a model with two). At a fixed size the cell counts are constants:
    sum / count = VALID mean over the zero-padded input * (window / count), the same value within a
    float32 rounding."""

    def avg_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        if padding != "SAME":
            return super().avg_pool2d(x, kernel, stride=stride, padding=padding)
        (kh, kw), (h, w) = pair(kernel), x.shape[1:3]
        pad_h, count_h = same_pool_counts(int(h), kh, stride)
        pad_w, count_w = same_pool_counts(int(w), kw, stride)
        mean = tf.nn.avg_pool2d(tf.pad(x, [(0, 0), pad_h, pad_w, (0, 0)]), (kh, kw), stride, "VALID")
        rescale = (kh * kw) / np.outer(count_h, count_w).astype(np.float32)
        return mean * tf.constant(rescale[None, :, :, None], tf.float32)


def same_pool_counts(size: int, kernel: int, stride: int) -> tuple[tuple[int, int], np.ndarray]:
    """SAME padding's (before, after) along one axis, and how many real cells each window covers."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    before = total // 2
    starts = np.arange(out) * stride - before
    return (before, total - before), np.minimum(starts + kernel, size) - np.maximum(starts, 0)
