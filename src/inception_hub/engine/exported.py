"""Runners for exported models: ONNX (ONNX Runtime or OpenVINO), OpenVINO IR and TFLite (LiteRT,
or TensorFlow's own interpreter where LiteRT is not installed)."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from .base import Infer, Runner


def exported_runner(model_file: str | Path, backend: str, precision: str, threads: int | None = None) -> Runner:
    from .onnx import RUNNERS, default_threads

    threads = threads or default_threads()
    if backend == "tflite":
        return tflite_runner(Path(model_file), threads)
    return RUNNERS[backend](Path(model_file), precision, threads)


def _interpreter_class():
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806
    return Interpreter


def tflite_runner(path: Path, threads: int) -> Runner:
    """The model's `serving_default` signature; each thread gets its own interpreter (they are
    not shareable), resized to each batch's shape."""
    interpreter_class = _interpreter_class()
    local = threading.local()

    def signature():
        runner = getattr(local, "runner", None)
        if runner is None:
            interpreter = interpreter_class(model_path=str(path), num_threads=threads)
            runner = local.runner = interpreter.get_signature_runner("serving_default")
        return runner

    names = list(signature().get_output_details())

    def output(name: str) -> Infer:
        return lambda x: signature()(images=np.ascontiguousarray(x, np.float32))[name]

    main = "logits" if "logits" in names else names[0]
    features = (lambda: output("feature_vector")) if main != "feature_vector" and "feature_vector" in names else None
    return Runner(output(main), features, "tflite")
