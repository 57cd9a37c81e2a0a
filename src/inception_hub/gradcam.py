"""Grad-CAM (Selvaraju et al., https://arxiv.org/abs/1610.02391) on the Keras 3 models.

The map for class c at end point L weighs each channel k of L's activation A by the mean of
d logit_c / d A_k, sums, keeps the positive part, and scales it to [0, 1]. The gradient comes
from the backend in use (TensorFlow, JAX or PyTorch). `explain` returns the map as an array;
`overlay` draws it over the photo with the top-5 labels, for `inception-hub explain`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import keras
import numpy as np
from PIL import Image, ImageDraw

from .cam import Explanation, explanation
from .errors import InceptionHubError, InputError


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


def overlay(photo: np.ndarray, explanation: Explanation, alpha: float = 0.45) -> Image.Image:
    """The photo (uint8 RGB) with the heat map over it and the top-5 labels written on it."""
    base = Image.fromarray(np.asarray(photo, np.uint8))
    heat = Image.fromarray((explanation.heatmap * 255).astype(np.uint8)).resize(base.size, Image.BILINEAR)
    h = np.asarray(heat, np.float32)[..., None] / 255
    # A blue-to-red ramp: cold where the class gets no evidence, hot where it gets the most.
    color = np.concatenate([h, 1 - np.abs(2 * h - 1), 1 - h], axis=-1) * 255
    mixed = np.asarray(base, np.float32) * (1 - alpha * h) + color * (alpha * h)
    out = Image.fromarray(mixed.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(out)
    lines = [f"{p.label}  {p.score:.1%}" for p in explanation.predictions]
    if explanation.predictions[0].index != explanation.class_index:
        lines.append(f"map for class {explanation.class_index}")
    width = max(draw.textlength(line) for line in lines) + 8
    draw.rectangle([0, 0, width, 12 * len(lines) + 6], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + 12 * i), line, fill=(255, 255, 255))
    return out


def class_index_of(text: str, labels: Sequence[str]) -> int:
    """A class given as its index or its label (case-insensitive)."""
    if text.strip().isdigit():
        return int(text)
    found = [i for i, label in enumerate(labels) if label.lower() == text.strip().lower()]
    if not found:
        raise InputError(f"no class labelled {text!r}; give its index (0-{len(labels) - 1}) or an exact label")
    return found[0]


def explain_files(
    paths: Sequence[str],
    model: keras.Model,
    image_size: tuple[int, int],
    outdir: Path,
    *,
    class_index: int | None = None,
    layer: str | None = None,
    on_error: Callable[[str, str], None],
) -> list[Path]:
    """One `<name>.gradcam.png` per readable image in `outdir` (the central crop the network
    sees, with the map and the top-5 labels); unreadable images go to `on_error(path, reason)`."""
    from .atomic import atomic_file
    from .images import central_crop_box, decode_image, preprocess

    outdir.mkdir(parents=True, exist_ok=True)
    cam = GradCam(model, layer)
    written, used = [], set()
    for path in paths:
        try:
            photo = decode_image(path)
        except (InceptionHubError, OSError) as e:
            on_error(path, str(e))
            continue
        e = cam(preprocess(photo, image_size), class_index)
        top, left, h, w = central_crop_box(*photo.shape[:2])
        stem = Path(path).stem
        name = stem if stem not in used else f"{stem}-{len(used)}"
        used.add(name)
        out = outdir / f"{name}.gradcam.png"
        with atomic_file(out) as f:
            overlay(photo[top : top + h, left : left + w], e).save(f, format="PNG")
        written.append(out)
    return written
