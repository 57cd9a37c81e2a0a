"""Exports, proven with the real tensorflow_hub 0.16.1 client and tf_keras."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_hub as hub
import tf_keras

import inception_hub
from conftest import IMAGES, reference
from inception_hub.cli import main
from inception_hub.errors import InceptionHubError
from inception_hub.export import export, get_expected_image_size
from inception_hub.export.proto import module_def_v3, read_image_size

pytestmark = pytest.mark.slow  # exports modules, Inception-ResNet-V2 included


@pytest.fixture(scope="module")
def exported(checkpoints, tmp_path_factory):
    """Lazily exported modules, one per handle, shared by the tests of this file."""
    root = tmp_path_factory.mktemp("modules")
    cache = {}

    def get(handle):
        if handle not in cache:
            spec = inception_hub.resolve(handle)
            cache[handle] = export(spec, root / handle.replace("/", "_"), checkpoints[spec.arch, "v2"])
        return str(cache[handle])

    return get


def ref_inputs(arch, size):
    r = reference(arch, size)
    return r["inputs_u8"].astype(np.float32) / 255, r


@pytest.mark.parametrize("arch,size", [("inception_v1", "224x224"), ("inception_resnet_v2", "299x299")])
def test_keras_layer_in_tf_keras_sequential_matches_reference(exported, arch, size):
    x, ref = ref_inputs(arch, size)
    model = tf_keras.Sequential([hub.KerasLayer(exported(f"{arch}/classification/5"))])
    model.build([None, *x.shape[1:]])
    np.testing.assert_allclose(model.predict(x, verbose=0), ref["logits"], atol=1e-4, rtol=0)


def test_variable_size_and_serving_default(exported):
    x, ref = ref_inputs("inception_v1", "256x320")
    loaded = hub.load(exported("inception_v1/feature_vector/5"))
    np.testing.assert_allclose(loaded(x), ref["feature_vector"], atol=1e-4, rtol=0)
    sig = loaded.signatures["serving_default"]
    assert list(sig.structured_input_signature[1]) == ["images"]
    out = sig(images=tf.constant(x))
    assert list(out) == ["feature_vector"]
    np.testing.assert_allclose(out["feature_vector"], ref["feature_vector"], atol=1e-4, rtol=0)
    clf = hub.load(exported("inception_v1/classification/5"))
    published = {"serving_default", "image_classification", "image_feature_vector"}
    assert set(clf.signatures) == published | {"serving_bytes"}
    np.testing.assert_allclose(
        clf.signatures["serving_default"](images=tf.constant(x))["logits"], ref["logits"], atol=1e-4, rtol=0
    )
    np.testing.assert_allclose(
        clf.signatures["image_feature_vector"](images=tf.constant(x))["default"],
        ref["feature_vector"],
        atol=1e-4,
        rtol=0,
    )
    # Version 4 is the same model without signatures, as published.
    assert not hub.load(exported("inception_v1/classification/4")).signatures


def test_raw_bytes_signature_equals_classify_on_the_same_files(exported, tmp_path):
    """TF Serving can take the photos themselves: decoding and TF-Slim preprocessing run inside
    the v5 graph and give what `classify` gives (its pipeline on the same folder)."""
    from PIL import Image

    from inception_hub.pipeline import run

    photos = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:5] + [IMAGES / "grace_hopper.jpg"]
    Image.open(photos[0]).save(tmp_path / "photo.png")  # PNG
    Image.open(photos[1]).convert("L").save(tmp_path / "grey.jpg")  # one-channel JPEG
    Image.open(photos[2]).resize((301, 157)).save(tmp_path / "wide.jpg", quality=75)
    files = [str(p) for p in photos] + sorted(str(p) for p in tmp_path.iterdir())
    folder = exported("inception_v1/classification/5")
    module = inception_hub.load(folder)
    expected = np.stack([r.output for r in run(module, files)])
    signature = tf.saved_model.load(folder).signatures["serving_bytes"]
    assert list(signature.structured_input_signature[1]) == ["image_bytes"]
    out = signature(image_bytes=tf.constant([Path(f).read_bytes() for f in files]))
    np.testing.assert_allclose(out["logits"], expected, atol=1e-4, rtol=0)
    top = inception_hub.decode_predictions(expected, top=5)
    assert out["classes"].numpy().tolist() == [[p.index for p in row] for row in top]
    assert [[s.decode() for s in row] for row in out["labels"].numpy()] == [[p.label for p in row] for row in top]
    np.testing.assert_allclose(out["scores"], [[p.score for p in row] for row in top], atol=1e-6)
    features = tf.saved_model.load(exported("inception_v1/feature_vector/5")).signatures["serving_bytes"]
    fv = features(image_bytes=tf.constant([Path(f).read_bytes() for f in files[:2]]))
    np.testing.assert_allclose(
        fv["feature_vector"],
        module.feature_vector()(np.stack([inception_hub.load_image(f, (224, 224)) for f in files[:2]])),
        atol=1e-4,
        rtol=0,
    )


def test_keras3_tfsmlayer_runs_the_v5_export(exported):
    # tf.keras is Keras 3 since TF 2.16, where hub.KerasLayer cannot be used; TFSMLayer is the
    # route for a SavedModel there (inference only: BatchNorm stays in inference mode).
    import keras

    x, ref = ref_inputs("inception_v1", "256x320")
    layer = keras.layers.TFSMLayer(exported("inception_v1/classification/5"), call_endpoint="serving_default")
    inputs = keras.Input(shape=(None, None, 3))
    model = keras.Model(inputs, layer(inputs)["logits"])
    assert keras.__version__.startswith("3.") and tf.keras.layers.TFSMLayer is keras.layers.TFSMLayer
    np.testing.assert_allclose(model.predict(x, verbose=0), ref["logits"], atol=1e-4, rtol=0)
    features = keras.layers.TFSMLayer(exported("inception_v1/feature_vector/5"), call_endpoint="serving_default")
    np.testing.assert_allclose(features(x)["feature_vector"], ref["feature_vector"], atol=1e-4, rtol=0)


def test_saved_model_attributes(exported, synth_weights):
    loaded = hub.load(exported("inception_v1/classification/5"))
    assert len(loaded.variables) == 230
    assert len(loaded.trainable_variables) == 116
    assert not any("moving_" in v.name for v in loaded.trainable_variables)
    w = synth_weights["inception_v1"]
    expect = 4e-5 * sum(0.5 * float((v.astype(np.float64) ** 2).sum()) for n, v in w.items() if n.endswith("/weights"))
    assert float(loaded.regularization_losses[0]()) == pytest.approx(expect, rel=1e-5)


def test_fine_tuning_through_keras_layer(exported, synth_weights):
    layer = hub.KerasLayer(
        exported("inception_v1/feature_vector/5"), trainable=True, arguments=dict(batch_norm_momentum=0.997)
    )
    model = tf_keras.Sequential([layer, tf_keras.layers.Dense(3)])
    model.build([None, 96, 96, 3])
    model.compile(tf_keras.optimizers.SGD(0.01), tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert len(model.losses) == 1  # the module's weight decay reaches Keras
    x = tf.random.stateless_uniform([4, 96, 96, 3], seed=[5, 6]).numpy()
    y = np.array([0, 1, 2, 0])
    name = "InceptionV1/Conv2d_1a_7x7"
    var = {v.name.split(":")[0]: v for v in layer.weights}
    w_before = var[f"{name}/weights"].numpy()
    conv = tf.nn.conv2d(2 * x - 1, w_before, 2, "SAME").numpy()
    model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(var[f"{name}/weights"].numpy(), w_before)
    old = synth_weights["inception_v1"][f"{name}/BatchNorm/moving_mean"]
    np.testing.assert_allclose(
        var[f"{name}/BatchNorm/moving_mean"].numpy(),
        0.997 * old + 0.003 * conv.mean(axis=(0, 1, 2)),
        rtol=1e-4,
        atol=1e-5,
    )
    # A few more steps: training goes on, the head and the backbone keep moving.
    head_before, w_step1 = model.layers[1].kernel.numpy(), var[f"{name}/weights"].numpy()
    history = model.fit(x, y, batch_size=2, epochs=2, shuffle=False, verbose=0).history
    assert np.isfinite(history["loss"]).all()
    assert not np.allclose(model.layers[1].kernel.numpy(), head_before)
    assert not np.allclose(var[f"{name}/weights"].numpy(), w_step1)


def test_gradient_tape_persistent(exported):
    loaded = hub.load(exported("inception_v1/feature_vector/5"))
    x = tf.random.stateless_uniform([2, 64, 64, 3], seed=[7, 8])
    with tf.GradientTape(persistent=True) as tape:
        features = loaded(x, training=True)
        a, b = tf.reduce_sum(features), tf.reduce_mean(features**2)
    ga = tape.gradient(a, loaded.trainable_variables)
    gb = tape.gradient(b, loaded.trainable_variables)
    assert all(g is not None for g in ga + gb)
    assert float(tf.reduce_sum(tf.abs(ga[0]))) > 0


def test_tf1_module_signatures_match_reference(exported):
    x, ref = ref_inputs("inception_v1", "224x224")
    path = exported("inception_v1/classification/1")
    loaded = hub.load(path, tags=[])
    assert set(loaded.signatures) == {"default", "image_classification", "image_feature_vector"}
    out = loaded.signatures["image_classification"](images=tf.constant(x))
    np.testing.assert_allclose(out["default"], ref["logits"], atol=1e-4, rtol=0)
    assert out["InceptionV1/Mixed_5c"].shape == (17, 7, 7, 1024)
    np.testing.assert_allclose(
        tf.reduce_mean(out["InceptionV1/Mixed_4c"], [1, 2]), ref["endpoint_mean/Mixed_4c"], atol=1e-4, rtol=0
    )
    assert loaded.signatures["default"].structured_input_signature[1]["images"].shape.as_list() == [None, 224, 224, 3]
    layer = hub.KerasLayer(path, signature="image_feature_vector", output_key="default")
    model = tf_keras.Sequential([layer])
    model.build([None, 224, 224, 3])
    np.testing.assert_allclose(model.predict(x, verbose=0), ref["feature_vector"], atol=1e-4, rtol=0)
    assert (Path(path, "tfhub_module.pb").read_bytes()) == module_def_v3() == b"\x08\x03"


def test_inception_hub_load_runs_tf1_hub_exports(exported):
    x, ref = ref_inputs("inception_v1", "224x224")
    module = inception_hub.load(exported("inception_v1/classification/1"))
    assert module.expected_image_size == (224, 224) and len(module.labels) == 1001
    np.testing.assert_allclose(module(x), ref["logits"], atol=1e-4, rtol=0)
    np.testing.assert_allclose(module.feature_vector()(x), ref["feature_vector"], atol=1e-4, rtol=0)
    with pytest.raises(inception_hub.InputError, match="224"):
        module(np.zeros((1, 256, 320, 3), np.float32))  # version 1: fixed size


def test_tf1_irv2_feature_vector_module(exported):
    x, ref = ref_inputs("inception_resnet_v2", "299x299")
    loaded = hub.load(exported("inception_resnet_v2/feature_vector/1"), tags=[])
    assert "image_classification" not in loaded.signatures
    out = loaded.signatures["image_feature_vector"](images=tf.constant(x[:4]))["default"]
    np.testing.assert_allclose(out, ref["feature_vector"][:4], atol=1e-4, rtol=0)


def test_tf1_train_graph_in_graph_mode(exported):
    path = exported("inception_v1/feature_vector/3")  # version 3: variable input size
    x = tf.random.stateless_uniform([4, 128, 160, 3], seed=[9, 10]).numpy()
    name = "InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_mean"
    results = {}
    for tags in ([], ["train"]):
        with tf.Graph().as_default() as g, tf.compat.v1.Session(graph=g) as sess:
            meta = tf.compat.v1.saved_model.loader.load(sess, tags, path)
            sig = meta.signature_def["image_feature_vector"]
            images = g.get_tensor_by_name(sig.inputs["images"].name)
            features = g.get_tensor_by_name(sig.outputs["default"].name)
            updates = tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)
            moving = [v for v in tf.compat.v1.global_variables() if v.op.name == name][0]
            before = sess.run(moving)
            results[tuple(tags)] = sess.run(features, {images: x})
            np.testing.assert_array_equal(sess.run(moving), before)  # updates run only when asked
            if tags:
                assert len(updates) == 2 * 57  # mean and variance of every BatchNorm
                sess.run(updates, {images: x})
                assert not np.allclose(sess.run(moving), before)
            else:
                assert not updates
    # The train graph normalizes with batch statistics, the inference graph with moving ones.
    assert not np.allclose(results[()], results[("train",)], atol=1e-3)
    with tf.Graph().as_default():
        assert "image_feature_vector" in hub.load(path, tags={"train"}).signatures


def test_expected_image_size_and_metadata(exported):
    assert get_expected_image_size(exported("inception_resnet_v2/feature_vector/1")) == (299, 299)
    assert get_expected_image_size(exported("inception_v1/classification/5")) == (224, 224)
    assert get_expected_image_size("google/imagenet/inception_resnet_v2/classification/5") == (299, 299)
    path = exported("inception_v1/classification/1")
    from tensorflow.core.protobuf import saved_model_pb2

    sm = saved_model_pb2.SavedModel.FromString(Path(path, "saved_model.pb").read_bytes())
    assert sorted(list(mg.meta_info_def.tags) for mg in sm.meta_graphs) == [[], ["train"]]
    for mg in sm.meta_graphs:
        (attachment,) = mg.collection_def["hub_module_attachments"].bytes_list.value
        assert read_image_size(attachment) == ("image_module_info", (224, 224))


def test_export_cli_and_refusing_to_clobber(checkpoints, tmp_path, capsys):
    out = tmp_path / "m"
    ckpt = str(checkpoints["inception_v1", "v1"])
    assert main(["export", "inception_v1/feature_vector/5", str(out), "--checkpoint", ckpt, "--no-progress"]) == 0
    assert "as a TF2 SavedModel" in capsys.readouterr().out
    assert (out / "saved_model.pb").is_file() and (out / "assets.extra" / "inception_hub.json").is_file()
    assert main(["export", "inception_v1/feature_vector/5", str(out), "--checkpoint", ckpt, "--no-progress"]) == 2
    assert "already exists (a folder that is not empty)" in capsys.readouterr().err
    with pytest.raises(InceptionHubError):
        export("inception_v1/classification/1", out, ckpt)
