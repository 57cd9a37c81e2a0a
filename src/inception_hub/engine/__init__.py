"""Every backend that runs the network, behind one runner interface: numpy `[N, H, W, 3]` in
[0, 1] in, numpy outputs out.

- `tf`: the network as a `tf.Module` (`engine/tf.py`), or a SavedModel inception-hub wrote.
- `onnxruntime`, `openvino`: the network converted to ONNX from the same definition
  (`engine/onnx.py`), fp32 exact; OpenVINO also runs bf16, and both run int8: faster, not exact.

The default is the fastest exact backend installed, measured on this CPU at first use
(`engine/choice.py`), the model card's order until then; precision "fast" is the fastest of
bf16 and int8 that the CPU runs natively, measured the same way.
"""

from .base import BACKENDS, FAST, PRECISIONS, Infer, Runner, require_precision
from .choice import Choice, choose_backend, measuring, plan, settle
from .choose import available_backends, candidates, fast_precisions, runner

__all__ = [
    "BACKENDS",
    "FAST",
    "PRECISIONS",
    "Choice",
    "Infer",
    "Runner",
    "available_backends",
    "candidates",
    "choose_backend",
    "fast_precisions",
    "measuring",
    "plan",
    "require_precision",
    "runner",
    "settle",
]
