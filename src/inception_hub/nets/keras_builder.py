"""The network primitives as Keras 3 layers, on any Keras backend (TensorFlow, JAX, PyTorch).

The definition is first run on a `Recorder`, which notes each primitive call with its scope and
cuts the run into blocks at TF-Slim's end points: `Conv2d_1a_7x7`, `MaxPool_2a_3x3`, ...,
`Mixed_5c`, `global_pool`, `Logits` (and `Repeat`, `Repeat_1`, ... for Inception-ResNet-V2's
residual stacks). Each block becomes one `Block` layer of that name, which replays its calls with
`keras.ops` on its own variables, named by their TF-Slim path inside the block ("/" is not
allowed in Keras names, nor "." in PyTorch parameter names, so "__" stands for it). So
`model.get_layer("Mixed_5c")` is the whole block, and freezing everything below an end point is
one loop over `model.layers`.

Padding keeps TensorFlow's semantics on every backend: Keras's "same" is TF's SAME (the extra
row and column at the bottom and right), and the one SAME average pool of the networks (3x3,
stride 1) excludes the padding from its count on all three; the parity tests check it against
the TF-Slim reference on each backend.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
from keras import ops

from . import ARCHITECTURES, NUM_CLASSES, build
from .layers import (
    BATCH_NORM_MOMENTUM,
    BN_EPSILON,
    DROPOUT_KEEP_PROB,
    WEIGHT_DECAY,
    Shape,
    ShapeBuilder,
    _out_size,
    pair,
)


@dataclass(frozen=True)
class Sym:
    """A recorded tensor: the id of the call that made it (-1: the network input) and its shape."""

    id: int
    shape: Shape

    # The definitions read static sizes off their tensors (the aux head's kernel size).
    @property
    def height(self) -> int | None:
        return self.shape.height

    @property
    def width(self) -> int | None:
        return self.shape.width

    @property
    def channels(self) -> int:
        return self.shape.channels


@dataclass(frozen=True)
class Call:
    """One primitive call: what it does, on which tensors, with which variables (TF-Slim names)."""

    id: int
    kind: str
    inputs: tuple[int, ...]
    params: dict
    variables: tuple[tuple[str, tuple[int, ...]], ...] = ()


@dataclass
class BlockPlan:
    name: str
    calls: list[Call] = field(default_factory=list)

    @property
    def input(self) -> int:
        made = {c.id for c in self.calls}
        outside = {i for c in self.calls for i in c.inputs if i not in made}
        if len(outside) != 1:
            raise ValueError(f"block {self.name} reads {len(outside)} tensors from outside; a block takes one")
        return outside.pop()

    @property
    def output(self) -> int:
        return self.calls[-1].id


class Recorder(ShapeBuilder):
    """Runs a definition on shapes, recording its calls and cutting them into end-point blocks."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self.blocks: list[BlockPlan] = []
        self.endpoint_ids: dict[str, int] = {}
        self._open: BlockPlan | None = None

    def _record(self, kind: str, inputs: list[Sym], run, **params) -> Sym:
        # The block a call belongs to: the first scope under the network's, else the end point
        # that names it next (a top-level pool, the global pool).
        key = self._scopes[1] if len(self._scopes) > 1 else params.get("scope")
        if self._open is not None and self._open.name != key and (self._open.name is not None or key is not None):
            self._close()
        if self._open is None:
            self._open = BlockPlan(key)
        before = len(self.variables)
        shape = run(*[s.shape for s in inputs])
        names = tuple((v.name, v.shape) for v in self.variables[before:])
        call = Call(len(self.calls), kind, tuple(s.id for s in inputs), params, names)
        self.calls.append(call)
        self._open.calls.append(call)
        return Sym(call.id, shape)

    def _close(self) -> None:
        if self._open is not None and self._open.calls:
            if self._open.name is None:
                raise ValueError("calls outside any scope must be named by an end point")
            self.blocks.append(self._open)
        self._open = None

    def end_point(self, name, net):
        if self._open is not None and self._open.name is None:
            self._open.name = name
        self.endpoint_ids[name] = net.id
        return net

    def conv2d(self, x, filters, kernel, *, scope, stride=1, padding="SAME", batch_norm=True, activation=True):
        params = dict(scope=scope, stride=stride, padding=padding, batch_norm=batch_norm, activation=activation)

        def run(s):
            return ShapeBuilder.conv2d(self, s, filters, kernel, **params)

        return self._record("conv2d", [x], run, **params)

    def max_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self._record(
            "max_pool2d", [x], lambda s: ShapeBuilder.max_pool2d(self, s, kernel, stride=stride, padding=padding),
            kernel=pair(kernel), stride=stride, padding=padding,
        )  # fmt: skip

    def avg_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self._record(
            "avg_pool2d", [x], lambda s: ShapeBuilder.avg_pool2d(self, s, kernel, stride=stride, padding=padding),
            kernel=pair(kernel), stride=stride, padding=padding,
        )  # fmt: skip

    def concat(self, xs):
        return self._record("concat", list(xs), lambda *s: ShapeBuilder.concat(self, s))

    def residual(self, x, up, *, scale, activation):
        run = lambda a, b: ShapeBuilder.residual(self, a, b, scale=scale, activation=activation)  # noqa: E731
        return self._record("residual", [x, up], run, scale=scale, activation=activation)

    def global_pool(self, x):
        return self._record("global_pool", [x], lambda s: ShapeBuilder.global_pool(self, s))

    def flatten(self, x):
        return self._record("flatten", [x], lambda s: ShapeBuilder.flatten(self, s))

    def dropout(self, x):
        return self._record("dropout", [x], lambda s: s)

    def fully_connected(self, x, units, *, scope, as_conv1x1=False):
        run = lambda s: ShapeBuilder.fully_connected(self, s, units, scope=scope, as_conv1x1=as_conv1x1)  # noqa: E731
        return self._record("fully_connected", [x], run, scope=scope, units=units)


@functools.cache
def plan(arch: str) -> tuple[tuple[BlockPlan, ...], dict[str, int]]:
    """The blocks of `arch` (with the classification head, without the aux head), in order, and
    the id of each end point's tensor."""
    size = ARCHITECTURES[arch].default_image_size
    r = Recorder()
    build(r, arch, Sym(-1, Shape(size, size, 3)), NUM_CLASSES)
    r._close()
    return tuple(r.blocks), dict(r.endpoint_ids)


def block_names(arch: str) -> list[str]:
    return [b.name for b in plan(arch)[0]]


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
        blocks, _ = plan(arch)
        self.plan = next(b for b in blocks if b.name == block)
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
    return tuple(_out_size(size, k, params["stride"], params["padding"]) for size, k in zip(x[:2], kernel, strict=True))
