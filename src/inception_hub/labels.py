"""The 1001 ImageNet class names and turning logits into ranked predictions."""

from __future__ import annotations

import functools
from importlib import resources
from typing import NamedTuple

import numpy as np

from .errors import InputError

#: sha256 of TensorFlow's official ImageNetLabels.txt, which the shipped file reproduces.
LABELS_SHA256 = "310bbb36daf4dec629a836332d9a400ae883b435d4b68c3885b35a26f90aa079"


@functools.cache
def imagenet_labels() -> tuple[str, ...]:
    """ "background" then the 1000 ILSVRC-2012 classes in wnid order (first WordNet lemma each)."""
    text = resources.files("inception_hub").joinpath("data/ImageNetLabels.txt").read_text("utf-8")
    return tuple(text.split("\n"))


@functools.cache
def imagenet_wnids() -> tuple[str, ...]:
    """The WordNet id of each of the 1001 classes: "background" then `n01440764` ... (the
    ILSVRC-2012 synsets in TF-Slim's order; the shipped list comes from timm's
    `imagenet_synsets.txt`)."""
    text = resources.files("inception_hub").joinpath("data/imagenet_wnids.txt").read_text("utf-8")
    return ("background", *text.split())


class Prediction(NamedTuple):
    index: int
    label: str
    score: float


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def decode_predictions(
    logits: np.ndarray, top: int = 5, labels: tuple[str, ...] | list[str] | None = None
) -> list[list[Prediction]]:
    """Top-`top` (class index, label, softmax probability) for each row of `logits`."""
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim == 1:
        logits = logits[None]
    labels = tuple(labels) if labels is not None else imagenet_labels()
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise InputError(
            f"decode_predictions expects logits of shape [N, {len(labels)}], got {list(logits.shape)}; "
            "pass the output of a classification module, not a feature vector"
        )
    if top < 1:
        raise InputError(f"top must be at least 1, got {top}")
    top = min(top, len(labels))
    probs = softmax(logits)
    best = np.argsort(-logits, axis=1, kind="stable")[:, :top]
    return [[Prediction(int(i), labels[i], float(p[i])) for i in row] for p, row in zip(probs, best, strict=True)]
