"""`export --format triton`: a Triton model folder whose config Triton's own ModelConfig message
reads, whose declared inputs and outputs are the ONNX model's, and whose model matches the
TF-Slim reference in ONNX Runtime (the backend the config names)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

import inception_hub
from conftest import reference
from inception_hub.cli import main
from inception_hub.export import export

pytestmark = pytest.mark.slow  # exports


def config_of(folder) -> model_config_pb2.ModelConfig:
    return text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def test_a_triton_folder_is_what_triton_reads(checkpoints, tmp_path):
    folder = export(
        "inception_v1/classification/5", tmp_path / "inception_v1", checkpoints["inception_v1", "v2"], format="triton"
    )
    config = config_of(folder)
    assert config.platform == "onnxruntime_onnx" and config.max_batch_size == 32
    assert config.HasField("dynamic_batching") and not config.name  # Triton names it after the folder
    (images,) = config.input
    assert images.name == "images" and images.data_type == model_config_pb2.TYPE_FP32
    assert images.format == model_config_pb2.ModelInput.FORMAT_NHWC and list(images.dims) == [224, 224, 3]
    outputs = {o.name: o for o in config.output}
    assert {k: list(o.dims) for k, o in outputs.items()} == {"logits": [1001], "feature_vector": [1024]}
    assert outputs["logits"].label_filename == "labels.txt" and not outputs["feature_vector"].label_filename
    labels = (folder / "labels.txt").read_text().splitlines()
    assert len(labels) == 1001 and labels[0] == "background"

    # The declared tensors are the model's: names, element type and the dims after the batch.
    model = onnx.load(str(folder / "1" / "model.onnx"))
    graph_outputs = {o.name: o for o in model.graph.output}
    assert [i.name for i in model.graph.input] == ["images"] and set(graph_outputs) == set(outputs)
    for name, out in outputs.items():
        dims = graph_outputs[name].type.tensor_type.shape.dim
        assert [d.dim_value for d in dims[1:]] == list(out.dims)

    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:3].astype(np.float32) / 255
    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    logits, features = session.run(["logits", "feature_vector"], {"images": x})
    assert np.abs(logits - ref["logits"][:3]).max() <= 1e-4
    assert np.abs(features - ref["feature_vector"][:3]).max() <= 1e-4
    # inception-hub loads it like its other exports.
    assert np.abs(inception_hub.load(folder)(x) - ref["logits"][:3]).max() <= 1e-4


def test_a_feature_vector_folder_and_the_command_line(checkpoints, tmp_path, capsys):
    out = tmp_path / "repository" / "irv2_features"
    ckpt = str(checkpoints["inception_resnet_v2", "v2"])
    args = ["export", "inception_resnet_v2/feature_vector/5", str(out), "--format", "triton"]
    assert main([*args, "--checkpoint", ckpt, "--no-progress"]) == 0
    config = config_of(out)
    assert [(o.name, list(o.dims), o.label_filename) for o in config.output] == [("feature_vector", [1536], "")]
    assert list(config.input[0].dims) == [299, 299, 3] and not (out / "labels.txt").exists()
    assert (out / "1" / "model.onnx").is_file()
