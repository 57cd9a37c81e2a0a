"""Class activation maps on every backend: the final end point matches TF-Slim's, the map equals
Grad-CAM's on the Keras model, and the server answers it under its limits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import inception_hub
from conftest import IMAGES, SIZES, reference
from inception_hub.cam import from_feature_map
from inception_hub.errors import InputError
from inception_hub.export import export
from inception_hub.images import load_image
from inception_hub.labels import decode_predictions
from inception_hub.nets import ARCHITECTURES
from inception_hub.nets.layers import FEATURE_MAP
from inception_hub.serve import Limits
from test_serve import Running, b64, http

GRACE = IMAGES / "grace_hopper.jpg"


def _classifier(checkpoints, arch, backend):
    handle = f"google/imagenet/{arch}/classification/5"
    return inception_hub.load(handle, checkpoint=checkpoints[arch, "v2"], backend=backend)


@pytest.mark.parametrize(
    ("arch", "backend"),
    [
        ("inception_v1", "onnxruntime"),
        ("inception_v1", "openvino"),
        ("inception_v1", "tf"),
        pytest.param("inception_resnet_v2", "onnxruntime", marks=pytest.mark.slow),
        pytest.param("inception_resnet_v2", "tf", marks=pytest.mark.slow),
    ],
)
def test_the_feature_map_is_tf_slims_final_end_point_and_its_head_gives_the_logits(checkpoints, arch, backend):
    module = _classifier(checkpoints, arch, backend)
    final = ARCHITECTURES[arch].final_endpoint
    weights, biases = module.head()
    assert weights.shape == (ARCHITECTURES[arch].num_features, 1001) and biases.shape == (1001,)
    for size in SIZES[arch]:
        ref = reference(arch, size)
        x = ref["inputs_u8"][:3].astype(np.float32) / 255
        fmap = module.feature_maps()(x)
        h, w = (int(s) for s in size.split("x"))
        assert fmap.ndim == 4 and fmap.shape[0] == 3 and fmap.shape[-1] == ARCHITECTURES[arch].num_features
        assert fmap.shape[1] < h // 16 and fmap.shape[2] < w // 16
        assert np.abs(fmap.mean(axis=(1, 2)) - ref[f"endpoint_mean/{final}"][:3]).max() <= 1e-4
        for i in range(3):  # the map's own predictions are the reference logits' top 5
            got = from_feature_map(fmap[i], weights, biases).predictions
            want = decode_predictions(ref["logits"][i : i + 1], top=5)[0]
            assert [p.index for p in got] == [p.index for p in want]
            np.testing.assert_allclose([p.score for p in got], [p.score for p in want], atol=1e-5)


@pytest.mark.parametrize("arch", ["inception_v1", pytest.param("inception_resnet_v2", marks=pytest.mark.slow)])
def test_the_engines_map_is_grad_cam_on_the_keras_model(checkpoints, arch):
    """No gradient on the engines, yet the same map: the head after the final end point is linear."""
    import inception_hub.keras as ihk
    from inception_hub.gradcam import explain

    module = _classifier(checkpoints, arch, "onnxruntime")
    model = getattr(ihk, arch)(str(checkpoints[arch, "v2"]))
    x = load_image(GRACE, module.expected_image_size)
    top = module.predict(x[None])[0]
    for cls in (None, top[2].index, 7):
        ours, grad_cam = module.explain(x, cls), explain(model, x, class_index=cls)
        assert ours.class_index == grad_cam.class_index == (top[0].index if cls is None else cls)
        assert ours.heatmap.shape == grad_cam.heatmap.shape and ours.heatmap.max() == 1.0
        assert np.abs(ours.heatmap - grad_cam.heatmap).max() <= 1e-4
        assert [p.index for p in ours.predictions] == [p.index for p in top]


def test_only_checkpoint_classifiers_explain(checkpoints, tmp_path):
    ckpt = checkpoints["inception_v1", "v2"]
    features = inception_hub.load("google/imagenet/inception_v1/feature_vector/5", checkpoint=ckpt)
    x = np.full((224, 224, 3), 0.5, np.float32)
    with pytest.raises(InputError, match="no class activation maps"):
        features.explain(x)
    folder = export("inception_v1/classification/5", tmp_path / "onnx", ckpt, format="onnx")
    with pytest.raises(InputError, match="not a feature vector or an exported file"):
        inception_hub.load(folder).explain(x)
    classifier = inception_hub.load("google/imagenet/inception_v1/classification/5", checkpoint=ckpt)
    with pytest.raises(InputError, match="class 1001 is out of range"):
        classifier.explain(x, 1001)
    with pytest.raises(InputError, match=r"one image \[height, width, 3\], got shape \[224, 224, 4\]"):
        classifier.explain(np.zeros((224, 224, 4), np.float32))


def test_the_server_explains_under_its_limits(models, checkpoints):
    module = _classifier(checkpoints, "inception_v1", None)
    x = load_image(GRACE, module.expected_image_size)
    s = Running(models, grpc=False, limits=Limits(max_body_bytes=200_000))
    try:
        url = s.url + "/models/inception_v1/explain"
        for cls in (None, 7):
            status, body = http("POST", url, {"b64": b64(GRACE)} if cls is None else {"b64": b64(GRACE), "class": cls})
            assert status == 200, body
            got, want = json.loads(body), module.explain(x, cls)
            assert got["class"] == want.class_index and got["label"] == module.labels[want.class_index]
            assert np.abs(np.array(got["heatmap"]) - want.heatmap).max() <= 1e-4
            assert [p["class"] for p in got["predictions"]] == [p.index for p in want.predictions]
            assert got["central_fraction"] == 0.875
        assert FEATURE_MAP not in models[1].compute
        status, body = http("POST", s.url + "/models/inception_v1_feature_vector/explain", {"b64": b64(GRACE)})
        assert status == 400 and "no class activation map" in json.loads(body)["error"]
        for bad in ({"b64": b64(GRACE), "class": 1001}, {"b64": b64(GRACE), "class": "cat"}, {"photo": 1}):
            status, body = http("POST", url, bad)
            assert status == 400, bad
        status, body = http("POST", url, {"b64": "A" * 300_000})
        assert status == 413 and "200000 bytes" in json.loads(body)["error"]
        status, _ = http("POST", s.url + "/models/resnet/explain", {"b64": b64(GRACE)})
        assert status == 404
    finally:
        s.shutdown()


def test_the_overlay_names_the_mapped_class_by_its_label():
    """An overlay for a class other than the top one said "class 2"; it names the class."""
    from inception_hub.cam import caption
    from inception_hub.labels import imagenet_labels

    rng = np.random.default_rng(0)
    fmap, w = rng.random((7, 7, 8), np.float32), rng.normal(size=(8, 1001)).astype(np.float32)
    b = np.zeros(1001, np.float32)
    logits = fmap.mean((0, 1)) @ w + b
    other = int(np.argsort(logits)[0])  # the least likely class: never in the top 5
    e = from_feature_map(fmap, w, b, other, None)
    assert e.label == imagenet_labels()[other]
    assert caption(e)[-1] == f"map for {imagenet_labels()[other]}" and len(caption(e)) == 6
