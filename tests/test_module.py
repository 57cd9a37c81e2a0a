"""The public module API: load, call, input checks."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

import inception_hub
from conftest import reference
from inception_hub.errors import InputError


@pytest.fixture(scope="module")
def ref224():
    r = reference("inception_v1", "224x224")
    return r["inputs_u8"].astype(np.float32) / 255, r


def test_load_and_call_matches_reference(clf, ref224):
    x, ref = ref224
    assert clf.expected_image_size == (224, 224)
    assert len(clf.labels) == 1001 and clf.labels[0] == "background"
    logits = clf(x)
    assert isinstance(logits, np.ndarray) and logits.dtype == np.float32 and logits.shape == (17, 1001)
    np.testing.assert_allclose(logits, ref["logits"], atol=1e-4, rtol=0)
    # tf.Tensor input, and chunked batches, give the same answer.
    np.testing.assert_allclose(clf(tf.constant(x[:5])), ref["logits"][:5], atol=1e-4, rtol=0)
    np.testing.assert_allclose(clf(x, batch_size=4), logits, atol=1e-5, rtol=0)
    preds = clf.predict(x[:2], top=3)
    assert len(preds) == 2 and [p.index for p in preds[0]] == list(np.argsort(-ref["logits"][0])[:3])


def test_feature_vector_module_from_v2_checkpoint(checkpoints, ref224):
    x, ref = ref224
    fv = inception_hub.load(
        "https://tfhub.dev/google/imagenet/inception_v1/feature_vector/4",
        checkpoint=checkpoints["inception_v1", "v2"],
        backend="tf",
    )
    assert fv.labels is None and fv.output_dim == 1024
    np.testing.assert_allclose(fv(x), ref["feature_vector"], atol=1e-4, rtol=0)
    assert not any("Logits" in v.name for v in fv.net.variables)
    with pytest.raises(InputError, match="outputs feature vectors"):
        fv.predict(x)


def test_variable_size_for_v3_and_later(clf):
    r = reference("inception_v1", "256x320")
    np.testing.assert_allclose(clf(r["inputs_u8"].astype(np.float32) / 255), r["logits"], atol=1e-4, rtol=0)


def test_version_1_has_a_fixed_size(checkpoints):
    m = inception_hub.load("inception_v1/classification/1", checkpoint=checkpoints["inception_v1", "v1"])
    assert m(np.zeros((1, 224, 224, 3), np.float32)).shape == (1, 1001)
    with pytest.raises(InputError, match="takes images of exactly 224x224, got 256x320; .*version 3 or later"):
        m(np.zeros((1, 256, 320, 3), np.float32))


@pytest.mark.parametrize(
    "images,match",
    [
        (np.zeros((224, 224, 3), np.float32), r"got one image \[224, 224, 3\]: use images\[None\]"),
        (np.zeros((1, 3, 224, 224), np.float32), r"shape \[N, H, W, 3\] .*got \[1, 3, 224, 224\]"),
        (np.zeros((1, 224, 224, 4), np.float32), r"got \[1, 224, 224, 4\]"),
        (np.zeros((1, 224, 224, 3), np.uint8), r"float32 in \[0, 1\], got dtype uint8; .* / 255"),
        (np.full((1, 224, 224, 3), 200.0, np.float32), r"look like 0-255: divide by 255"),
        (np.full((1, 224, 224, 3), -1.0, np.float32), r"must be in \[0, 1\], got values in \[-1, -1\]"),
        (np.full((1, 224, 224, 3), np.nan, np.float32), "NaN or infinite"),
        ("cat.jpg", "takes image arrays; for files use inception_hub.load_image"),
        ([[1, 2], [3]], "numeric array"),
    ],
)
def test_bad_inputs_get_clear_errors(clf, images, match):
    with pytest.raises(InputError, match=match):
        clf(images)


def test_too_small_for_irv2(checkpoints):
    m = inception_hub.load("inception_resnet_v2/feature_vector", checkpoint=checkpoints["inception_resnet_v2", "v1"])
    with pytest.raises(InputError, match="too small for inception_resnet_v2 .at least 75"):
        m(np.zeros((1, 64, 64, 3), np.float32))
    assert m(np.zeros((0, 299, 299, 3), np.float32)).shape == (0, 1536)


def test_feature_vector_twin_shares_the_tf_network(v1_ckpt, ref224):
    x, ref = ref224
    clf = inception_hub.load("inception_v1", checkpoint=v1_ckpt, backend="tf")
    fv = clf.feature_vector()
    assert fv.net is clf.net  # one set of variables for both outputs
    assert fv.labels is None and fv.spec.kind == "feature_vector" and fv.feature_vector() is fv
    np.testing.assert_allclose(fv(x), ref["feature_vector"], atol=1e-4, rtol=0)


def test_identity_is_the_digest_known_at_load_and_reads_nothing_again(v1_ckpt, synth_weights, monkeypatch):
    """`embed`, `index` and `serve --index` ask a module which weights it has: the digest was
    known when the weights were read, so asking reads and hashes no checkpoint again."""
    from inception_hub import source as source_module
    from inception_hub.weights import digest

    clf = inception_hub.load("inception_v1", v1_ckpt, backend="onnxruntime")
    reads = []
    monkeypatch.setattr(source_module, "load_weights", lambda *a, **k: reads.append(a))
    assert clf.identity() == digest(synth_weights["inception_v1"])
    assert clf.feature_vector().identity() == clf.identity() and reads == []


def test_a_folder_named_like_a_short_name_does_not_shadow_it(v1_ckpt, tmp_path, monkeypatch):
    """An export in ./inception_v1 once answered for the short name `inception_v1`: the name
    means the catalog's module, and the folder is loaded when written as a path."""
    from inception_hub.export import export
    from inception_hub.source import resolve_source

    export("inception_v1", tmp_path / "inception_v1", v1_ckpt, format="onnx")
    monkeypatch.chdir(tmp_path)
    assert resolve_source("inception_v1").exported is None
    assert resolve_source("./inception_v1").exported == str(tmp_path / "inception_v1" / "model.onnx")
    assert resolve_source(tmp_path / "inception_v1").exported is not None
