"""Versions 1 and 3: the TF1 Hub module format (FORMAT_V3).

A SavedModel with two graphs built from the same network definition: tag set `{}` (inference)
and `{"train"}` (BatchNorm on batch statistics, its moving-average updates in UPDATE_OPS, dropout
on). Each has the signatures `default`, `image_classification` (classification modules only) and
`image_feature_vector`, with input `images` (`[None, 224, 224, 3]` for version 1, any size for
version 3) and output `default` (logits or features) plus the main end points, e.g.
`InceptionV1/Mixed_5c`. Beside it, `tfhub_module.pb` (a ModuleDef) and, in every graph, the
`image_module_info` attachment holding the default image size. The graphs use only the
collections tensorflow_hub's `hub.Module` accepts, so the real `hub.Module` (tensorflow_hub 0.15
on TF 2.15) loads them, as it loaded tfhub.dev's.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import tensorflow as tf

from ..catalog import ModelSpec, signatures
from ..nets import ARCHITECTURES, variable_specs
from ..nets.layers import FEATURES, LOGITS, WEIGHT_DECAY
from ..nets.tf_builder import TFBuilder
from . import proto

ATTACHMENTS_COLLECTION = "hub_module_attachments"
#: The graph collections tensorflow_hub's hub.Module (0.15, its last release) accepts in a module;
#: it raises "Unsupported collections in graph" for any other.
HUB_MODULE_COLLECTIONS = frozenset(
    {
        "variables",
        "trainable_variables",
        "model_variables",
        "table_initializer",
        "update_ops",
        "regularization_losses",
        "asset_filepaths",
        "cond_context",
        "while_context",
        ATTACHMENTS_COLLECTION,
    }
)


def _build_graph(spec: ModelSpec, training: bool) -> tuple[tf.Graph, dict, dict, dict]:
    """One graph: placeholders, variables, outputs. Returns (graph, variables, inputs, outputs)."""
    from .. import nets

    graph = tf.Graph()
    h, w = spec.image_size if not spec.variable_size else (None, None)
    with graph.as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, h, w, 3], name="images")
        variables = {}
        for s in variable_specs(spec.arch, include_top=spec.num_classes is not None):
            # As TF-Slim's model variables: every one in MODEL_VARIABLES, the weights also in
            # TRAINABLE_VARIABLES. No other collection: hub.Module refuses a graph with one it
            # does not know (MOVING_AVERAGE_VARIABLES among them), see HUB_MODULE_COLLECTIONS.
            collections = [tf.compat.v1.GraphKeys.GLOBAL_VARIABLES, tf.compat.v1.GraphKeys.MODEL_VARIABLES]
            if s.trainable:
                collections.append(tf.compat.v1.GraphKeys.TRAINABLE_VARIABLES)
            variables[s.name] = tf.compat.v1.get_variable(
                s.name,
                shape=s.shape,
                dtype=tf.float32,
                initializer=tf.compat.v1.zeros_initializer(),
                trainable=s.trainable,
                collections=collections,
                use_resource=True,
            )
            if s.regularized:
                tf.compat.v1.add_to_collection(
                    tf.compat.v1.GraphKeys.REGULARIZATION_LOSSES, WEIGHT_DECAY * tf.nn.l2_loss(variables[s.name])
                )
        b = TFBuilder(variables, training=training)  # the modules' default momentum
        out = nets.build(b, spec.arch, 2.0 * images - 1.0, spec.num_classes)
        scope = ARCHITECTURES[spec.arch].scope
        outputs = {"default": tf.identity(out, name="default")}
        for name, tensor in b.end_points.items():
            outputs[f"{scope}/{name}"] = tensor
        attachment = proto.module_attachment("image_module_info", proto.image_module_info(*spec.image_size))
        graph.add_to_collection(ATTACHMENTS_COLLECTION, attachment)
    return graph, variables, {"images": images}, outputs


def _signature_defs(spec: ModelSpec, inputs: dict, outputs: dict) -> dict:
    info = tf.compat.v1.saved_model.utils.build_tensor_info
    sig = tf.compat.v1.saved_model.signature_def_utils.build_signature_def
    method = tf.compat.v1.saved_model.signature_constants.PREDICT_METHOD_NAME
    ins = {k: info(v) for k, v in inputs.items()}
    scope = ARCHITECTURES[spec.arch].scope
    # The main output is the tensor named "default"; the others read their end point.
    computed = {FEATURES: outputs[f"{scope}/global_pool"]}
    computed[LOGITS if spec.num_classes else FEATURES] = outputs["default"]
    endpoints = {k: info(v) for k, v in outputs.items() if k != "default"}
    return {
        name: sig(ins, {s.output_key: info(computed[s.output]), **endpoints}, method)
        for name, s in signatures(spec.kind, tf1=True).items()
    }


def export_tf1_hub(spec: ModelSpec, weights: Mapping[str, np.ndarray], outdir: Path) -> None:
    verbosity = tf.compat.v1.logging.get_verbosity()
    tf.compat.v1.logging.set_verbosity(tf.compat.v1.logging.ERROR)  # building TF1 graphs on purpose
    try:
        _export(spec, weights, outdir)
    finally:
        tf.compat.v1.logging.set_verbosity(verbosity)


def _export(spec: ModelSpec, weights: Mapping[str, np.ndarray], outdir: Path) -> None:
    builder = tf.compat.v1.saved_model.Builder(str(outdir))
    graph, variables, inputs, outputs = _build_graph(spec, training=False)
    with graph.as_default(), tf.compat.v1.Session(graph=graph) as sess:
        # Weights go in through feeds: as constants they would be copied into saved_model.pb.
        feeds = {name: tf.compat.v1.placeholder(tf.float32, var.shape) for name, var in variables.items()}
        sess.run(
            [var.assign(feeds[name]) for name, var in variables.items()],
            {feeds[name]: np.asarray(weights[name], np.float32) for name in variables},
        )
        builder.add_meta_graph_and_variables(
            sess,
            [],
            signature_def_map=_signature_defs(spec, inputs, outputs),
            strip_default_attrs=True,
        )
    graph, _, inputs, outputs = _build_graph(spec, training=True)
    with graph.as_default():
        builder.add_meta_graph(
            ["train"], signature_def_map=_signature_defs(spec, inputs, outputs), strip_default_attrs=True
        )
    builder.save()
    (outdir / "tfhub_module.pb").write_bytes(proto.module_def_v3())
