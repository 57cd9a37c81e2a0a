"""A TF1 Hub module on disk, as `hub.load_module_spec` described one: its graph variants (tag
sets), signatures, their inputs and outputs, and its attached messages, read from the folder
`resolve` built."""

from __future__ import annotations

import os
from pathlib import Path

import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from ..catalog import ModelSpec
from ..export import proto
from . import resolver

#: The collection the TF1 format keeps attached messages in (`image_module_info`, ...).
ATTACHMENTS = "hub_module_attachments"


class TensorInfo:
    """What a signature's input or output is, without a tensor (hub's ParsedTensorInfo):
    `dtype`, `get_shape()`, `is_sparse`."""

    def __init__(self, dtype: tf.DType, shape: tf.TensorShape) -> None:
        self.type_spec = tf.TensorSpec(shape, dtype)

    @classmethod
    def from_proto(cls, info) -> TensorInfo:
        return cls(tf.DType(info.dtype), tf.TensorShape(info.tensor_shape))

    @property
    def dtype(self) -> tf.DType:
        return self.type_spec.dtype

    def get_shape(self) -> tf.TensorShape:
        return self.type_spec.shape

    is_sparse = False
    is_composite = False
    is_supported_type = True

    def __repr__(self) -> str:
        return f"<hub.ParsedTensorInfo shape={self.get_shape()} dtype={self.dtype.name} is_sparse=False>"


class ModuleSpec:
    """One TF1 Hub module folder (inception-hub's export of a /1 or /3 module)."""

    def __init__(self, path: str | os.PathLike, spec: ModelSpec) -> None:
        self.path = str(path)
        #: Which published module this is (network, output, version).
        self.spec = spec
        sm = saved_model_pb2.SavedModel.FromString((Path(path) / "saved_model.pb").read_bytes())
        self._graphs = {frozenset(mg.meta_info_def.tags): mg for mg in sm.meta_graphs}

    @property
    def checkpoint(self) -> str:
        """The variables' checkpoint prefix, which a Module's variables are initialized from."""
        return str(Path(self.path) / "variables" / "variables")

    def get_tags(self) -> list[set[str]]:
        return [set(tags) for tags in self._graphs]

    def _graph(self, tags):
        key = frozenset(tags or ())
        if key not in self._graphs:
            known = " and ".join(repr(set(t) or set()) for t in self._graphs)
            raise ValueError(f"No such graph variant: tags={sorted(key)!r}; this module has {known}")
        return self._graphs[key]

    def get_signature_names(self, tags=None) -> list[str]:
        return sorted(self._graph(tags).signature_def, key=lambda name: (name != "default", name))

    def _signature(self, signature: str | None, tags):
        sigs = self._graph(tags).signature_def
        name = signature or "default"
        if name not in sigs:
            known = ", ".join(self.get_signature_names(tags))
            raise ValueError(f"Signature {name!r} is missing from this module; it has {known}")
        return sigs[name]

    def get_input_info_dict(self, signature: str | None = None, tags=None) -> dict[str, TensorInfo]:
        return {k: TensorInfo.from_proto(v) for k, v in self._signature(signature, tags).inputs.items()}

    def get_output_info_dict(self, signature: str | None = None, tags=None) -> dict[str, TensorInfo]:
        return {k: TensorInfo.from_proto(v) for k, v in sorted(self._signature(signature, tags).outputs.items())}

    def get_attached_message(self, key: str, message_type, tags=None, required: bool = False):
        """The message attached under `key`, parsed with `message_type` (a protobuf class)."""
        for item in self._graph(tags).collection_def[ATTACHMENTS].bytes_list.value:
            fields = proto.parse(item)
            if bytes(fields.get(1, [b""])[0]).decode() == key:
                return message_type.FromString(bytes(fields[2][0]))
        if required:
            raise KeyError(f"this module has no attached message {key!r}")
        return None

    def image_size(self) -> tuple[int, int] | None:
        """The `image_module_info` attachment's default size (every graph carries the same)."""
        for item in self._graph(None).collection_def[ATTACHMENTS].bytes_list.value:
            key, size = proto.read_image_size(item)
            if size:
                return size
        return None

    def __repr__(self) -> str:
        return f"<hub.ModuleSpec {self.spec.handle} at {self.path}>"


def load_module_spec(handle: str | os.PathLike) -> ModuleSpec:
    """The TF1 Hub module (/1 or /3) a handle names, built the first time; see `resolver.resolve`."""
    source = resolver.module_source(handle)
    tf1 = source.spec.hub_format == "tf1_hub"
    if not tf1 or (source.saved_model is not None and not resolver.is_tf1_module(source.saved_model)):
        raise ValueError(
            f"{source.name} is a TF2 SavedModel, which hub.Module never loaded: use hub.load(...) or "
            "hub.KerasLayer(...), or name the TF1 module (version /1 or /3)"
        )
    return ModuleSpec(resolver.resolve(handle), source.spec)
