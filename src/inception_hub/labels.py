"""The 1001 ImageNet class names and turning logits into ranked predictions."""

from __future__ import annotations

import functools
from collections.abc import Sequence
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


#: Characters that end a line for some reader of a labels file (Python's str.splitlines, text
#: editors, TF's line readers): a class name holding one would split into two lines.
_LINE_BREAKS = frozenset("\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029")


def check_label(name: str) -> str:
    """A class name that a labels file (one name a line) holds safely, or InputError naming it."""
    if not name.strip() or _LINE_BREAKS & set(name):
        raise InputError(
            f"class name {name!r} is empty or holds a line break (\\n, \\r, U+2028, ...), which would split "
            "the labels file; rename it"
        )
    return name


def labels_text(names: Sequence[str]) -> str:
    """A labels file's text: one checked name a line."""
    return "".join(check_label(n) + "\n" for n in names)


def parse_labels(text: str, expected: int | None = None) -> list[str]:
    """A labels file's names (split on newlines only, as written); `expected` is the model's
    output width, which the count must equal."""
    names = text.removesuffix("\n").split("\n") if text else []
    if expected is not None and len(names) != expected:
        raise InputError(f"the labels file has {len(names)} names for {expected} outputs; it is damaged: export again")
    return names


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
