"""Training data: one folder of images per class, decoded once, split and augmented."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..batch import decode
from ..errors import InceptionHubError, InputError
from ..files import is_hidden, is_image_name, walk
from ..labels import check_label

BRIGHTNESS_DELTA = 0.2


class DataError(InceptionHubError):
    """A data directory that cannot be trained on."""


@dataclass
class Dataset:
    """Decoded images (uint8, size / central_fraction square), their labels and the class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan(data_dir: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """Class folders (sorted) and (file, class index) pairs. Only image extensions are taken."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory; expected one subfolder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not is_hidden(p))
    for name in classes:  # refused before any training: they would split the labels file
        try:
            check_label(name)
        except InputError as e:
            raise DataError(f"{root / name}: {e}") from None
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a classifier needs at least 2 (one per class)")
    files = [(path, index) for index, name in enumerate(classes) for path in walk(root / name, images_only=False)]
    return classes, files


def load_dataset(
    data_dir: str | os.PathLike, image_size: int, central_fraction: float, workers: int | None = None
) -> Dataset:
    """Decode every image once, resized to image_size / central_fraction: the training crops then
    cover the central part evaluation keeps (the card's `central_fraction`). Unreadable or
    unsupported files are skipped (and listed in `skipped`); a class left without images is an
    error."""
    classes, files = scan(data_dir)
    base = round(image_size / central_fraction)

    def read(item: tuple[str, int]) -> np.ndarray | str:
        path, _ = item
        if not is_image_name(path):
            return "unsupported file type"
        img = decode(path, (base, base), central_fraction=None)  # the random crop comes later
        return img if isinstance(img, str) else np.round(img * 255).astype(np.uint8)

    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(read, files))
    images, labels, skipped = [], [], []
    for (path, label), img in zip(files, decoded, strict=True):
        if isinstance(img, str):
            skipped.append((path, img))
        else:
            images.append(img)
            labels.append(label)
    counts = np.bincount(np.array(labels, dtype=np.int64), minlength=len(classes))
    empty = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if empty:
        raise DataError(f"no usable images for class(es) {', '.join(empty)} in {data_dir}")
    return Dataset(np.stack(images), np.array(labels, np.int64), classes, skipped)


def split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split: each class contributes `fraction` of its images (at least one, when it
    has two or more) to validation."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n = int(round(len(idx) * fraction))
        if fraction > 0 and len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        val.extend(idx[:n])
        train.extend(idx[n:])
    return np.array(sorted(train), np.int64), np.array(sorted(val), np.int64)


def augment(images: tf.Tensor, size: int, seed) -> tf.Tensor:
    """Random crop of `size` from the larger stored image, horizontal flip, brightness."""
    n = tf.shape(images)[0]
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 3)
    crop = tf.image.stateless_random_crop(images, tf.stack([n, size, size, 3]), seeds[0])
    flip = tf.random.stateless_uniform([n, 1, 1, 1], seeds[1]) < 0.5
    crop = tf.where(flip, tf.reverse(crop, axis=[2]), crop)
    delta = tf.random.stateless_uniform([n, 1, 1, 1], seeds[2], -BRIGHTNESS_DELTA, BRIGHTNESS_DELTA)
    return tf.clip_by_value(crop + delta, 0.0, 1.0)


def center_crop(images: tf.Tensor, size: int) -> tf.Tensor:
    h = tf.shape(images)[1]
    off = (h - size) // 2
    return images[:, off : off + size, off : off + size, :]
