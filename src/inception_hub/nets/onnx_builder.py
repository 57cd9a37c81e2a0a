"""The network primitives as ONNX nodes: the inference engines' form of the one definition.

Running a definition on this builder writes an inference graph (NCHW inside, dynamic batch and
image size) with the checkpoint's weights as initializers. BatchNorm is folded into the
preceding convolution (scale 1/sqrt(var + eps), shift beta - mean * scale), which is exact up to
float rounding. TensorFlow's SAME padding, with its extra row and column at the bottom and
right, is ONNX's `auto_pad=SAME_UPPER`; average pooling excludes the padding, as TF's does.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .layers import BN_EPSILON, FEATURE_MAP, FEATURES, LOGITS, Builder, pair


def _pad(padding: str) -> str:
    return {"SAME": "SAME_UPPER", "VALID": "VALID"}[padding]


class OnnxBuilder(Builder):
    """Collects ONNX nodes; tensors are value names."""

    def __init__(self, weights: Mapping[str, np.ndarray]) -> None:
        super().__init__()
        self.weights = weights
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def _const(self, hint: str, value: np.ndarray) -> str:
        name = self._name(hint)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value, np.float32), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, **attrs) -> str:
        out = self._name(hint or op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def conv2d(self, x, filters, kernel, *, scope, stride=1, padding="SAME", batch_norm=True, activation=True):
        with self.scope(scope):
            w = np.asarray(self.weights[self.name("weights")], np.float64)  # HWIO
            if batch_norm:
                with self.scope("BatchNorm"):
                    beta = self.weights[self.name("beta")]
                    mean = self.weights[self.name("moving_mean")]
                    var = self.weights[self.name("moving_variance")]
                scale = 1.0 / np.sqrt(np.asarray(var, np.float64) + BN_EPSILON)
                w = w * scale
                b = beta - mean * scale
            else:
                b = self.weights[self.name("biases")]
            kernel_oihw = self._const(self.name("weights"), w.transpose(3, 2, 0, 1))
            bias = self._const(self.name("bias"), b)
            y = self.op(
                "Conv",
                [x, kernel_oihw, bias],
                self.name("Conv"),
                kernel_shape=list(pair(kernel)),
                strides=[stride, stride],
                auto_pad=_pad(padding),
            )
        return self.op("Relu", [y]) if activation else y

    def max_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self.op(
            "MaxPool", [x], kernel_shape=list(pair(kernel)), strides=[stride, stride], auto_pad=_pad(padding)
        )

    def avg_pool2d(self, x, kernel, *, stride=1, padding="SAME"):
        return self.op(
            "AveragePool",
            [x],
            kernel_shape=list(pair(kernel)),
            strides=[stride, stride],
            auto_pad=_pad(padding),
            count_include_pad=0,
        )

    def concat(self, xs):
        return self.op("Concat", list(xs), axis=1)

    def residual(self, x, up, *, scale, activation):
        if scale != 1.0:
            up = self.op("Mul", [up, self._const("scale", np.array(scale, np.float32))])
        y = self.op("Add", [x, up])
        return self.op("Relu", [y]) if activation else y

    def global_pool(self, x):
        return self.op("Flatten", [self.op("GlobalAveragePool", [x])], axis=1)

    def flatten(self, x):
        return self.op("Flatten", [x], axis=1)

    def dropout(self, x):
        return x  # inference graph

    def fully_connected(self, x, units, *, scope, as_conv1x1=False):
        with self.scope(scope):
            w = np.asarray(self.weights[self.name("weights")]).reshape(-1, units)
            y = self.op("MatMul", [x, self._const(self.name("weights"), w)])
            return self.op("Add", [y, self._const(self.name("biases"), self.weights[self.name("biases")])])


def build_onnx(arch: str, num_classes: int | None, weights: Mapping[str, np.ndarray], opset: int = 17) -> bytes:
    """An ONNX model: input `images` float32 [N, H, W, 3] in [0, 1]; outputs `logits` then
    `feature_vector` (a classifier's pooled features, as its SavedModel's `image_feature_vector`
    signature gives them) and `feature_map` (the final end point, [N, h, w, C], for class
    activation maps), or only `feature_vector`."""
    from . import ARCHITECTURES, build

    a = ARCHITECTURES[arch]
    b = OnnxBuilder(weights)
    scaled = b.op("Sub", [b.op("Mul", ["images", b._const("two", np.array(2.0))]), b._const("one", np.array(1.0))])
    nchw = b.op("Transpose", [scaled], perm=[0, 3, 1, 2])
    out = build(b, arch, nchw, num_classes)
    outputs = {LOGITS: (out, ["batch", num_classes])} if num_classes else {}
    outputs[FEATURES] = (b.end_points["global_pool"], ["batch", a.num_features])
    if num_classes:
        nhwc = b.op("Transpose", [b.end_points[a.final_endpoint]], perm=[0, 2, 3, 1])
        outputs[FEATURE_MAP] = (nhwc, ["batch", "map_height", "map_width", a.num_features])
    for name, (value, _) in outputs.items():
        b.nodes.append(helper.make_node("Identity", [value], [name]))
    graph = helper.make_graph(
        b.nodes,
        f"{arch}_{next(iter(outputs))}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", "height", "width", 3])],
        [helper.make_tensor_value_info(name, TensorProto.FLOAT, dims) for name, (_, dims) in outputs.items()],
        b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="inception-hub")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def without_feature_map(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with only the published outputs: `feature_map` and the nodes that only it
    needs removed (exports carry the SavedModel signatures' outputs, nothing more)."""

    graph = model.graph
    keep = [o for o in graph.output if o.name != FEATURE_MAP]
    del graph.output[:]
    graph.output.extend(keep)
    while True:
        needed = {o.name for o in graph.output} | {i for n in graph.node for i in n.input}
        dead = [n for n in graph.node if not any(o in needed for o in n.output)]
        if not dead:
            return model
        for n in dead:
            graph.node.remove(n)
