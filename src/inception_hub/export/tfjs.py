"""TF.js graph models: `model.json` and its weight shards, as `tf.loadGraphModel` reads them.

Written here from the module's frozen TensorFlow graph, because the `tensorflowjs` converter
pins TensorFlow <= 2.19 (through tensorflow-decision-forests). `model.json` holds the GraphDef as
JSON (`modelTopology`, protobuf's JSON mapping, which TF.js parses) with every constant moved to
the weights manifest, and the signature of the SavedModel's `serving_default`: input `images`,
output `logits` or `feature_vector`, so `model.predict(images)` gives that tensor, as tfhub.dev's
TF.js models did. Weights are float32, or quantized as `tensorflowjs_converter` does it: uint8
(affine per tensor, `--quantize_uint8`) or float16 (`--quantize_float16`); TF.js dequantizes them
to float32 on load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator

import numpy as np

from .._version import __version__
from ..catalog import signatures
from ..metadata import FORMAT_RECORDS
from .job import Job

#: Bytes a shard holds at most (tensorflowjs_converter's default: 4 MB, which browsers cache well).
SHARD_BYTES = 4 * 1024 * 1024
#: The weight quantization each export precision stands for.
QUANTIZATION = {"fp32": None, "fp16": "float16", "int8": "uint8"}
_DTYPES = {np.dtype(np.float32): "float32", np.dtype(np.int32): "int32", np.dtype(np.bool_): "bool"}


def export_tfjs(job: Job) -> dict:
    """Write `model.json` and `group1-shard*of*.bin` into the job's folder."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from ..nets.tf_module import InceptionNet

    spec = job.spec
    net = InceptionNet(spec.arch, spec.num_classes, job.weights)
    size = list(spec.image_size) if not spec.variable_size else [None, None]
    output = signatures(spec.kind)["serving_default"].output

    @tf.function(input_signature=[tf.TensorSpec([None, *size, 3], tf.float32, name="images")])
    def serving_default(images):
        return {output: net(images)}

    frozen = convert_variables_to_constants_v2(serving_default.get_concrete_function())
    # Only what the output needs, without control dependencies (inference has no side effects).
    graph = frozen.graph.as_graph_def()
    for node in graph.node:
        node.input[:] = [i for i in node.input if not i.startswith("^")]
    graph = tf.compat.v1.graph_util.extract_sub_graph(graph, [frozen.outputs[0].op.name])
    quantization = QUANTIZATION[job.meta["precision"]]
    topology, weights = _split_constants(graph)
    manifest = _write_shards(job, weights, quantization)
    outputs = frozen.outputs
    model = {
        "format": "graph-model",
        "generatedBy": tf.__version__,
        "convertedBy": f"inception-hub {__version__}",
        "modelTopology": topology,
        "signature": {
            "inputs": {"images": _tensor_info(frozen.inputs[0])},
            "outputs": {output: _tensor_info(outputs[0])},
        },
        "weightsManifest": manifest,
    }
    (job.out / FORMAT_RECORDS["tfjs"].model_file).write_text(json.dumps(model, separators=(",", ":")))
    return {"tfjs_weight_quantization": quantization or "none"}


def _split_constants(graph) -> tuple[dict, list[tuple[str, np.ndarray]]]:
    """The GraphDef as JSON with its constants' values taken out, and those values by node name."""
    import tensorflow as tf
    from google.protobuf import json_format

    weights = []
    for node in graph.node:
        if node.op == "Const":
            weights.append((node.name, tf.make_ndarray(node.attr["value"].tensor)))
            del node.attr["value"]  # TF.js takes a constant from the weights of the same name
    topology = json_format.MessageToDict(graph)
    return topology, weights


def _write_shards(job: Job, weights: list[tuple[str, np.ndarray]], quantization: str | None) -> list[dict]:
    entries, chunks = [], []
    for name, value in weights:
        dtype = _DTYPES.get(value.dtype)
        if dtype is None:
            raise TypeError(f"constant {name} has dtype {value.dtype}, which the TF.js export does not write")
        entry = {"name": name, "shape": list(value.shape), "dtype": dtype}
        data = np.ascontiguousarray(value)
        if quantization and dtype == "float32":
            data, entry["quantization"] = _quantize(data, quantization)
        entries.append(entry)
        chunks.append(data.astype(data.dtype.newbyteorder("<"), copy=False).tobytes())
    blob = b"".join(chunks)
    count = max(1, math.ceil(len(blob) / SHARD_BYTES))
    paths = [f"group1-shard{i + 1}of{count}.bin" for i in range(count)]
    for path, start in zip(paths, range(0, max(len(blob), 1), SHARD_BYTES), strict=True):
        (job.out / path).write_bytes(blob[start : start + SHARD_BYTES])
    return [{"paths": paths, "weights": entries}]


def _quantize(value: np.ndarray, dtype: str) -> tuple[np.ndarray, dict]:
    """`value` stored in `dtype`, with the fields TF.js dequantizes it by."""
    if dtype == "float16":
        return value.astype(np.float16), {"dtype": "float16", "original_dtype": "float32"}
    low, high = min(float(value.min()), 0.0), max(float(value.max()), 0.0)
    scale = (high - low) / 255 or 1.0
    # The range is nudged so that 0 is exactly representable (zero padding stays zero).
    zero = round(-low / scale)
    low = -zero * scale
    quantized = np.clip(np.round((value - low) / scale), 0, 255).astype(np.uint8)
    return quantized, {"dtype": "uint8", "min": low, "scale": scale, "original_dtype": "float32"}


def _tensor_info(tensor) -> dict:
    dims = [{"size": str(-1 if d is None else d)} for d in tensor.shape.as_list()]
    return {"name": tensor.name, "dtype": "DT_FLOAT", "tensorShape": {"dim": dims}}


def shard_names(folder) -> Iterator[str]:
    """The weight files a TF.js export's `model.json` names."""
    model = json.loads((folder / FORMAT_RECORDS["tfjs"].model_file).read_text())
    for group in model["weightsManifest"]:
        yield from group["paths"]
