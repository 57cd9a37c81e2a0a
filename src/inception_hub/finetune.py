"""Train an image classifier on your own photos from a feature-vector module, as TF-Hub's
`make_image_classifier` did, and save it as a module of its own.

DATA_DIR holds one folder per class. The default trains a new dense head on frozen features;
`fine_tune_backbone=True` trains the whole network, with BatchNorm on batch statistics at the
given momentum and the module's weight decay. After each such epoch the BatchNorm moving
statistics are recomputed on the training images under the new weights (precise BN): on a small
dataset a momentum like 0.997 leaves them far behind the weights, and the model then fails at
inference although it trained well. `recalibrate_bn=False` keeps the plain moving averages.

Training augments with random crops, flips and brightness, stops early on validation loss and
keeps the best weights; a Ctrl-C ends it with the best model so far saved.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tensorflow as tf

from .catalog import ModelSpec, resolve
from .errors import ImageDecodeError, InceptionHubError
from .images import IMAGE_EXTENSIONS, decode_image, preprocess
from .module import Module, tf_runner
from .nets import ARCHITECTURES
from .nets.layers import DROPOUT_KEEP_PROB, WEIGHT_DECAY
from .nets.tf_module import InceptionNet
from .weights import load_weights

#: Training crops are taken from images resized to size / CROP_FRACTION: the crop then covers
#: the same central 87.5% that evaluation preprocessing keeps.
CROP_FRACTION = 0.875
BRIGHTNESS_DELTA = 0.2
BACKBONE_LR_SCALE = 0.1
HEAD_WARMUP_EPOCHS = 1


class DataError(InceptionHubError):
    """A data directory that cannot be trained on."""


@dataclass
class Dataset:
    """Decoded images (uint8, size / CROP_FRACTION square), their labels and the class names."""

    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)


def scan(data_dir: str | os.PathLike) -> tuple[list[str], list[tuple[str, int]]]:
    """Class folders (sorted) and (file, class index) pairs. Only image extensions are taken."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DataError(f"{root} is not a directory; expected one subfolder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise DataError(f"{root} has {len(classes)} class folder(s); a classifier needs at least 2 (one per class)")
    files = []
    for index, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(root / name):
            dirnames.sort()
            files.extend((os.path.join(dirpath, f), index) for f in sorted(filenames) if not f.startswith("."))
    return classes, files


def load_dataset(data_dir: str | os.PathLike, image_size: int, workers: int | None = None) -> Dataset:
    """Decode every image once. Unreadable or unsupported files are skipped (and listed in
    `skipped`); a class left without images is an error."""
    classes, files = scan(data_dir)
    base = round(image_size / CROP_FRACTION)

    def read(item: tuple[str, int]) -> np.ndarray | str:
        path, _ = item
        if Path(path).suffix.lower() not in IMAGE_EXTENSIONS:
            return "unsupported file type"
        try:
            img = preprocess(decode_image(path), (base, base), central_fraction=None)
        except ImageDecodeError as e:
            return e.reason
        return np.round(img * 255).astype(np.uint8)

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


class Classifier(tf.Module):
    """A feature-vector network with a new dense head: the interface of InceptionNet, so the
    same exporter writes it as a TF2 SavedModel."""

    def __init__(self, backbone: InceptionNet, num_classes: int, seed: int) -> None:
        super().__init__(name="classifier")
        self.backbone = backbone
        dim = ARCHITECTURES[backbone.arch].num_features
        limit = math.sqrt(6.0 / (dim + num_classes))  # Glorot uniform
        init = tf.random.stateless_uniform([dim, num_classes], [seed, 1], -limit, limit)
        self.kernel = tf.Variable(init, name="head/kernel")
        self.bias = tf.Variable(tf.zeros([num_classes]), name="head/bias")

    def run(self, images, training=False, batch_norm_momentum=0.99, train_backbone=True):
        features = self.backbone(images, training=training and train_backbone, batch_norm_momentum=batch_norm_momentum)
        if not train_backbone:
            features = tf.stop_gradient(features)
        x = tf.nn.dropout(features, rate=1.0 - DROPOUT_KEEP_PROB) if training else features
        logits = tf.matmul(x, self.kernel) + self.bias
        return logits, {"global_pool": features, "Logits": logits}

    def __call__(self, images, training=False, batch_norm_momentum=0.99):
        return self.run(images, training, batch_norm_momentum)[0]

    def head_variables(self) -> list[tf.Variable]:
        return [self.kernel, self.bias]

    def regularization_losses(self) -> list[tf.Tensor]:
        return [*self.backbone.regularization_losses(), WEIGHT_DECAY * tf.nn.l2_loss(self.kernel)]


@dataclass
class FineTuneResult:
    """The trained model as a loaded Module, its per-epoch history, and what happened."""

    module: Module
    history: dict[str, list[float]]
    classes: list[str]
    best_epoch: int
    stopped: str
    skipped: list[tuple[str, str]]


def train(
    data_dir: str | os.PathLike,
    model: str = "inception_v1",
    output: str | os.PathLike | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 16,
    learning_rate: float | None = None,
    fine_tune_backbone: bool = False,
    batch_norm_momentum: float = 0.997,
    validation_split: float = 0.2,
    image_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    patience: int = 3,
    recalibrate_bn: bool = True,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> FineTuneResult:
    """Train a classifier on DATA_DIR's class folders; save it to `output` if given."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    base_spec = resolve(model)
    spec = dataclasses.replace(base_spec, kind="feature_vector", version=5)
    size = image_size or spec.image_size[0]
    if not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation split must be in [0, 1), got {validation_split}")
    data = load_dataset(data_dir, size)
    for path, reason in data.skipped:
        log(f"warning: skipping {path}: {reason}")
    train_idx, val_idx = split(data.labels, validation_split, seed)
    log(
        f"{len(data.labels)} images in {len(data.classes)} classes ({', '.join(data.classes)}): "
        f"{len(train_idx)} for training, {len(val_idx)} for validation"
        + (f"; skipped {len(data.skipped)} unreadable file(s)" if data.skipped else "")
    )
    tf.random.set_seed(seed)
    backbone = InceptionNet(spec.arch, None, load_weights(spec.arch, checkpoint, progress=progress))
    net = Classifier(backbone, len(data.classes), seed)
    lr = learning_rate if learning_rate is not None else 0.01
    head = net.head_variables()
    body = [v for v in backbone.trainable_variables] if fine_tune_backbone else []
    variables = head + body
    # The pretrained network moves at a tenth of the new head's rate, so the head's early, noisy
    # gradients do not wash out the features it is learning to read.
    optimizer = Momentum(variables, [lr] * len(head) + [lr * BACKBONE_LR_SCALE] * len(body))
    momentum = tf.constant(batch_norm_momentum, tf.float32)

    @tf.function(reduce_retracing=True)
    def train_step(images, labels, step_seed, whole: bool):
        # whole=False trains the head alone: the backbone's gradients stop at the features.
        images = augment(images, size, step_seed)
        with tf.GradientTape() as tape:
            logits, _ = net.run(images, training=True, batch_norm_momentum=momentum, train_backbone=whole)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            decay = net.regularization_losses() if whole else [WEIGHT_DECAY * tf.nn.l2_loss(net.kernel)]
            total = loss + tf.add_n(decay)
        optimizer.apply(tape.gradient(total, variables))
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))

    @tf.function(reduce_retracing=True)
    def bn_stats_step(images, m):
        net.backbone(center_crop(images, size), training=True, batch_norm_momentum=m)
        return tf.constant(0.0), tf.constant(0.0)

    def recalibrate() -> None:
        """Precise BN: set each moving mean and variance to the average of its batch statistics
        over the training images under the current weights (momentum k/(k+1) at batch k)."""
        run_epoch(
            train_idx,
            batch_size,
            data,
            lambda i, x, y: bn_stats_step(x, tf.constant(i / (i + 1), tf.float32)),
            False,
            "",
        )

    @tf.function(reduce_retracing=True)
    def eval_step(images, labels):
        logits = net(center_crop(images, size))
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))

    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best = (math.inf, -1, snapshot(net))
    rng = np.random.default_rng(seed)
    stopped = "completed"
    try:
        for epoch in range(epochs):
            order = rng.permutation(train_idx)
            # With the backbone, a first epoch trains the new head alone: its early gradients,
            # still random, would otherwise push the pretrained features around.
            whole = fine_tune_backbone and (epoch >= HEAD_WARMUP_EPOCHS or epochs <= HEAD_WARMUP_EPOCHS)

            def step(i, x, y, epoch=epoch, whole=whole):
                return train_step(x, y, tf.constant([seed, epoch * 100003 + i], tf.int64), whole)

            loss, acc = run_epoch(order, batch_size, data, step, progress, f"epoch {epoch + 1}/{epochs}")
            if whole and recalibrate_bn:
                recalibrate()
            eval_idx = val_idx if len(val_idx) else train_idx
            val_loss, val_acc = run_epoch(eval_idx, batch_size, data, lambda i, x, y: eval_step(x, y), False, "")
            for key, value in zip(history, (loss, acc, val_loss, val_acc), strict=True):
                history[key].append(value)
            log(
                f"epoch {epoch + 1}/{epochs}: loss {loss:.4f} acc {acc:.3f}, "
                f"val_loss {val_loss:.4f} val_acc {val_acc:.3f}"
            )
            if val_loss < best[0]:
                best = (val_loss, epoch, snapshot(net))
            elif epoch - best[1] >= patience:
                stopped = f"early stopping: no better validation loss for {patience} epochs"
                break
    except KeyboardInterrupt:
        stopped = "interrupted: saved the best model so far"
    log(f"{stopped}; best epoch {best[1] + 1} (val_loss {best[0]:.4f})")
    restore(net, best[2])
    cls_spec = dataclasses.replace(spec, kind="classification")
    module = Module(
        cls_spec,
        tf_runner(lambda x: net(x, training=False)),
        labels=tuple(data.classes),
        handle=f"{model}+finetuned",
        image_size=(size, size),
    )
    module.net = net
    result = FineTuneResult(module, history, data.classes, best[1] + 1, stopped, data.skipped)
    if output is not None:
        save(
            result,
            net,
            cls_spec,
            size,
            output,
            dict(
                epochs=epochs,
                batch_size=batch_size,
                learning_rate=lr,
                fine_tune_backbone=fine_tune_backbone,
                batch_norm_momentum=batch_norm_momentum,
                validation_split=validation_split,
                seed=seed,
                base_model=base_spec.handle,
            ),
        )
    return result


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


def run_epoch(indices, batch_size, data: Dataset, step, progress: bool, desc: str) -> tuple[float, float]:
    from tqdm.auto import tqdm

    total_loss = total_acc = 0.0
    n = 0
    batches = range(0, len(indices), batch_size)
    with tqdm(batches, desc=desc, unit="batch", disable=not progress or None, leave=False, file=sys.stderr) as bar:
        for i, start in enumerate(bar):
            idx = indices[start : start + batch_size]
            x = tf.constant(data.images[idx].astype(np.float32) / 255.0)
            loss, acc = step(i, x, tf.constant(data.labels[idx]))
            total_loss += float(loss) * len(idx)
            total_acc += float(acc) * len(idx)
            n += len(idx)
            bar.set_postfix(loss=f"{total_loss / n:.4f}", acc=f"{total_acc / n:.3f}")
    return total_loss / max(n, 1), total_acc / max(n, 1)


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


class Momentum:
    """SGD with momentum 0.9 (make_image_classifier's optimizer), on plain tf.Variables."""

    def __init__(self, variables: list[tf.Variable], learning_rates: list[float], momentum: float = 0.9) -> None:
        self.variables = variables
        self.lrs = learning_rates
        self.momentum = momentum
        self.slots = [tf.Variable(tf.zeros_like(v), trainable=False) for v in variables]

    def apply(self, grads: list[tf.Tensor]) -> None:
        for v, s, lr, g in zip(self.variables, self.slots, self.lrs, grads, strict=True):
            if g is None:
                continue
            s.assign(self.momentum * s + g)
            v.assign_sub(lr * s)


def snapshot(net: tf.Module) -> list[np.ndarray]:
    return [v.numpy() for v in net.variables]


def restore(net: tf.Module, values: list[np.ndarray]) -> None:
    for v, value in zip(net.variables, values, strict=True):
        v.assign(value)


def save(result: FineTuneResult, net: Classifier, spec: ModelSpec, size: int, output, settings: dict) -> Path:
    """OUTDIR: the TF2 SavedModel, `labels.txt`, `metrics.json`; written whole or not at all."""
    from .atomic import atomic_dir
    from .export import write_metadata
    from .export.tf2 import save_tf2

    with atomic_dir(output) as staging:
        save_tf2(net, spec, staging)
        write_metadata(spec, staging, result.classes, image_size=(size, size), finetuned=True)
        (staging / "labels.txt").write_text("\n".join(result.classes) + "\n")
        metrics = {
            "classes": result.classes,
            "best_epoch": result.best_epoch,
            "stopped": result.stopped,
            "history": result.history,
            "val_accuracy": result.history["val_accuracy"][result.best_epoch - 1] if result.history["loss"] else None,
            "skipped_files": [{"path": p, "reason": r} for p, r in result.skipped],
            "settings": settings,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n")
    return Path(output)
