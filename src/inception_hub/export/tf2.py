"""Versions 4 and 5: TF2 reusable SavedModels, as `hub.KerasLayer` and `hub.load` expect.

The object has `__call__(images, training=False, batch_norm_momentum=BATCH_NORM_MOMENTUM)` traced for both
values of `training` (images `[None, None, None, 3]` float32 in [0, 1]), and the attributes
`variables`, `trainable_variables` (no BatchNorm moving statistics) and
`regularization_losses` (one callable: L2 4e-5 on the weights, as TF-Slim trained).

Signatures (version 5; version 4 was published without any):
- `serving_default`: input `images`, output `logits` or `feature_vector`.
- `image_classification` (classification modules): input `images`, output `default` = logits.
- `image_feature_vector`: input `images`, output `default` = the pooled feature vector.
- `serving_bytes`: input `image_bytes`, encoded photos decoded and preprocessed in the graph
  (see `bytes_signature`); inception-hub's addition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from ..catalog import ModelSpec, Signature
from ..catalog import signatures as catalog_signatures
from ..labels import imagenet_labels
from ..nets.layers import BATCH_NORM_MOMENTUM, LOGITS
from ..nets.tf_module import InceptionNet
from .bytes_signature import BYTES_SIGNATURE, bytes_signature

IMAGES = tf.TensorSpec([None, None, None, 3], tf.float32, name="images")


def build_saved_model_root(net: Any) -> tf.train.Checkpoint:
    """The trackable root object of the SavedModel, with its functions traced.

    `net` is an InceptionNet, or a fine-tuned classifier with the same interface. The root is a
    plain trackable (not a tf.Module, whose `variables` are computed properties that are not
    saved): the reusable SavedModel API reads these as attributes of the restored object."""
    root = tf.train.Checkpoint()
    root.net = net

    @tf.function
    def call(images, training=False, batch_norm_momentum=BATCH_NORM_MOMENTUM):
        return net(images, training=training, batch_norm_momentum=batch_norm_momentum)

    for training in (False, True):
        call.get_concrete_function(IMAGES, training, tf.TensorSpec([], tf.float32))

    @tf.function(input_signature=[])
    def weight_decay():
        return tf.add_n(net.regularization_losses())

    root.__call__ = call
    root.variables = list(net.variables)
    root.trainable_variables = list(net.trainable_variables)
    root.regularization_losses = [weight_decay]
    return root


def signatures(
    root: tf.train.Checkpoint, spec: ModelSpec, labels: Sequence[str] | None = None, size: tuple[int, int] | None = None
) -> dict[str, tf.types.experimental.ConcreteFunction]:
    """Version 5's signatures, and the raw-bytes one at input `size` (default: the network's)
    naming `labels` (default: ImageNet's for a classifier); version 4 was published without any."""
    if spec.version < 5:
        return {}
    net = root.net

    def concrete(sig: Signature) -> tf.types.experimental.ConcreteFunction:
        @tf.function(input_signature=[IMAGES])
        def fn(images):
            out = net(images) if sig.output == LOGITS else net.run(images)[1]["global_pool"]
            return {sig.output_key: out}

        return fn.get_concrete_function()

    out = {name: concrete(sig) for name, sig in catalog_signatures(spec.kind).items()}
    if labels is None and spec.kind == "classification":
        labels = imagenet_labels()
    out[BYTES_SIGNATURE] = bytes_signature(net, size or spec.image_size, labels, spec.card.central_fraction)
    return out


def export_tf2(spec: ModelSpec, weights: Mapping[str, np.ndarray], outdir: Path) -> None:
    save_tf2(InceptionNet(spec.arch, spec.num_classes, weights), spec, outdir)


def save_tf2(
    net: Any, spec: ModelSpec, outdir: Path, labels: Sequence[str] | None = None, size: tuple[int, int] | None = None
) -> None:
    root = build_saved_model_root(net)
    tf.saved_model.save(root, str(outdir), signatures=signatures(root, spec, labels, size))
