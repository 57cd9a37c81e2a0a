"""Grad-CAM (Selvaraju et al., https://arxiv.org/abs/1610.02391) on the Keras 3 models.

The map for class c at end point L weighs each channel k of L's activation A by the mean of
d logit_c / d A_k, sums, keeps the positive part, and scales it to [0, 1]. The gradient comes
from the backend in use (TensorFlow, JAX or PyTorch). `explain` returns the map as an array;
`overlay` (from `cam`) draws it over the photo with the top-5 labels, for `inception-hub explain`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import keras
import numpy as np

from .cam import Explanation, class_index_of, explanation, overlay
from .errors import InputError

__all__ = ["Explanation", "GradCam", "class_index_of", "explain", "overlay"]


class GradCam:
    """Grad-CAM of one model at one end point, prepared once for many images.

    `model` is a model from `inception_hub.keras`, or a chain of layers built on one (e.g. its
    feature vector with a new Dense head): every layer after `layer` takes the previous one's
    output. `layer` defaults to the last one with a spatial map."""

    def __init__(self, model: keras.Model, layer: str | None = None, labels: Sequence[str] | None = None) -> None:
        chain = [c for c in model.layers if not isinstance(c, keras.layers.InputLayer)]
        names = [c.name for c in chain]
        if layer is None:
            layer = [c.name for c in chain if len(c.output.shape) == 4][-1]
        if layer not in names:
            raise InputError(f"no layer {layer!r} in the model; it has {', '.join(names)}")
        cut = names.index(layer) + 1
        if len(chain[cut - 1].output.shape) != 4:
            raise InputError(f"{layer} has no spatial map; choose an earlier end point")
        self.layer, self.labels = layer, labels
        self.head = keras.Model(model.inputs[0], chain[cut - 1].output)
        self.rest = chain[cut:]

    def _tail(self, a):
        for c in self.rest:
            a = c(a)
        return a

    def __call__(self, image: np.ndarray, class_index: int | None = None) -> Explanation:
        """The map of one float32 [H, W, 3] image in [0, 1] for `class_index` (default: the top class)."""
        x = np.asarray(image, np.float32)
        if x.ndim != 3 or x.shape[-1] != 3:
            raise InputError(f"explain takes one image [height, width, 3], got shape {x.shape}")
        maps = keras.ops.convert_to_numpy(self.head(x[None]))
        logits = keras.ops.convert_to_numpy(self._tail(keras.ops.convert_to_tensor(maps)))[0]

        def cam_of(c: int) -> np.ndarray:
            grads = _gradient(lambda a: self._tail(a)[0, c], maps)[0]
            return (maps[0] * grads.mean(axis=(0, 1))).sum(axis=-1)  # one weight per channel

        return explanation(logits, cam_of, class_index, self.labels)


def explain(
    model: keras.Model,
    image: np.ndarray,
    *,
    class_index: int | None = None,
    layer: str | None = None,
    labels: Sequence[str] | None = None,
) -> Explanation:
    """Grad-CAM of one float32 [H, W, 3] image in [0, 1] for `class_index` (default: the top
    class) at end point `layer` (default: the last one with a spatial map); see `GradCam`."""
    return GradCam(model, layer, labels)(image, class_index)


def _gradient(fn: Callable, x: np.ndarray) -> np.ndarray:
    """d fn(x) / d x with the gradient machinery of Keras's backend."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        t = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(t)
            y = fn(t)
        return tape.gradient(y, t).numpy()
    if backend == "jax":
        import jax

        return np.asarray(jax.grad(fn)(x))
    if backend == "torch":
        import torch

        t = torch.tensor(x, requires_grad=True)
        fn(t).backward()
        return t.grad.detach().numpy()
    raise InputError(f"Grad-CAM needs the tensorflow, jax or torch backend of Keras, not {backend}")
