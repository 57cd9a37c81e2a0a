"""The tf backend: the network as a `tf.Module` built from the one definition, or a SavedModel
that inception-hub wrote, behind the same numpy-in, numpy-out runner as the other engines."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..catalog import ModelSpec
from ..nets import ARCHITECTURES
from ..nets.tf_module import InceptionNet
from .base import Runner

FEATURE_SIGNATURE = "image_feature_vector"


def tf_runner(fn: Callable[[tf.Tensor], tf.Tensor], owner: object = None) -> Callable[[np.ndarray], np.ndarray]:
    """numpy in, numpy out, through one graph traced for any batch and image size. `owner` is
    kept alive with the runner: the object holding the variables the graph reads (a traced
    function keeps only weak references to them)."""
    graph = tf.function(fn, input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])

    def run(x: np.ndarray) -> np.ndarray:
        return graph(tf.constant(x)).numpy()

    run.owner = owner
    return run


def net_runner(net: tf.Module) -> Runner:
    """An InceptionNet (or a fine-tuned classifier with its interface); the feature vector
    comes from the same variables."""
    return Runner(
        tf_runner(lambda x: net(x, training=False), owner=net),
        lambda: tf_runner(lambda x: net.run(x)[1]["global_pool"], owner=net),
        backend="tf",
        net=net,
    )


def weights_runner(spec: ModelSpec, weights: Mapping[str, np.ndarray], threads: int | None = None) -> Runner:
    del threads  # TF sizes its own pools, once per process
    net = InceptionNet(spec.arch, spec.num_classes, weights)
    if not spec.num_classes:
        return net_runner(net)
    final = ARCHITECTURES[spec.arch].final_endpoint
    return replace(net_runner(net), maps=lambda: tf_runner(lambda x: net.run(x)[1][final], owner=net))


def saved_model_runner(path: str | Path) -> Runner:
    """A TF2 SavedModel written by `export` or `finetune`: its `__call__`, and the feature vector
    from its `image_feature_vector` signature when it has one. A TF1 Hub module runs its
    inference graph (tag set `{}`) through its `default` signature."""
    if (Path(path) / "tfhub_module.pb").is_file():
        loaded = tf.saved_model.load(str(path), tags=[])
        main = loaded.signatures["default"]
        features = loaded.signatures[FEATURE_SIGNATURE]
        return Runner(
            tf_runner(lambda x: main(images=x)["default"], owner=loaded),
            lambda: tf_runner(lambda x: features(images=x)["default"], owner=loaded),
            backend="tf",
        )
    loaded = tf.saved_model.load(str(path))
    features = None
    if FEATURE_SIGNATURE in loaded.signatures:
        signature = loaded.signatures[FEATURE_SIGNATURE]
        features = lambda: tf_runner(lambda x: signature(images=x)["default"], owner=loaded)  # noqa: E731
    return Runner(tf_runner(lambda x: loaded(x, training=False), owner=loaded), features, backend="tf")
