"""`hub.Module` for TF1 graph code (`tf.compat.v1` with `disable_v2_behavior()`), as
tensorflow_hub 0.15 ran these modules, on today's TensorFlow.

    module = hub.Module("https://tfhub.dev/google/imagenet/inception_v1/classification/1")
    logits = module(images)                     # images: float32 [N, 224, 224, 3] in [0, 1]
    features = module(images, signature="image_feature_vector")

Constructing a Module creates its variables in the current graph under a fresh scope `module/`
(`module_1/`, ...), named by the checkpoint (`module/InceptionV1/Conv2d_1a_7x7/weights`), and
points their initializers at the module's variables file, so `global_variables_initializer()`
loads the weights, as hub.Module did. Each call adds the network to the graph, built from the one
definition by the same builder as the TF1 export. With `tags={"train"}` BatchNorm runs on batch
statistics and dropout is on; with `trainable=True` the weights join TRAINABLE_VARIABLES, their
weight decay REGULARIZATION_LOSSES and the BatchNorm updates UPDATE_OPS, as in the TF1 modules.
"""

from __future__ import annotations

import os

import tensorflow as tf

from .. import nets
from ..catalog import signatures
from ..nets import ARCHITECTURES, variable_specs
from ..nets.layers import FEATURES, WEIGHT_DECAY
from ..nets.tf_builder import TFBuilder
from .module_spec import ModuleSpec, TensorInfo, load_module_spec

GraphKeys = tf.compat.v1.GraphKeys


class Module:
    """A TF1 Hub module instantiated in the current graph; see the module docstring."""

    def __init__(
        self,
        spec: ModuleSpec | str | os.PathLike,
        trainable: bool = False,
        name: str = "module",
        tags: set[str] | None = None,
    ) -> None:
        if tf.executing_eagerly():
            raise RuntimeError(
                "hub.Module builds a TF1 graph: call tf.compat.v1.disable_v2_behavior() first (or build it "
                "inside `with tf.Graph().as_default():`); in TF2 code use hub.KerasLayer or hub.load"
            )
        self._spec = spec if isinstance(spec, ModuleSpec) else load_module_spec(spec)
        self._tags = set(tags or ())
        if self._tags not in self._spec.get_tags():
            known = " and ".join(repr(t or set()) for t in self._spec.get_tags())
            raise ValueError(f"No such graph variant: tags={sorted(self._tags)!r}; this module has {known}")
        self._trainable = bool(trainable)
        self._graph = tf.compat.v1.get_default_graph()
        model = self._spec.spec
        # State is created outside whatever control flow the caller is in, as hub.Module did.
        with tf.control_dependencies(None), tf.compat.v1.variable_scope(None, default_name=name) as scope:
            self._name = scope.name.rsplit("/", 1)[-1]
            self._variable_map = {}
            for s in variable_specs(model.arch, include_top=model.num_classes is not None):
                self._variable_map[s.name] = tf.compat.v1.get_variable(
                    s.name,
                    shape=s.shape,
                    dtype=tf.float32,
                    initializer=tf.compat.v1.zeros_initializer(),  # replaced by the checkpoint's values below
                    trainable=self._trainable and s.trainable,
                    use_resource=True,
                )
                if self._trainable and s.regularized:
                    tf.compat.v1.add_to_collection(
                        GraphKeys.REGULARIZATION_LOSSES, WEIGHT_DECAY * tf.nn.l2_loss(self._variable_map[s.name])
                    )
        tf.compat.v1.train.init_from_checkpoint(self._spec.checkpoint, dict(self._variable_map))

    def __call__(self, inputs=None, _sentinel=None, signature: str | None = None, as_dict: bool | None = None):
        """Add the network to the graph on `inputs` (images, or {"images": images}); returns the
        signature's `default` output, or with `as_dict=True` all its outputs (`default` and the
        end points, e.g. `InceptionV1/Mixed_5c`)."""
        if _sentinel is not None:
            raise TypeError("pass signature= and as_dict= by name")
        if self._graph is not tf.compat.v1.get_default_graph():
            raise RuntimeError("Module must be applied in the graph it was instantiated for.")
        name = signature or "default"
        info = self.get_input_info_dict(name)  # an unknown signature is refused here, listing the known
        if isinstance(inputs, dict):
            if set(inputs) != set(info):
                raise TypeError(f"signature {name!r} takes the inputs {sorted(info)}, got {sorted(inputs)}")
            inputs = inputs["images"]
        images = _compatible(inputs, info["images"], name)
        model = self._spec.spec
        updates = tf.compat.v1.get_collection_ref(GraphKeys.UPDATE_OPS)
        before = len(updates)
        with tf.compat.v1.name_scope(None, f"{self._name}_apply_{name}", [images]):
            b = TFBuilder(self._variable_map, training="train" in self._tags)
            out = nets.build(b, model.arch, 2.0 * images - 1.0, model.num_classes)
            scope = ARCHITECTURES[model.arch].scope
            outputs = {f"{scope}/{k}": v for k, v in b.end_points.items()}
            main = b.end_points["global_pool"] if signatures(model.kind, tf1=True)[name].output == FEATURES else out
            outputs["default"] = tf.identity(main, name="default")
        if not self._trainable:
            del updates[before:]  # a module that is not trained leaves its statistics alone
        return outputs if as_dict else outputs["default"]

    def get_signature_names(self) -> list[str]:
        return self._spec.get_signature_names(tags=self._tags)

    def get_input_info_dict(self, signature: str | None = None) -> dict[str, TensorInfo]:
        return self._spec.get_input_info_dict(signature, tags=self._tags)

    def get_output_info_dict(self, signature: str | None = None) -> dict[str, TensorInfo]:
        return self._spec.get_output_info_dict(signature, tags=self._tags)

    def get_attached_message(self, key: str, message_type, required: bool = False):
        return self._spec.get_attached_message(key, message_type, tags=self._tags, required=required)

    @property
    def variable_map(self) -> dict[str, tf.Variable]:
        """The module's variables by their names inside it (the checkpoint's names)."""
        return dict(self._variable_map)

    @property
    def variables(self) -> list[tf.Variable]:
        return [v for _, v in sorted(self._variable_map.items())]

    @property
    def spec(self) -> ModuleSpec:
        return self._spec

    def __repr__(self) -> str:
        return f"<hub.Module {self._spec.spec.handle} scope={self._name!r} tags={self._tags or set()}>"


def _compatible(value, info: TensorInfo, signature: str) -> tf.Tensor:
    """The input as a tensor of the signature's dtype and shape, or a TypeError saying which."""
    try:
        tensor = tf.convert_to_tensor(value, dtype=info.dtype)
    except (TypeError, ValueError) as e:
        raise TypeError(f"Can't convert 'images' of signature {signature!r} to {info.dtype.name}: {e}") from None
    if not tensor.shape.is_compatible_with(info.get_shape()):
        raise TypeError(
            f"Can't convert 'images' of signature {signature!r}: shape {tensor.shape} is incompatible with "
            f"{info.get_shape()} (this module takes images of exactly that size)"
        )
    return tensor
