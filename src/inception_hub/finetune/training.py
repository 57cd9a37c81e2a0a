"""The training loop: warm-up of the new head, optional backbone training with precise BN,
early stopping on validation loss, keeping the best weights."""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from ..catalog import resolve
from ..engine.tf import net_runner
from ..module import Module
from ..nets.blocks import block_names, block_of
from ..nets.layers import WEIGHT_DECAY
from ..nets.tf_module import InceptionNet
from ..source import Source
from ..weights import load_weights
from .data import DataError, Dataset, augment, center_crop, load_dataset, split
from .model import Classifier, Momentum, restore, save, snapshot
from .result import FineTuneResult

BACKBONE_LR_SCALE = 0.1
HEAD_WARMUP_EPOCHS = 1
DEFAULT_LEARNING_RATE = 0.01
#: A slow BatchNorm for small datasets; precise BN (recalibrate_bn) keeps inference right.
DEFAULT_BATCH_NORM_MOMENTUM = 0.997


@dataclass
class Best:
    """The best epoch so far (by validation loss) and the weights it had."""

    loss: float = math.inf
    epoch: int = -1
    weights: list[np.ndarray] = field(default_factory=list)


class Steps:
    """The compiled steps of one run: training, evaluation and BatchNorm statistics."""

    def __init__(self, net: Classifier, variables: list[tf.Variable], optimizer: Momentum, size: int, momentum: float):
        self.net, self.size = net, size
        momentum_t = tf.constant(momentum, tf.float32)

        @tf.function(reduce_retracing=True)
        def train(images, labels, step_seed, whole: bool):
            # whole=False trains the head alone: the backbone's gradients stop at the features.
            images = augment(images, size, step_seed)
            with tf.GradientTape() as tape:
                logits, _ = net.run(images, training=True, batch_norm_momentum=momentum_t, train_backbone=whole)
                loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
                decay = net.regularization_losses() if whole else [WEIGHT_DECAY * tf.nn.l2_loss(net.kernel)]
                total = loss + tf.add_n(decay)
            optimizer.apply(tape.gradient(total, variables))
            return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))

        @tf.function(reduce_retracing=True)
        def bn_stats(images, m):
            net.backbone.run(center_crop(images, size), training=True, batch_norm_momentum=m, frozen=net.frozen)
            return tf.constant(0.0), tf.constant(0.0)

        @tf.function(reduce_retracing=True)
        def evaluate(images, labels):
            logits = net(center_crop(images, size))
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
            return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, 1), labels), tf.float32))

        self.train, self.bn_stats, self.evaluate = train, bn_stats, evaluate

    def recalibrate(self, indices: np.ndarray, batch_size: int, data: Dataset) -> None:
        """Precise BN: set each moving mean and variance to the average of its batch statistics
        over the training images under the current weights (momentum k/(k+1) at batch k)."""
        step = lambda i, x, y: self.bn_stats(x, tf.constant(i / (i + 1), tf.float32))  # noqa: E731
        run_epoch(indices, batch_size, data, step, False, "")


def train(
    data_dir: str | os.PathLike,
    model: str = "inception_v1",
    output: str | os.PathLike | None = None,
    *,
    epochs: int = 10,
    batch_size: int = 16,
    learning_rate: float | None = None,
    fine_tune_backbone: bool = False,
    batch_norm_momentum: float = DEFAULT_BATCH_NORM_MOMENTUM,
    validation_split: float = 0.2,
    image_size: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    patience: int = 3,
    recalibrate_bn: bool = True,
    train_from: str | None = None,
    seed: int = 0,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> FineTuneResult:
    """Train a classifier on DATA_DIR's class folders; save it to `output` if given.

    `train_from` (an end point such as "Mixed_5b") trains the backbone's blocks from there up with
    the head, and leaves the blocks below it exactly as they were (BatchNorm statistics included)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    base_spec = resolve(model)
    spec = base_spec.with_kind("feature_vector")
    trained_blocks = _blocks_from(spec.arch, train_from)
    fine_tune_backbone = fine_tune_backbone or train_from is not None
    size = image_size or spec.image_size[0]
    if not 0.0 <= validation_split < 1.0:
        raise DataError(f"validation split must be in [0, 1), got {validation_split}")
    data = load_dataset(data_dir, size, spec.card.central_fraction)
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
    net.frozen = frozenset(block_names(spec.arch)) - trained_blocks
    lr = learning_rate if learning_rate is not None else DEFAULT_LEARNING_RATE
    head = net.head_variables()
    body = [
        backbone.slim_variables[s.name]
        for s in backbone.specs
        if fine_tune_backbone and s.trainable and block_of(s.name) in trained_blocks
    ]
    # The pretrained network moves at a tenth of the new head's rate, so the head's early, noisy
    # gradients do not wash out the features it is learning to read.
    optimizer = Momentum(head + body, [lr] * len(head) + [lr * BACKBONE_LR_SCALE] * len(body))
    steps = Steps(net, head + body, optimizer, size, batch_norm_momentum)

    history: dict[str, list[float]] = {"loss": [], "accuracy": [], "val_loss": [], "val_accuracy": []}
    best = Best(weights=snapshot(net))
    rng = np.random.default_rng(seed)
    stopped = "completed"
    try:
        for epoch in range(epochs):
            # With the backbone, a first epoch trains the new head alone: its early gradients,
            # still random, would otherwise push the pretrained features around.
            whole = fine_tune_backbone and (epoch >= HEAD_WARMUP_EPOCHS or epochs <= HEAD_WARMUP_EPOCHS)

            def step(i, x, y, epoch=epoch, whole=whole):
                return steps.train(x, y, tf.constant([seed, epoch * 100003 + i], tf.int64), whole)

            order = rng.permutation(train_idx)
            loss, acc = run_epoch(order, batch_size, data, step, progress, f"epoch {epoch + 1}/{epochs}")
            if whole and recalibrate_bn:
                steps.recalibrate(train_idx, batch_size, data)
            eval_idx = val_idx if len(val_idx) else train_idx
            val_loss, val_acc = run_epoch(eval_idx, batch_size, data, lambda i, x, y: steps.evaluate(x, y), False, "")
            for key, value in zip(history, (loss, acc, val_loss, val_acc), strict=True):
                history[key].append(value)
            log(
                f"epoch {epoch + 1}/{epochs}: loss {loss:.4f} acc {acc:.3f}, "
                f"val_loss {val_loss:.4f} val_acc {val_acc:.3f}"
            )
            if val_loss < best.loss:
                best = Best(val_loss, epoch, snapshot(net))
            elif epoch - best.epoch >= patience:
                stopped = f"early stopping: no better validation loss for {patience} epochs"
                break
    except KeyboardInterrupt:
        stopped = "interrupted: saved the best model so far"
    log(f"{stopped}; best epoch {best.epoch + 1} (val_loss {best.loss:.4f})")
    restore(net, best.weights)

    cls_spec = spec.with_kind("classification")
    source = Source(cls_spec, f"{model}+finetuned", tuple(data.classes), (size, size))
    result = FineTuneResult(
        Module.from_runner(source, net_runner(net)), history, data.classes, best.epoch + 1, stopped, data.skipped
    )
    if output is not None:
        settings = dict(
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=lr,
            fine_tune_backbone=fine_tune_backbone,
            train_from=train_from,
            batch_norm_momentum=batch_norm_momentum,
            validation_split=validation_split,
            seed=seed,
            base_model=base_spec.handle,
        )
        save(result, net, cls_spec, size, output, settings)
    return result


def _blocks_from(arch: str, train_from: str | None) -> frozenset[str]:
    """The backbone blocks to train: all of them, or those from end point `train_from` up."""
    names = block_names(arch)
    names = names[: names.index("global_pool")]
    if train_from is None:
        return frozenset(names)
    if train_from not in names:
        raise DataError(f"--train-from takes an end point of {arch}: {', '.join(names)}; got {train_from!r}")
    return frozenset(names[names.index(train_from) :])


def run_epoch(indices, batch_size, data: Dataset, step, progress: bool, desc: str) -> tuple[float, float]:
    """One pass of `step(i, images, labels) -> (loss, accuracy)` over `indices`; the means."""
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
