"""Keras 3 models of both networks, on the TensorFlow, JAX and PyTorch backends.

    import inception_hub.keras as ihk
    model = ihk.inception_v1(weights="imagenet")       # [None, None, None, 3] in [0, 1] -> 1001 logits
    feats = ihk.inception_resnet_v2(include_top=False, pooling="avg")          # -> 1536
    maps = ihk.inception_v1(endpoints=["Mixed_4f", "Mixed_5c"])                # -> dict of maps

Built from the one network definition (`nets/keras_builder.py`): the layers are TF-Slim's end
points (`model.get_layer("Mixed_5c")`), the weights come through the same checkpoint reading,
validation and cache as `inception_hub.load` (no TensorFlow needed on JAX or PyTorch), and
`model(x, training=True)` trains as the TF2 hub modules did.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

import keras
import numpy as np

from .errors import InputError
from .nets import ARCHITECTURES
from .nets.blocks import block_names, endpoint_blocks
from .nets.keras_builder import Block
from .nets.layers import BATCH_NORM_MOMENTUM

POOLINGS = (None, "avg", "max")


def inception_v1(weights: str | os.PathLike | Mapping | None = "imagenet", **kwargs) -> keras.Model:
    """Inception V1 (GoogLeNet with BatchNorm) as a Keras model; see `build_model`."""
    return build_model("inception_v1", weights, **kwargs)


def inception_resnet_v2(weights: str | os.PathLike | Mapping | None = "imagenet", **kwargs) -> keras.Model:
    """Inception-ResNet-V2 as a Keras model; see `build_model`."""
    return build_model("inception_resnet_v2", weights, **kwargs)


def build_model(
    arch: str,
    weights: str | os.PathLike | Mapping | None = "imagenet",
    *,
    include_top: bool = True,
    pooling: str | None = None,
    endpoints: Sequence[str] | None = None,
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    batch_norm_momentum: float = BATCH_NORM_MOMENTUM,
    name: str | None = None,
) -> keras.Model:
    """A Keras model of `arch` taking float32 RGB images in [0, 1].

    weights: "imagenet" (the official TF-Slim release, from the cache or downloaded once), any
    checkpoint form `inception_hub.load` accepts (V1 file, V2 prefix, folder, release .tar.gz, the
    cache's .npz), a mapping of TF-Slim names to arrays, or None (random initialization).
    Outputs: the 1001 logits; with `include_top=False` the last feature map, or its `pooling`
    ("avg": the feature vector, "max"); with `endpoints`, a dict of those end points' tensors.
    """
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown network {arch!r}; use one of {', '.join(ARCHITECTURES)}")
    if pooling not in POOLINGS:
        raise InputError(f"pooling must be None, 'avg' or 'max', got {pooling!r}")
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise InputError(f"input_shape is (height, width, 3) with None for any size, got {input_shape!r}")
    names = block_names(arch)
    known = endpoint_blocks(arch)  # e.g. PreAuxLogits -> Repeat_1
    if endpoints is not None:
        unknown = [e for e in endpoints if e not in known]
        if unknown or not endpoints:
            raise InputError(f"unknown end points {unknown or endpoints}; {arch} has {', '.join(known)}")
        last = max(names.index(known[e]) for e in endpoints)
    elif include_top:
        last = names.index("Logits")
    else:
        last = names.index("global_pool") - (pooling != "avg")

    images = keras.Input(shape=input_shape, name="images")
    net = keras.layers.Rescaling(2.0, offset=-1.0, name="to_minus_1_1")(images)  # the modules' [0,1] -> [-1,1]
    outputs = {}
    for block_name in names[: last + 1]:
        net = outputs[block_name] = Block(arch, block_name, batch_norm_momentum, random_init=weights is None)(net)
    if endpoints is not None:
        result = {e: outputs[known[e]] for e in endpoints}
    elif not include_top and pooling == "max":
        result = keras.layers.GlobalMaxPooling2D(name="max_pool")(net)
    else:
        result = net
    model = keras.Model(images, result, name=name or arch)
    if weights is not None:
        load_into(model, arch, weights)
    return model


def load_into(model: keras.Model, arch: str, weights: str | os.PathLike | Mapping) -> None:
    """Set every block of `model` from checkpoint weights (validated as `inception_hub.load` does)."""
    from .weights import load_weights

    if isinstance(weights, Mapping):
        values: Mapping[str, np.ndarray] = weights
    else:
        checkpoint = None if str(weights) == "imagenet" else os.fspath(weights)
        values = load_weights(arch, checkpoint, progress=False)
    for layer in model.layers:
        if isinstance(layer, Block):
            layer.load_slim(values)


def layers_from(model: keras.Model, end_point: str) -> list[keras.layers.Layer]:
    """The blocks from `end_point` up (for fine-tuning only the top of the network)."""
    blocks = [layer for layer in model.layers if isinstance(layer, Block)]
    names = [b.name for b in blocks]
    if end_point not in names:
        raise InputError(f"no end point {end_point!r} in this model; it has {', '.join(names)}")
    return blocks[names.index(end_point) :]


__all__ = ["Block", "build_model", "inception_resnet_v2", "inception_v1", "layers_from", "load_into"]
