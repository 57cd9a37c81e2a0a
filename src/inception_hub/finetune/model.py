"""The trained model: a new head on an Inception backbone, its optimizer, and how it is saved."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..catalog import ModelSpec
from ..labels import labels_text
from ..nets import ARCHITECTURES
from ..nets.layers import BATCH_NORM_MOMENTUM, DROPOUT_KEEP_PROB, WEIGHT_DECAY
from ..nets.tf_module import InceptionNet
from .result import FineTuneResult


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
        #: Backbone blocks left as they are (fine-tuning from an end point): inference mode.
        self.frozen: frozenset[str] = frozenset()

    def run(self, images, training=False, batch_norm_momentum=BATCH_NORM_MOMENTUM, train_backbone=True):
        features = self.backbone.run(
            images, training=training and train_backbone, batch_norm_momentum=batch_norm_momentum, frozen=self.frozen
        )[0]
        if not train_backbone:
            features = tf.stop_gradient(features)
        x = tf.nn.dropout(features, rate=1.0 - DROPOUT_KEEP_PROB) if training else features
        logits = tf.matmul(x, self.kernel) + self.bias
        return logits, {"global_pool": features, "Logits": logits}

    def __call__(self, images, training=False, batch_norm_momentum=BATCH_NORM_MOMENTUM):
        return self.run(images, training, batch_norm_momentum)[0]

    def head_variables(self) -> list[tf.Variable]:
        return [self.kernel, self.bias]

    def regularization_losses(self) -> list[tf.Tensor]:
        return [*self.backbone.regularization_losses(), WEIGHT_DECAY * tf.nn.l2_loss(self.kernel)]


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
    from ..atomic import atomic_dir
    from ..export.tf2 import save_tf2
    from ..metadata import write_metadata

    with atomic_dir(output) as staging:
        save_tf2(net, spec, staging, result.classes, (size, size))
        write_metadata(spec, staging, result.classes, image_size=(size, size), finetuned=True)
        (staging / "labels.txt").write_text(labels_text(result.classes), encoding="utf-8")
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
