"""Where a module is on disk, and what it holds: tensorflow_hub's `resolve` and `load`, offline.

`resolve(handle)` writes the module tfhub.dev published for a handle (TF1 Hub format for /1 and
/3, a TF2 SavedModel for /4 and /5) from the cached weights, once, into
`$INCEPTION_HUB_CACHE/hub/<handle>/<weights digest>/`, and returns that folder; a folder written
by `inception-hub export` is its own answer. Nothing here imports TensorFlow until a module is
built or loaded.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..export import export
from ..metadata import read_metadata
from ..nets import variable_specs
from ..source import Source, resolve_source
from ..weights import cache_lock, folder, is_cached, load_weights, provenance, read_checkpoint

#: A TF1 Hub module has this file beside its saved_model.pb (tensorflow_hub's own test).
MODULE_DEF = "tfhub_module.pb"


def module_source(handle: str | os.PathLike) -> Source:
    """What `handle` names (any spelling `inception_hub.load` takes, or an export folder), refusing
    what is not one of these modules' formats."""
    source = resolve_source(handle)
    if source.model_file is not None:
        raise InputError(
            f"{source.name} is an exported {Path(source.model_file).suffix.lstrip('.')} model; "
            "the TF-Hub API takes a handle or a folder exported as saved_model or tf1_hub"
        )
    if source.saved_model is not None and read_metadata(source.saved_model).get("finetuned"):
        raise InputError(
            f"{source.name} is a fine-tuned model with its own classes; load it with inception_hub.load(...) "
            "or keras.layers.TFSMLayer(folder, call_endpoint='serving_default')"
        )
    return source


def resolve(handle: str | os.PathLike) -> str:
    """The local folder of the module `handle` names, built the first time (as tensorflow_hub's
    `hub.resolve` returns its download folder)."""
    source = module_source(handle)
    if source.saved_model is not None:
        return os.fspath(handle)
    spec = source.spec
    digest = weights_digest(spec.arch)
    out = folder("hub") / spec.handle / digest[:16]
    if not (out / "saved_model.pb").is_file():
        # The same lock the hub server takes to build this module: one build across processes.
        with cache_lock(f"hub-{spec.arch}-{spec.kind}-{spec.version}"):
            if not (out / "saved_model.pb").is_file():
                export(spec, out, weights=load_weights(spec.arch, progress=False), overwrite=True, progress=False)
    return str(out)


def weights_digest(arch: str) -> str:
    """Which cached weights modules of `arch` are built from: recorded beside them when they were
    cached (so the file is not read again), else read (and, online, downloaded first)."""
    recorded = (provenance(arch) or {}).get("weights_digest") if is_cached(arch) else None
    return recorded or load_weights(arch, progress=False).digest


def is_tf1_module(path: str | os.PathLike) -> bool:
    return (Path(path) / MODULE_DEF).is_file()


def load(handle: str | os.PathLike, tags=None, options=None):
    """`tf.saved_model.load` of the resolved module, as tensorflow_hub's `hub.load`: a TF1 Hub
    module loads its inference graph (tags `[]`) unless `tags` say otherwise, and answers through
    `.signatures`; a TF2 module is callable, with `variables`, `trainable_variables` and
    `regularization_losses`."""
    import tensorflow as tf

    path = resolve(handle)
    if tags is None and is_tf1_module(path):
        tags = []
    return tf.compat.v1.saved_model.load_v2(path, tags=tags, options=options)


def folder_weights(source: Source, include_top: bool) -> Mapping[str, np.ndarray]:
    """The network's variables (TF-Slim names) held by an export folder, checked against the
    definition: a TF1 module stores them by name, a TF2 one by its object graph."""
    path = Path(source.saved_model) / "variables" / "variables"
    values = read_checkpoint(path) if is_tf1_module(source.saved_model) else _object_graph_variables(str(path))
    wanted = variable_specs(source.spec.arch, include_top=include_top)
    bad = [s.name for s in wanted if s.name not in values or tuple(np.shape(values[s.name])) != s.shape]
    if bad:
        raise InputError(
            f"{source.name} does not hold the {source.spec.arch} variables it should ({len(bad)} missing or "
            f"of another shape, e.g. {bad[0]}); export the module again"
        )
    return {s.name: values[s.name] for s in wanted}


def _object_graph_variables(prefix: str) -> dict[str, np.ndarray]:
    """A TF2 export's variables by the names the network gave them (its `slim_variables` dict)."""
    try:
        import tensorflow as tf
        from tensorflow.core.protobuf import trackable_object_graph_pb2
    except ImportError:
        raise InputError("reading a TF2 SavedModel's weights needs TensorFlow: pip install tensorflow") from None
    reader = tf.train.load_checkpoint(prefix)
    graph = trackable_object_graph_pb2.TrackableObjectGraph.FromString(
        reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH")
    )

    def child(node: int, name: str) -> int | None:
        return next((c.node_id for c in graph.nodes[node].children if c.local_name == name), None)

    net = child(0, "net")
    slim = child(net, "slim_variables") if net is not None else None
    if slim is None:
        return {}
    out = {}
    for c in graph.nodes[slim].children:
        attributes = graph.nodes[c.node_id].attributes
        if attributes:
            out[c.local_name] = np.asarray(reader.get_tensor(attributes[0].checkpoint_key), np.float32)
    return out
