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

import numpy as np

from .errors import InputError
from .labels import Prediction, decode_predictions
from .nets import NUM_CLASSES


@dataclass(frozen=True)
class Explanation:
    """The class activation map (at the end point's resolution, in [0, 1]), the class it is
    for, and the model's top predictions."""

    heatmap: np.ndarray
    class_index: int
    predictions: list[Prediction]


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
    return Explanation(normalise(cam_of(int(class_index))), int(class_index), predictions)


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
