"""A Triton Inference Server model folder: `config.pbtxt`, `labels.txt` and `1/model.onnx`, the
layout of Triton's own Inception example (a model repository holds one such folder per model).

The model is the ONNX export (ONNX Runtime backend, `platform: "onnxruntime_onnx"`). Its input is
`images`, float32 NHWC in [0, 1] at the module's training size with a dynamic batch (Triton's
image client reads the size from the model's metadata), and dynamic batching is on. The logits'
`label_filename` lets Triton answer classification requests (`class_count`) with label strings.
The config names no model: Triton takes the folder's name, so the folder can be renamed freely.
"""

from __future__ import annotations

from ..catalog import ModelSpec

#: Where Triton looks for the model in the folder: version 1.
VERSION_FOLDER = "1"
#: Largest batch Triton forms (dynamic batching joins requests up to it); the server's default too.
MAX_BATCH = 32
LABELS = "labels.txt"


def config_pbtxt(spec: ModelSpec) -> str:
    """The model configuration, in protobuf text format (Triton's `ModelConfig`)."""
    height, width = spec.image_size
    outputs = [("feature_vector", spec.with_kind("feature_vector").output_dim, None)]
    if spec.num_classes:
        outputs.insert(0, ("logits", spec.num_classes, LABELS))
    lines = [
        'platform: "onnxruntime_onnx"',
        f"max_batch_size: {MAX_BATCH}",
        "input [",
        "  {",
        '    name: "images"',
        "    data_type: TYPE_FP32",
        "    format: FORMAT_NHWC",
        f"    dims: [ {height}, {width}, 3 ]",
        "  }",
        "]",
        "output [",
    ]
    for i, (name, dim, labels) in enumerate(outputs):
        lines += ["  {", f'    name: "{name}"', "    data_type: TYPE_FP32", f"    dims: [ {dim} ]"]
        if labels:
            lines.append(f'    label_filename: "{labels}"')
        lines.append("  }," if i < len(outputs) - 1 else "  }")
    lines += ["]", "dynamic_batching { }", "instance_group [ { kind: KIND_CPU } ]"]
    return "\n".join(lines) + "\n"
