"""Every backend that runs the network, behind one runner interface: numpy `[N, H, W, 3]` in
[0, 1] in, numpy outputs out.

- `tf`: the network as a `tf.Module` (`engine/tf.py`), or a SavedModel inception-hub wrote.
- `onnxruntime`, `openvino`: the network converted to ONNX from the same definition
  (`engine/onnx.py`), fp32 exact; OpenVINO also runs bf16, faster and not exact.

The default is the fastest exact backend installed, in the order the model card gives.
"""

from .base import BACKENDS, PRECISIONS, Infer, Runner, require_precision
from .choose import available_backends, choose_backend, runner

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Infer",
    "Runner",
    "available_backends",
    "choose_backend",
    "require_precision",
    "runner",
]
