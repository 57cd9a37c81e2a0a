"""The inference engines: the ONNX graph derived from the one definition, on ONNX Runtime and
OpenVINO, against the TF-Slim reference."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

import inception_hub
from conftest import IMAGES, SIZES, reference
from inception_hub.cpu import cpu
from inception_hub.engine import available_backends, choose_backend
from inception_hub.errors import InputError
from inception_hub.images import load_image
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
    """Assumes the CPU's bf16 support is what /proc/cpuinfo says (inception_hub.cpu): where it has
    AVX512_BF16 or AMX-BF16 the model really runs in bf16; elsewhere bf16 is refused up front."""
    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"].astype(np.float32) / 255
    ckpt = checkpoints["inception_v1", "v1"]
    if not cpu().bf16:
        with pytest.raises(InputError, match="no bf16 instructions"):
            inception_hub.load("inception_v1", checkpoint=ckpt, precision="bf16")
        return
    fast = inception_hub.load("inception_v1", checkpoint=ckpt, precision="bf16")
    logits = fast(x)
    assert np.abs(logits - ref["logits"]).max() > 1e-4  # ...and really is running in bf16
    assert fast.backend == "openvino"
    assert np.abs(logits - ref["logits"]).max() < 0.5  # bf16 is approximate...
    assert (logits.argmax(1) == ref["logits"].argmax(1)).mean() >= 0.8


def test_openvino_outputs_go_by_the_models_own_names():
    """OpenVINO gives an output tensor both its node's name and the graph output's, in a set whose
    order changes between runs; the runner must find `feature_vector` and `feature_map` every time."""
    from inception_hub.engine.onnx import output_names

    class Output:
        def __init__(self, *names: str) -> None:
            self.names = names

        def get_names(self) -> list[str]:
            return list(self.names)  # the node's name first, as set order sometimes has it

    outputs = [
        Output("Add_261", "logits"),
        Output("Flatten_257", "feature_vector"),
        Output("Transpose_9", "feature_map"),
    ]
    assert output_names([*outputs, Output("b_2", "a_1")]) == ["logits", "feature_vector", "feature_map", "a_1"]


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


@pytest.mark.slow  # quantizes twice, about 40 s
def test_int8_is_opt_in_cached_and_close_to_fp32(checkpoints, tmp_path):
    """int8 is calibrated once, cached beside the fp32 model, runs on both engines, and keeps the
    fp32 top-1 within its top-5. Synthetic weights give flat logits, so agreement here is a lower
    bound of what real weights give (benchmarks/throughput.py reports it on 900 photos)."""
    ckpt = checkpoints["inception_v1", "v1"]
    photos = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[::15]
    x = np.stack([load_image(p, (224, 224)) for p in photos])
    exact = inception_hub.load("inception_v1", checkpoint=ckpt, backend="onnxruntime")(x)
    fast = inception_hub.load("inception_v1", checkpoint=ckpt, backend="onnxruntime", precision="int8")
    engines = cache_dir() / "engines" / "inception_v1"
    (int8,) = engines.glob("*-int8-*.onnx")
    (fp32,) = set(engines.glob("*.onnx")) - {int8}
    assert int8.name.startswith(fp32.stem)  # beside the fp32 model it was made from
    model = onnx.load(int8)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) >= 50
    assert int8.stat().st_size < fp32.stat().st_size / 3  # int8 weights
    logits = fast(x)
    assert np.abs(logits - exact).max() > 1e-3  # it really runs quantized
    top5 = np.argsort(exact, 1)[:, -5:]
    in_top5 = np.mean([t in row for t, row in zip(logits.argmax(1), top5, strict=True)])
    assert in_top5 >= 0.9 and (logits.argmax(1) == exact.argmax(1)).mean() >= 0.5, in_top5
    stamp = int8.stat().st_mtime_ns
    on_openvino = inception_hub.load("inception_v1", checkpoint=ckpt, backend="openvino", precision="int8")
    assert int8.stat().st_mtime_ns == stamp  # one quantization serves both engines
    in_top5 = np.mean([t in row for t, row in zip(on_openvino(x).argmax(1), top5, strict=True)])
    assert in_top5 >= 0.9, in_top5
    # A calibration folder of one's own, with a file that cannot be read: a second int8 model.
    own = tmp_path / "calibration"
    own.mkdir()
    for p in photos[:3]:
        (own / p.name).write_bytes(p.read_bytes())
    (own / "broken.jpg").write_bytes(b"not a jpeg")
    inception_hub.load("inception_v1", checkpoint=ckpt, precision="int8", calibration=own)
    assert len(list(engines.glob("*-int8-*.onnx"))) == 2


def test_int8_refusals(checkpoints, tmp_path):
    ckpt = checkpoints["inception_v1", "v1"]
    with pytest.raises(InputError, match="int8 runs on the onnxruntime and openvino backends"):
        inception_hub.load("inception_v1", checkpoint=ckpt, backend="tf", precision="int8")
    with pytest.raises(InputError, match="applies to precision int8 only"):
        inception_hub.load("inception_v1", checkpoint=ckpt, calibration=tmp_path)
    with pytest.raises(InputError, match="no images in calibration folder"):
        inception_hub.load("inception_v1", checkpoint=ckpt, precision="int8", calibration=tmp_path)
    with pytest.raises(InputError, match="does not exist"):
        inception_hub.load("inception_v1", checkpoint=ckpt, precision="int8", calibration=tmp_path / "nope")
