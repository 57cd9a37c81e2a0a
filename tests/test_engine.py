"""The inference engines: the ONNX graph derived from the one definition, on ONNX Runtime and
OpenVINO, against the TF-Slim reference."""

from __future__ import annotations

import numpy as np
import openvino
import pytest

import inception_hub
from conftest import SIZES, reference
from inception_hub.engine import available_backends, choose_backend
from inception_hub.errors import InputError
from inception_hub.weights import cache_dir

ENGINES = ["onnxruntime", "openvino"]


@pytest.mark.parametrize("backend", ENGINES)
@pytest.mark.parametrize("arch", ["inception_v1", pytest.param("inception_resnet_v2", marks=pytest.mark.slow)])
def test_engines_match_tf_slim_at_every_size(checkpoints, arch, backend):
    clf = inception_hub.load(arch, checkpoint=checkpoints[arch, "v1"], backend=backend)
    fv = inception_hub.load(f"{arch}/feature_vector", checkpoint=checkpoints[arch, "v1"], backend=backend)
    assert clf.backend == backend
    twin = clf.feature_vector()  # the classifier's own pooled features, through the same road
    assert twin.backend == backend and twin.labels is None and twin.output_dim == fv.output_dim
    for size in SIZES[arch]:
        ref = reference(arch, size)
        x = ref["inputs_u8"].astype(np.float32) / 255
        np.testing.assert_allclose(clf(x), ref["logits"], atol=1e-4, rtol=0, err_msg=size)
        np.testing.assert_allclose(fv(x), ref["feature_vector"], atol=1e-4, rtol=0, err_msg=size)
        np.testing.assert_allclose(twin(x), ref["feature_vector"], atol=1e-4, rtol=0, err_msg=size)


def test_converted_model_is_cached_beside_the_weights(checkpoints):
    ckpt = checkpoints["inception_v1", "v2"]
    inception_hub.load("inception_v1", checkpoint=ckpt, backend="onnxruntime")
    (path,) = (cache_dir() / "engines" / "inception_v1").glob("classification-*.onnx")
    stamp = path.stat().st_mtime_ns
    inception_hub.load("inception_v1", checkpoint=ckpt, backend="openvino")  # same weights: same file
    assert path.stat().st_mtime_ns == stamp
    assert len(list((cache_dir() / "engines" / "inception_v1").glob("*.onnx"))) == 1
    assert not list(path.parent.glob("*.tmp"))
    # The same weights reached another way (the V1 file, the imported cache) are converted once:
    # the cache is keyed by the weights' digest, not by the path they came from.
    inception_hub.load("inception_v1", checkpoint=checkpoints["inception_v1", "v1"], backend="onnxruntime")
    inception_hub.fetch("inception_v1", ckpt, progress=False)
    inception_hub.load("inception_v1", backend="onnxruntime")
    assert [p.name for p in (cache_dir() / "engines" / "inception_v1").glob("*.onnx")] == [path.name]


def test_bf16_is_opt_in_and_close(checkpoints):
    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"].astype(np.float32) / 255
    if "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        fast = inception_hub.load("inception_v1", checkpoint=checkpoints["inception_v1", "v1"], precision="bf16")
        logits = fast(x)
        assert np.abs(logits - ref["logits"]).max() > 1e-4  # ...and really is running in bf16
    else:  # a CPU without bf16: OpenVINO falls back to fp32, and the user is told so
        with pytest.warns(UserWarning, match="no bf16 support"):
            fast = inception_hub.load("inception_v1", checkpoint=checkpoints["inception_v1", "v1"], precision="bf16")
        logits = fast(x)
        assert np.abs(logits - ref["logits"]).max() < 1e-4
    assert fast.backend == "openvino"
    assert np.abs(logits - ref["logits"]).max() < 0.5  # bf16 is approximate...
    assert (logits.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.8


def test_backend_choice():
    assert set(ENGINES) <= set(available_backends())
    # The fastest exact engine installed, per network (benchmarks/throughput.py).
    assert choose_backend(None, arch="inception_v1") == "onnxruntime"
    assert choose_backend(None, arch="inception_resnet_v2") == "openvino"
    assert choose_backend("tf") == "tf"
    with pytest.raises(InputError, match="unknown backend 'torch'"):
        choose_backend("torch")
    with pytest.raises(InputError, match="bf16 runs on the openvino backend only"):
        choose_backend("onnxruntime", "bf16")
    with pytest.raises(InputError, match="unknown precision"):
        choose_backend(None, "int4")
