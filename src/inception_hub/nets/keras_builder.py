"""The network primitives as Keras 3 layers, on any Keras backend (TensorFlow, JAX, PyTorch).

Each end-point block of the definition (`blocks.plan`) becomes one `Block` layer of that name,
which replays its calls with `keras.ops` on its own variables, named by their TF-Slim path
inside the block ("/" is not allowed in Keras names, nor "." in PyTorch parameter names, so "__"
stands for it). So `model.get_layer("Mixed_5c")` is the whole block, and freezing everything
below an end point is one loop over `model.layers`.

Padding keeps TensorFlow's semantics on every backend: Keras's "same" is TF's SAME (the extra
row and column at the bottom and right), and the one SAME average pool of the networks (3x3,
stride 1) excludes the padding from its count on all three; the parity tests check it against
the TF-Slim reference on each backend.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import keras
import numpy as np
from keras import ops

from . import ARCHITECTURES
from .blocks import Call, plan
from .layers import BATCH_NORM_MOMENTUM, BN_EPSILON, DROPOUT_KEEP_PROB, WEIGHT_DECAY, out_size


@keras.saving.register_keras_serializable(package="inception_hub")
class Block(keras.layers.Layer):
    """One end-point block of a network: its part of the definition, replayed with keras.ops.

    training=True runs BatchNorm on batch statistics and moves the moving averages by
    `moving = momentum * moving + (1 - momentum) * batch` (the unbiased batch variance, as TF's
    fused kernel and so TF-Slim did), and drops 20% before the logits. Conv and fully connected
    weights carry TF-Slim's L2 weight decay, 4e-5 * sum(w**2) / 2 (tf.nn.l2_loss halves). A block
    with `trainable = False` runs in inference mode even under training=True."""

    def __init__(
        self,
        arch: str,
        block: str,
        batch_norm_momentum: float = BATCH_NORM_MOMENTUM,
        random_init: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(name=block, **kwargs)
        self.arch, self.block = arch, block
        # Without it (weights about to be loaded) variables start as zeros: random initializers
        # are compiled per shape on JAX, which costs seconds per block.
        self.random_init = random_init
        self.batch_norm_momentum = float(batch_norm_momentum)
        self.plan = next(b for b in plan(arch) if b.name == block)
        self.slim: dict[str, keras.Variable] = {}
        self.seed = keras.random.SeedGenerator(0) if any(c.kind == "dropout" for c in self.plan.calls) else None

    def build(self, input_shape) -> None:
        prefix = f"{ARCHITECTURES[self.arch].scope}/{self.block}/"
        for call in self.plan.calls:
            for name, shape in call.variables:
                leaf = name.rsplit("/", 1)[-1]
                local = name.removeprefix(prefix).removeprefix(f"{ARCHITECTURES[self.arch].scope}/")
                self.slim[name] = self.add_weight(
                    name=local.replace("/", "__"),
                    shape=shape,
                    initializer=_INIT.get(leaf, "zeros") if self.random_init else "zeros",
                    regularizer=keras.regularizers.L2(WEIGHT_DECAY / 2) if leaf == "weights" else None,
                    trainable=leaf not in ("moving_mean", "moving_variance"),
                )

    def load_slim(self, weights: Mapping[str, np.ndarray]) -> None:
        """Set this block's variables from TF-Slim-named arrays (a checkpoint's contents)."""
        for name, variable in self.slim.items():
            variable.assign(np.asarray(weights[name], np.float32))

    def call(self, x, training=False):
        # A frozen block runs in inference mode, as Keras's own BatchNormalization does, so that
        # fine-tuning the top leaves everything below it exactly as it was.
        training = bool(training) and self.trainable
        env = {self.plan.input: x}
        for c in self.plan.calls:
            env[c.id] = self._run(c, [env[i] for i in c.inputs], training)
        return env[self.plan.output]

    def compute_output_shape(self, input_shape):
        """From the recorded calls, without running them (PyTorch would otherwise probe the
        block at trial sizes when the input size is None, which takes minutes)."""
        batch, *rest = input_shape
        shapes: dict[int, tuple] = {self.plan.input: tuple(rest)}  # (H, W, C), or (C,) once pooled
        for c in self.plan.calls:
            xs = [shapes[i] for i in c.inputs]
            if c.kind == "conv2d":
                kh, kw, _, filters = c.variables[0][1]
                out = (*_spatial(xs[0], (kh, kw), c.params), filters)
            elif c.kind in ("max_pool2d", "avg_pool2d"):
                out = (*_spatial(xs[0], c.params["kernel"], c.params), xs[0][2])
            elif c.kind == "concat":
                out = (*xs[0][:2], sum(x[2] for x in xs))
            elif c.kind == "global_pool":
                out = (xs[0][2],)
            elif c.kind == "flatten":
                out = (None,)
            elif c.kind == "fully_connected":
                out = (c.params["units"],)
            else:  # residual, dropout
                out = xs[0]
            shapes[c.id] = out
        return (batch, *shapes[self.plan.output])

    def _var(self, call: Call, leaf: str) -> keras.Variable:
        return self.slim[next(n for n, _ in call.variables if n.endswith("/" + leaf))]

    def _run(self, c: Call, xs: list, training: bool):
        p, x = c.params, xs[0]
        if c.kind == "conv2d":
            y = ops.conv(x, self._var(c, "weights"), strides=p["stride"], padding=p["padding"].lower())
            y = self._batch_norm(c, y, training) if p["batch_norm"] else y + self._var(c, "biases")
            return ops.relu(y) if p["activation"] else y
        if c.kind == "max_pool2d":
            return ops.max_pool(x, p["kernel"], strides=p["stride"], padding=p["padding"].lower())
        if c.kind == "avg_pool2d":
            return ops.average_pool(x, p["kernel"], strides=p["stride"], padding=p["padding"].lower())
        if c.kind == "concat":
            return ops.concatenate(xs, axis=-1)
        if c.kind == "residual":
            y = x + p["scale"] * xs[1] if p["scale"] != 1.0 else x + xs[1]
            return ops.relu(y) if p["activation"] else y
        if c.kind == "global_pool":
            return ops.mean(x, axis=(1, 2))
        if c.kind == "flatten":
            return ops.reshape(x, (ops.shape(x)[0], -1))
        if c.kind == "dropout":
            return keras.random.dropout(x, 1.0 - DROPOUT_KEEP_PROB, seed=self.seed) if training else x
        if c.kind == "fully_connected":
            w = ops.reshape(self._var(c, "weights"), (-1, p["units"]))
            return ops.matmul(x, w) + self._var(c, "biases")
        raise ValueError(f"unknown primitive {c.kind}")

    def _batch_norm(self, c: Call, y, training: bool):
        beta, mean, var = (self._var(c, f"BatchNorm/{leaf}") for leaf in ("beta", "moving_mean", "moving_variance"))
        if not training:
            return (y - mean) * ops.rsqrt(var + BN_EPSILON) + beta
        batch_mean, batch_var = ops.moments(y, axes=(0, 1, 2))
        n = ops.cast(ops.prod(ops.shape(y)[:3]), y.dtype)
        unbiased = ops.stop_gradient(batch_var * n / ops.maximum(n - 1.0, 1.0))
        decay = 1.0 - self.batch_norm_momentum
        mean.assign(mean - (mean - ops.stop_gradient(batch_mean)) * decay)
        var.assign(var - (var - unbiased) * decay)
        return (y - batch_mean) * ops.rsqrt(batch_var + BN_EPSILON) + beta

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("name", None)
        return {
            **config,
            "arch": self.arch,
            "block": self.block,
            "batch_norm_momentum": self.batch_norm_momentum,
            "random_init": self.random_init,
        }


_INIT = {"weights": "glorot_uniform", "moving_variance": "ones"}


def _spatial(x: tuple, kernel, params: dict) -> tuple[int | None, ...]:
    return tuple(out_size(size, k, params["stride"], params["padding"]) for size, k in zip(x[:2], kernel, strict=True))
