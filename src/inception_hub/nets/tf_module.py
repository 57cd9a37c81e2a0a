"""A network and its variables as a `tf.Module`: the TensorFlow form every TF path builds on."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from . import build, variable_specs
from .layers import BATCH_NORM_MOMENTUM, WEIGHT_DECAY
from .tf_builder import TFBuilder


class InceptionNet(tf.Module):
    """One architecture with variables named as in the TF-Slim checkpoint.

    Takes images in [0, 1] and maps them to [-1, 1] itself, as the TF-Hub modules did. Returns
    logits, or the pooled feature vector when `num_classes` is None."""

    def __init__(self, arch: str, num_classes: int | None, weights: Mapping[str, np.ndarray]) -> None:
        super().__init__(name=arch)
        self.arch = arch
        self.num_classes = num_classes
        self.specs = variable_specs(arch, include_top=num_classes is not None)
        # A dict keyed by the checkpoint names: the SavedModel keeps them as its object paths.
        self.slim_variables = {
            s.name: tf.Variable(weights[s.name], trainable=s.trainable, name=s.name) for s in self.specs
        }

    def __call__(
        self, images: tf.Tensor, training: bool = False, batch_norm_momentum: float = BATCH_NORM_MOMENTUM
    ) -> tf.Tensor:
        return self.run(images, training, batch_norm_momentum)[0]

    def run(
        self,
        images: tf.Tensor,
        training: bool = False,
        batch_norm_momentum: float = BATCH_NORM_MOMENTUM,
        frozen: frozenset[str] = frozenset(),
    ) -> tuple[tf.Tensor, dict[str, tf.Tensor]]:
        """Output and all end points (`Conv2d_1a_7x7`, ..., `global_pool`, `Logits`); the blocks
        in `frozen` run in inference mode even when training."""
        b = TFBuilder(self.slim_variables, training=training, batch_norm_momentum=batch_norm_momentum, frozen=frozen)
        out = build(b, self.arch, 2.0 * images - 1.0, self.num_classes)
        return out, b.end_points

    def regularization_losses(self) -> list[tf.Tensor]:
        """L2 weight decay on conv and fully connected weights, as TF-Slim trained with."""
        return [WEIGHT_DECAY * tf.nn.l2_loss(self.slim_variables[s.name]) for s in self.specs if s.regularized]
