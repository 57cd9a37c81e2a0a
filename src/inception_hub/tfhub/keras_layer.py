"""`hub.KerasLayer` as a native Keras 3 layer, on the TensorFlow, JAX and PyTorch backends.

    model = tf.keras.Sequential([hub.KerasLayer("https://tfhub.dev/google/imagenet/inception_v1/feature_vector/5",
                                                trainable=True, arguments=dict(batch_norm_momentum=0.997)),
                                 tf.keras.layers.Dense(5)])

The layer is the network of `inception_hub.keras` with the published module's contract: images
in [0, 1], logits or the pooled feature vector, a fixed input size for version 1 and any size
from version 3 on. `trainable=True` trains as the TF2 modules did (BatchNorm on batch statistics
at `batch_norm_momentum`, dropout before the logits, TF-Slim's weight decay in `losses`);
`trainable=False` freezes it, BatchNorm included. A signature picks another output as the
published module's signature did (`image_feature_vector` gives a classifier's features), and
`signature_outputs_as_dict=True` gives all of its outputs, keyed as the signature keyed them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import keras

from ..catalog import ModelSpec, signatures
from ..errors import InputError
from ..keras import build_model, load_into
from ..nets import ARCHITECTURES, build
from ..nets.layers import BATCH_NORM_MOMENTUM, FEATURES, LOGITS, Shape, ShapeBuilder
from .resolver import folder_weights, module_source

#: The keys `arguments` may hold: what the TF2 modules' __call__ took besides the images.
ARGUMENTS = ("batch_norm_momentum",)
#: The network's end points that stand for the signatures' two main outputs.
MAIN = {LOGITS: "Logits", FEATURES: "global_pool"}


def published_signatures(spec: ModelSpec) -> dict[str, dict[str, str]]:
    """Each signature the module was published with, as {output key: end point}: a TF1 module's
    `default` plus its end points (`InceptionV1/Mixed_5c`, ...); version 5's outputs by name;
    version 4 had none."""
    if spec.hub_format == "tf1_hub":
        b = ShapeBuilder()
        build(b, spec.arch, Shape(None, None, 3), spec.num_classes)
        scope = ARCHITECTURES[spec.arch].scope
        points = {f"{scope}/{name}": name for name in b.end_points}
        return {n: {"default": MAIN[s.output], **points} for n, s in signatures(spec.kind, tf1=True).items()}
    if spec.version < 5:
        return {}
    return {n: {s.output_key: MAIN[s.output]} for n, s in signatures(spec.kind).items()}


def _default_signature(spec: ModelSpec) -> str | None:
    return "default" if spec.hub_format == "tf1_hub" else ("serving_default" if spec.version >= 5 else None)


def select_outputs(
    spec: ModelSpec, signature: str | None, output_key: str | None, as_dict: bool | None
) -> str | dict[str, str]:
    """What the layer returns, as tensorflow_hub's rules read for these modules: the end point
    of one output, or {output key: end point} for `signature_outputs_as_dict`."""
    sigs = published_signatures(spec)
    if output_key is not None and as_dict:
        raise ValueError("give either output_key or signature_outputs_as_dict=True, not both")
    if signature is None and (output_key is not None or as_dict):
        signature = _default_signature(spec)
        if signature is None:
            what = "output_key" if output_key is not None else "signature_outputs_as_dict"
            raise ValueError(f"{spec.handle} was published without signatures, so {what} has no meaning for it")
    if signature is None:
        return MAIN[LOGITS if spec.num_classes else FEATURES]
    if signature not in sigs:
        known = ", ".join(sigs) if sigs else "none (version 4 was published without signatures)"
        raise ValueError(f"unknown signature {signature!r} for {spec.handle}; its signatures: {known}")
    outputs = sigs[signature]
    if as_dict:
        return dict(outputs)
    key = output_key if output_key is not None else next(iter(outputs))
    if key not in outputs:
        raise ValueError(f"unknown output_key {key!r} of signature {signature!r}; its outputs: {', '.join(outputs)}")
    return outputs[key]


def _momentum(handle: str, arguments: Mapping[str, Any] | None) -> float:
    arguments = dict(arguments or {})
    unknown = sorted(set(arguments) - set(ARGUMENTS))
    if unknown:
        raise ValueError(
            f"arguments {unknown} have no meaning for {handle}; it takes {', '.join(ARGUMENTS)} "
            "(training is set by trainable=True and the model's training mode)"
        )
    momentum = float(arguments.get("batch_norm_momentum", BATCH_NORM_MOMENTUM))
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"batch_norm_momentum must be in [0, 1], got {momentum}")
    return momentum


@keras.saving.register_keras_serializable(package="inception_hub")
class KerasLayer(keras.layers.Layer):
    """A TF-Hub Inception module as a Keras 3 layer; see the module docstring.

    `handle`: any spelling `inception_hub.load` takes (tfhub.dev, Kaggle, short names) or a folder
    `inception-hub export` wrote in the saved_model or tf1_hub format. `arguments` may set
    `batch_norm_momentum` (default 0.99). `output_shape` is checked against the module's.
    `tags` and `load_options` are accepted for tensorflow_hub's signature: no tags but the
    default graph, and the options do not apply (the weights are read by inception-hub)."""

    def __init__(
        self,
        handle: str | os.PathLike,
        trainable: bool = False,
        arguments: Mapping[str, Any] | None = None,
        output_shape=None,
        signature: str | None = None,
        output_key: str | None = None,
        signature_outputs_as_dict: bool | None = None,
        tags=None,
        load_options=None,
        **kwargs,
    ) -> None:
        super().__init__(trainable=trainable, **kwargs)
        if not isinstance(handle, (str, os.PathLike)):
            raise TypeError(f"handle must be a handle string or a folder path, got {type(handle).__name__}")
        if tags:
            raise ValueError(
                f"tags={tags!r}: these modules' Keras layer has one graph; train it with trainable=True "
                "(BatchNorm then runs on batch statistics while the model trains)"
            )
        self.handle = os.fspath(handle)
        self.arguments = dict(arguments or {})
        self.signature, self.output_key = signature, output_key
        self.signature_outputs_as_dict = signature_outputs_as_dict
        source = module_source(self.handle)
        self.spec: ModelSpec = source.spec
        self._selected = select_outputs(self.spec, signature, output_key, signature_outputs_as_dict)
        points = list(self._selected.values()) if isinstance(self._selected, dict) else [self._selected]
        h, w = self.spec.image_size if not self.spec.variable_size else (None, None)
        self._model = build_model(
            self.spec.arch,
            None if source.saved_model else "imagenet",
            endpoints=list(dict.fromkeys(points)),
            input_shape=(h, w, 3),
            batch_norm_momentum=_momentum(self.handle, arguments),
            name=self.spec.arch,
        )
        if source.saved_model:
            load_into(self._model, self.spec.arch, folder_weights(source, include_top="Logits" in points))
        # A frozen layer freezes its blocks (so BatchNorm stays in inference mode). Set on the model:
        # TensorFlow's tracking skips `self.trainable = x` when x is the value it already has.
        self._model.trainable = bool(trainable)
        self.output_shape_arg = _checked_output_shape(self, output_shape)

    @property
    def expected_image_size(self) -> tuple[int, int]:
        """(height, width) the network was trained at; version 1 takes only this size."""
        return self.spec.image_size

    @property
    def resolved_object(self) -> keras.Model:
        """The Keras model of the network the handle resolved to."""
        return self._model

    def build(self, input_shape) -> None:
        self._check_size(input_shape)
        self.built = True

    def _check_size(self, shape) -> None:
        shape = tuple(shape)
        if len(shape) != 4 or shape[-1] not in (None, 3):
            raise InputError(f"{self.handle} takes images [batch, height, width, 3], got shape {list(shape)}")
        if not self.spec.variable_size and None not in shape[1:3] and tuple(shape[1:3]) != self.spec.image_size:
            h, w = self.spec.image_size
            raise InputError(
                f"{self.handle} (version 1) takes {h}x{w} images only, got {shape[1]}x{shape[2]}; "
                "version 3 and later take any size"
            )

    def call(self, inputs, training=None):
        self._check_size(inputs.shape)
        outputs = self._model(inputs, training=bool(training) and self.trainable)
        if isinstance(self._selected, dict):
            return {key: outputs[point] for key, point in self._selected.items()}
        return outputs[self._selected]

    def compute_output_shape(self, input_shape):
        shapes = self._model.compute_output_shape(tuple(input_shape))
        if isinstance(self._selected, dict):
            return {key: tuple(shapes[point]) for key, point in self._selected.items()}
        return tuple(shapes[self._selected])

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.update(
            handle=self.handle,
            arguments=self.arguments or None,
            output_shape=self.output_shape_arg,
            signature=self.signature,
            output_key=self.output_key,
            signature_outputs_as_dict=self.signature_outputs_as_dict,
        )
        return config


def _checked_output_shape(layer: KerasLayer, given):
    """`output_shape` (without the batch) as JSON, refused when it is not the module's."""
    if given is None:
        return None
    h, w = layer.spec.image_size if not layer.spec.variable_size else (None, None)
    actual = layer.compute_output_shape((None, h, w, 3))

    def same(want, have: tuple) -> bool:
        want = [want] if isinstance(want, int) else list(want)
        return len(want) == len(have) and all(a is None or b is None or a == b for a, b in zip(want, have, strict=True))

    if isinstance(given, Mapping):
        ok = set(given) <= set(actual) and all(same(given[k], actual[k][1:]) for k in given)
        as_json = {k: [given[k]] if isinstance(given[k], int) else list(given[k]) for k in given}
    else:
        ok = not isinstance(actual, dict) and same(given, actual[1:])
        as_json = [given] if isinstance(given, int) else list(given)
    if not ok:
        raise ValueError(f"output_shape={given!r} is not this module's output shape {actual} (batch first)")
    return as_json
