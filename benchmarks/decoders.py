"""The decoder study of throughput.py: single-core rates of JPEG decode + central crop + resize with
TF, OpenCV, Pillow (with and without draft mode) and simplejpeg (full size and DCT-scaled), each with
its pixel error against inception-hub's exact TF-Slim preprocessing and, when inception_v1 is
measured, the top-1 agreement of its logits.
"""

from __future__ import annotations

import argparse
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from common import Skip, load_module, log, optional
from engines import CENTRAL_FRACTION
from measure import best_rate, one_core

#: The reference every decoder's pixels and top-1 are compared with.
EXACT = "inception-hub exact (TF decode + TF1 resize)"


def crop_box(height: int, width: int) -> tuple[slice, slice]:
    from inception_hub.images import central_crop_box

    top, left, h, w = central_crop_box(height, width, CENTRAL_FRACTION)
    return slice(top, top + h), slice(left, left + w)


def cv2_resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    rows, cols = crop_box(*image.shape[:2])
    small = cv2.resize(image[rows, cols], (size, size), interpolation=cv2.INTER_LINEAR)
    return small.astype(np.float32) * np.float32(1 / 255)


def pil_resize(image: Any, size: int) -> np.ndarray:
    from PIL import Image

    rows, cols = crop_box(image.height, image.width)
    image = image.convert("RGB").crop((cols.start, rows.start, cols.stop, rows.stop))
    return np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) * np.float32(1 / 255)


def reduced_size(size: int) -> int:
    """Smallest decoded side that still leaves `size` pixels after the central crop."""
    return math.ceil(size / CENTRAL_FRACTION)


def decoders() -> dict[str, Callable[[], Callable[[bytes, int], np.ndarray]]]:
    """Name -> factory of `decode(jpeg_bytes, size) -> float32 [size, size, 3] in [0, 1]`, all with the
    same central crop; a factory raises Skip when its library is missing."""

    def exact() -> Callable:
        from inception_hub.images import load_image

        return lambda data, size: load_image(data, (size, size))

    def tf_image() -> Callable:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)])
        def run(data: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
            image = tf.image.convert_image_dtype(tf.io.decode_jpeg(data, channels=3), tf.float32)
            return tf.image.resize(tf.image.central_crop(image, CENTRAL_FRACTION), tf.stack([size, size]))

        return lambda data, size: run(data, size).numpy()

    def opencv() -> Callable:
        cv2 = optional("cv2", "pip install opencv-python-headless")
        cv2.setNumThreads(1)
        return lambda data, size: cv2_resize(
            cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), size
        )

    def pillow(draft: bool) -> Callable:
        from PIL import Image

        def run(data: bytes, size: int) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as image:
                if draft:  # libjpeg scales by 1/2, 1/4 or 1/8 in the IDCT: far less work
                    image.draft("RGB", (reduced_size(size),) * 2)
                return pil_resize(image, size)

        return run

    def simplejpeg(scaled: bool) -> Callable:
        sj = optional("simplejpeg", "pip install simplejpeg")
        optional("cv2", "pip install opencv-python-headless")
        extra = (lambda size: {"min_height": reduced_size(size), "min_width": reduced_size(size)}) if scaled else None

        def run(data: bytes, size: int) -> np.ndarray:
            return cv2_resize(sj.decode_jpeg(data, colorspace="RGB", **(extra(size) if extra else {})), size)

        return run

    return {
        EXACT: exact,
        "tf.io.decode_jpeg + tf.image.resize": tf_image,
        "OpenCV imdecode + INTER_LINEAR": opencv,
        "Pillow decode + BILINEAR": lambda: pillow(False),
        "Pillow draft (DCT-scaled) + BILINEAR": lambda: pillow(True),
        "simplejpeg (libjpeg-turbo) + cv2": lambda: simplejpeg(False),
        "simplejpeg DCT-scaled + cv2": lambda: simplejpeg(True),
    }


def decode_rate(decode: Callable[[bytes, int], np.ndarray], blobs: list[bytes], size: int, repeat: int) -> dict:
    """Single-core images/s over all `blobs` (already in memory: file reading is not timed)."""
    decode(blobs[0], size)  # imports, tracing
    with one_core() as core:
        rate = best_rate(lambda: sum(decode(b, size) is not None for b in blobs), repeat, 0.0, max_calls=1)
    return {**rate, "core": core}


def decode_accuracy(
    decode: Callable[[bytes, int], np.ndarray], blobs: list[bytes], size: int, reference: dict[str, Any]
) -> dict:
    """Pixel error against the exact preprocessing and, with a model, top-1 agreement of its logits."""
    exact, module, exact_top1 = reference["decode"], reference.get("module"), reference.get("top1")
    worst, means, top1 = 0.0, [], []
    for start in range(0, len(blobs), 32):
        chunk = blobs[start : start + 32]
        ours = np.stack([decode(b, size) for b in chunk])
        diff = np.abs(ours - np.stack([exact(b, size) for b in chunk])) * 255
        worst, means = max(worst, float(diff.max())), [*means, float(diff.mean())]
        if module is not None:
            top1.append(np.argmax(module(np.clip(ours, 0.0, 1.0)), axis=1))
    out = {"max_abs_diff_x255": worst, "mean_abs_diff_x255": float(np.mean(means))}
    if module is not None:
        out["top1_agreement"] = float(np.mean(np.concatenate(top1) == exact_top1))
    return out


def benchmark_decoders(
    sizes: dict[str, int], paths: list[str], v1_checkpoint: Path | None, args: argparse.Namespace
) -> dict:
    """Decode rates and accuracy costs at each model's input size; top-1 agreement with inception_v1's
    logits (at 224) when inception_v1 is among the models."""
    blobs = [Path(p).read_bytes() for p in paths]
    factories = decoders()
    exact = factories[EXACT]()
    results: dict[str, Any] = {}
    for arch, size in sizes.items():
        reference: dict[str, Any] = {"decode": exact}
        if arch == "inception_v1":
            module = load_module(arch, v1_checkpoint, None)  # the fastest exact backend installed
            reference["module"] = module
            reference["top1"] = np.concatenate(
                [
                    np.argmax(module(np.stack([exact(b, size) for b in blobs[i : i + 32]])), 1)
                    for i in range(0, len(blobs), 32)
                ]
            )
            reference["backend"] = module.backend
        rows, skipped = [], {}
        log(f"== decoders at {size}x{size}")
        for name, factory in factories.items():
            try:
                decode = factory()
            except Skip as e:
                skipped[name] = str(e)
                log(f"  {name}: skipped: {e}")
                continue
            row = {"name": name, "per_core": decode_rate(decode, blobs, size, args.repeat)}
            row.update(decode_accuracy(decode, blobs, size, reference))
            rows.append(row)
            agreement = f", top-1 agreement {row['top1_agreement']:.3f}" if "top1_agreement" in row else ""
            rate, worst = row["per_core"]["best"], row["max_abs_diff_x255"]
            log(f"  {name}: {rate:.0f} img/s/core, max diff {worst:.1f}/255{agreement}")
        results[str(size)] = {"rows": rows, "skipped": skipped, "agreement_backend": reference.get("backend")}
    return results
