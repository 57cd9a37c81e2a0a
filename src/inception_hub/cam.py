"""Class activation maps: where in an image the network finds the evidence for a class.

Grad-CAM (`gradcam.py`, on the Keras models) weighs each channel k of the final end point A by
the mean gradient of logit c over A_k. Both networks end in global average pooling and a linear
head (logits = mean(A) W + b), so that gradient is W[k, c] / (h w) everywhere and Grad-CAM at the
final end point is the class activation map of Zhou et al. (https://arxiv.org/abs/1512.04150):
relu(A W[:, c]), scaled to [0, 1]. The engines compute it from their `feature_map` output with
no gradient and no TensorFlow, so the server and `Module.explain` give Grad-CAM's map.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from .errors import InceptionHubError, InputError
from .labels import Prediction, decode_predictions, imagenet_labels
from .nets import NUM_CLASSES


@dataclass(frozen=True)
class Explanation:
    """The class activation map (at the end point's resolution, in [0, 1]), the class it is
    for, and the model's top predictions."""

    heatmap: np.ndarray
    class_index: int
    predictions: list[Prediction]
    label: str = ""  # the class's name


def normalise(cam: np.ndarray) -> np.ndarray:
    """The positive evidence, scaled so that its peak is 1 (all zeros when there is none)."""
    cam = np.maximum(cam, 0.0)
    peak = cam.max()
    return (cam / peak if peak > 0 else cam).astype(np.float32)


def explanation(
    logits: np.ndarray, cam_of: Callable[[int], np.ndarray], class_index: int | None, labels: Sequence[str] | None
) -> Explanation:
    """The Explanation for one image's `logits`: `cam_of(c)` gives class c's unscaled map."""
    if class_index is None:
        class_index = int(np.argmax(logits))
    if not isinstance(class_index, int | np.integer) or not 0 <= class_index < logits.shape[-1]:
        raise InputError(f"class {class_index} is out of range: the model has {logits.shape[-1]} classes")
    if labels is None and logits.shape[-1] != NUM_CLASSES:
        labels = [f"class {i}" for i in range(logits.shape[-1])]
    predictions = decode_predictions(logits[None], top=5, labels=labels)[0]
    label = (labels or imagenet_labels())[int(class_index)]
    return Explanation(normalise(cam_of(int(class_index))), int(class_index), predictions, label)


def from_feature_map(
    feature_map: np.ndarray,
    weights: np.ndarray,
    biases: np.ndarray,
    class_index: int | None = None,
    labels: Sequence[str] | None = None,
) -> Explanation:
    """The map of one image from its final end point [h, w, C] and the head's `weights` [C, K]
    and `biases` [K]. The logits come from the same map (pooled, then the head), so the
    predictions are the model's own up to float rounding."""
    a = np.asarray(feature_map, np.float64)
    w = np.asarray(weights, np.float64).reshape(a.shape[-1], -1)
    logits = a.mean(axis=(0, 1)) @ w + np.asarray(biases, np.float64)
    return explanation(logits.astype(np.float32), lambda c: a @ w[:, c], class_index, labels)


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
    lines = caption(explanation)
    width = max(draw.textlength(line) for line in lines) + 8
    draw.rectangle([0, 0, width, 12 * len(lines) + 6], fill=(0, 0, 0))
    for i, line in enumerate(lines):
        draw.text((4, 3 + 12 * i), line, fill=(255, 255, 255))
    return out


def caption(explanation: Explanation) -> list[str]:
    """The lines written on an overlay: the top 5, and the class mapped when it is not the first."""
    lines = [f"{p.label}  {p.score:.1%}" for p in explanation.predictions]
    if explanation.predictions[0].index != explanation.class_index:
        lines.append(f"map for {explanation.label or f'class {explanation.class_index}'}")
    return lines


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
    explainer: Callable[[np.ndarray, int | None], Explanation],
    image_size: tuple[int, int],
    outdir: Path,
    *,
    class_index: int | None = None,
    on_error: Callable[[str, str], None],
) -> list[Path]:
    """One `<name>.gradcam.png` per readable image in `outdir` (the central crop the network
    sees, with the map and the top-5 labels); unreadable images go to `on_error(path, reason)`.
    `explainer(image, class_index)` is `Module.explain` or a `gradcam.GradCam`."""
    from .atomic import atomic_file
    from .images import central_crop_box, decode_image, preprocess

    outdir.mkdir(parents=True, exist_ok=True)
    written, used = [], set()
    for path in paths:
        try:
            photo = decode_image(path)
        except (InceptionHubError, OSError) as e:
            on_error(path, str(e))
            continue
        e = explainer(preprocess(photo, image_size), class_index)
        top, left, h, w = central_crop_box(*photo.shape[:2])
        stem = Path(path).stem
        name = stem if stem not in used else f"{stem}-{len(used)}"
        used.add(name)
        out = outdir / f"{name}.gradcam.png"
        with atomic_file(out) as f:
            overlay(photo[top : top + h, left : left + w], e).save(f, format="PNG")
        written.append(out)
    return written
