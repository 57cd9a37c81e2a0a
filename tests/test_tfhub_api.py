"""`inception_hub.tfhub`, tensorflow_hub's API on TensorFlow 2.21 and Keras 3: the module pages'
and TF's tutorials' code runs with `import inception_hub.tfhub as hub` the one change, within 1e-4
of the TF-Slim reference, and never reaches for the network (every attempt would fail and is
recorded). TF1 graph code and the JAX and PyTorch backends run in processes of their own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import inception_hub
import inception_hub.tfhub as hub
from conftest import reference
from inception_hub.errors import InputError, WeightsUnavailableError
from network_guard import block_network

HERE = Path(__file__).resolve().parent
V1_C1 = "https://tfhub.dev/google/imagenet/inception_v1/classification/1"
V1_C4 = "https://tfhub.dev/google/imagenet/inception_v1/classification/4"
V1_C5 = "https://tfhub.dev/google/imagenet/inception_v1/classification/5"
V1_F5 = "https://tfhub.dev/google/imagenet/inception_v1/feature_vector/5"
FIRST = "InceptionV1/Conv2d_1a_7x7/"


@pytest.fixture(autouse=True)
def network_attempts(monkeypatch):
    attempts = block_network(monkeypatch.setattr)
    yield attempts
    assert attempts == [], f"the test tried the network: {attempts}"


@pytest.fixture
def v1(checkpoints):
    """The reference inception_v1 weights in this test's cache, as `inception-hub fetch` puts them."""
    inception_hub.fetch("inception_v1", checkpoints["inception_v1", "v1"], progress=False)
    ref = reference("inception_v1", "224x224")
    return ref, ref["inputs_u8"][:4].astype(np.float32) / 255


def npy(x) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def offline_env(cache: Path) -> dict:
    """A child process's environment: its own cache, offline, and proxies at a closed port."""
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(INCEPTION_HUB_CACHE=str(cache), INCEPTION_HUB_OFFLINE="1", PYTHONPATH=str(HERE))
    env.update({k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")})
    return env


def run_check(script: str, args: list[str], env: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, str(HERE / script), *args], capture_output=True, text=True, env=env, timeout=1500
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["network_attempts"] == []
    return result


# The package face ------------------------------------------------------------------------------


def test_the_face_and_the_cli_modules_import_neither_keras_nor_tensorflow():
    code = (
        "import sys, inception_hub.tfhub as hub, inception_hub.tfhub.cache, inception_hub.tfhub.server\n"
        "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules), 'KerasLayer' in dir(hub))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True"]
    names = {"KerasLayer", "Module", "load", "resolve", "load_module_spec", "get_expected_image_size"}
    assert names <= set(hub.__all__)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        hub.nope  # noqa: B018


def test_the_network_guard_refuses_requests_and_offline_weights_are_refused_without_one(network_attempts):
    with pytest.raises((urllib.error.URLError, OSError)):
        urllib.request.urlopen("https://tfhub.dev/google/imagenet/inception_v1/classification/5", timeout=5)
    assert network_attempts
    network_attempts.clear()
    # No weights cached and INCEPTION_HUB_OFFLINE: a clear refusal, not a download attempt.
    with pytest.raises(WeightsUnavailableError, match="not cached"):
        hub.KerasLayer("https://tfhub.dev/google/imagenet/inception_resnet_v2/feature_vector/5")


# KerasLayer ------------------------------------------------------------------------------------


@pytest.mark.slow  # builds and runs the network
def test_the_classification_5_page_runs_in_tf_keras_sequential(v1):
    import tensorflow as tf

    ref, images = v1
    # From the module page:
    m = tf.keras.Sequential([
        hub.KerasLayer("https://tfhub.dev/google/imagenet/inception_v1/classification/5")
    ])  # fmt: skip
    m.build([None, 224, 224, 3])  # Batch input shape.
    assert isinstance(m.layers[0], tf.keras.layers.Layer)  # Keras 3's own layer class
    np.testing.assert_allclose(m(images), ref["logits"][:4], atol=1e-4, rtol=0)
    # Version 3 and later take any size.
    other = reference("inception_v1", "256x320")
    got = hub.KerasLayer(V1_C5)(other["inputs_u8"][:2].astype(np.float32) / 255)
    np.testing.assert_allclose(got, other["logits"][:2], atol=1e-4, rtol=0)
    # Frozen by default: nothing to train, no weight decay, BatchNorm in inference mode.
    assert m.layers[0].trainable_weights == [] and m.losses == []
    np.testing.assert_allclose(m(images, training=True), ref["logits"][:4], atol=1e-4, rtol=0)


@pytest.mark.slow  # builds and runs the network
def test_signatures_give_the_outputs_the_published_modules_signatures_did(v1):
    ref, images = v1
    features = hub.KerasLayer(V1_C5, signature="image_feature_vector")(images)
    np.testing.assert_allclose(features, ref["feature_vector"][:4], atol=1e-4, rtol=0)
    tf2 = hub.KerasLayer(V1_C5, signature="serving_default", signature_outputs_as_dict=True)(images)
    assert list(tf2) == ["logits"]
    tf1 = hub.KerasLayer(V1_C1, signature="image_feature_vector", signature_outputs_as_dict=True)(images)
    assert "default" in tf1 and "InceptionV1/Mixed_5c" in tf1 and "InceptionV1/Logits" in tf1
    np.testing.assert_allclose(tf1["default"], ref["feature_vector"][:4], atol=1e-4, rtol=0)
    np.testing.assert_allclose(tf1["InceptionV1/Logits"], ref["logits"][:4], atol=1e-4, rtol=0)
    mixed = hub.KerasLayer(V1_C1, output_key="InceptionV1/Mixed_5c")(images)
    np.testing.assert_allclose(npy(mixed).mean(axis=(1, 2)), ref["endpoint_mean/Mixed_5c"][:4], atol=1e-4, rtol=0)
    assert hub.KerasLayer(V1_C5, output_shape=[1001]).compute_output_shape((None, 224, 224, 3)) == (None, 1001)
    with pytest.raises(ValueError, match="is not this module's output shape"):
        hub.KerasLayer(V1_C5, output_shape=[1000])


@pytest.mark.parametrize(
    ("handle", "kwargs", "message"),
    [
        (V1_C5, {"signature": "nope"}, "its signatures: serving_default, image_classification, image_feature_vector"),
        (V1_C5, {"output_key": "nope"}, "output_key 'nope' of signature 'serving_default'; its outputs: logits"),
        (V1_C4, {"signature": "serving_default"}, "version 4 was published without signatures"),
        (V1_C4, {"signature_outputs_as_dict": True}, "signature_outputs_as_dict has no meaning"),
        (V1_C5, {"output_key": "logits", "signature_outputs_as_dict": True}, "not both"),
        (V1_C5, {"arguments": {"batch_norm_decay": 0.9}}, r"arguments \['batch_norm_decay'\] have no meaning"),
        (V1_C5, {"tags": {"train"}}, "train it with trainable=True"),
        (V1_C5, {"batch_size": 4}, "Unrecognized keyword arguments"),
        ("google/imagenet/inception_v1/classification/7", {}, "unknown model handle"),
    ],
)
def test_arguments_without_meaning_are_refused_by_name(handle, kwargs, message):
    # Refused before any weights are read: none are cached here.
    with pytest.raises(ValueError, match=message):
        hub.KerasLayer(handle, **kwargs)


@pytest.mark.slow  # builds the network
def test_version_1_takes_its_one_size(v1):
    import keras

    with pytest.raises(InputError, match="takes 224x224 images only, got 256x320"):
        hub.KerasLayer(V1_C1)(np.zeros((1, 256, 320, 3), np.float32))
    with pytest.raises(InputError, match="takes 224x224 images only"):
        keras.Sequential([keras.Input((299, 299, 3)), hub.KerasLayer(V1_C1)])


@pytest.mark.slow  # builds, saves and reloads the network
def test_keras_sequential_functional_models_and_save_and_reload(v1, tmp_path):
    import keras

    ref, images = v1
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Dense(3, name="head")(hub.KerasLayer(V1_F5, name="features")(inputs))
    model = keras.Model(inputs, outputs)
    model.get_layer("head").set_weights([np.eye(1024, 3, dtype=np.float32), np.zeros(3, np.float32)])
    np.testing.assert_allclose(model(images), ref["feature_vector"][:4, :3], atol=1e-4, rtol=0)
    model.save(tmp_path / "m.keras")
    again = keras.models.load_model(tmp_path / "m.keras")
    assert isinstance(again.get_layer("features"), hub.KerasLayer)
    np.testing.assert_allclose(again(images), model(images), atol=1e-6, rtol=0)
    assert again.get_layer("features").get_config()["handle"] == V1_F5


@pytest.mark.slow  # trains
def test_the_fine_tuning_usage_trains_with_fit_at_the_given_momentum(v1):
    import tensorflow as tf

    ref, images = v1
    # From the module page (inside the Sequential of its usage):
    m = tf.keras.Sequential([
        hub.KerasLayer("https://tfhub.dev/google/imagenet/inception_v1/classification/5",
                       trainable=True, arguments=dict(batch_norm_momentum=0.997))
    ])  # fmt: skip
    m.build([None, 224, 224, 3])
    np.testing.assert_allclose(m(images), ref["logits"][:4], atol=1e-4, rtol=0)  # inference mode
    layer = m.layers[0]
    weights = [v for v in layer.trainable_weights if v.path.endswith("weights")]
    l2 = 4e-5 / 2 * sum(float(np.sum(npy(v).astype(np.float64) ** 2)) for v in weights)
    assert len(m.losses) == len(weights) == 58
    assert float(sum(npy(x) for x in m.losses)) == pytest.approx(l2, rel=1e-5)

    first = layer.resolved_object.get_layer("Conv2d_1a_7x7")
    mean0, w0 = npy(first.slim[FIRST + "BatchNorm/moving_mean"]), npy(first.slim[FIRST + "weights"])
    batch_mean = npy(tf.reduce_mean(tf.nn.conv2d(2 * images - 1, w0, 2, "SAME"), [0, 1, 2]))
    m.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss=tf.keras.losses.SparseCategoricalCrossentropy(True))
    m.fit(images, np.arange(4), batch_size=4, epochs=1, shuffle=False, verbose=0)
    mean1 = npy(first.slim[FIRST + "BatchNorm/moving_mean"])
    np.testing.assert_allclose(mean1, 0.997 * mean0 + 0.003 * batch_mean, atol=1e-6, rtol=0)
    assert np.abs(mean1 - mean0).max() > 1e-4
    assert np.abs(npy(first.slim[FIRST + "weights"]) - w0).max() > 1e-4

    # trainable=False under a new head: fit trains the head only, BatchNorm statistics included.
    frozen = hub.KerasLayer(V1_F5)
    model = tf.keras.Sequential([tf.keras.Input((224, 224, 3)), frozen, tf.keras.layers.Dense(4)])
    before = [npy(v) for v in frozen.weights]
    model.compile(optimizer=tf.keras.optimizers.SGD(0.01), loss=tf.keras.losses.SparseCategoricalCrossentropy(True))
    model.fit(images, np.arange(4), batch_size=4, epochs=1, verbose=0)
    assert all(np.array_equal(a, npy(v)) for a, v in zip(before, frozen.weights, strict=True))


@pytest.mark.slow  # trains Inception-ResNet-V2
def test_tf2_image_retraining_cells_as_written(checkpoints):
    import tensorflow as tf

    inception_hub.fetch("inception_resnet_v2", checkpoints["inception_resnet_v2", "v1"], progress=False)
    model_handle = "https://tfhub.dev/google/imagenet/inception_resnet_v2/feature-vector/4"
    IMAGE_SIZE = (299, 299)  # noqa: N806 - the notebook's names
    BATCH_SIZE = 2  # noqa: N806
    class_names = ("daisy", "roses", "tulips")
    x = reference("inception_resnet_v2", "299x299")["inputs_u8"][:2].astype(np.float32) / 255
    y = tf.one_hot([0, 2], len(class_names))
    train_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE).repeat()
    val_ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(BATCH_SIZE)
    train_size = valid_size = 2
    for do_fine_tuning in (False, True):
        # The notebook's cells:
        print("Building model with", model_handle)
        model = tf.keras.Sequential([
            # Explicitly define the input shape so the model can be properly
            # loaded by the TFLiteConverter
            tf.keras.layers.InputLayer(input_shape=IMAGE_SIZE + (3,)),
            hub.KerasLayer(model_handle, trainable=do_fine_tuning),
            tf.keras.layers.Dropout(rate=0.2),
            tf.keras.layers.Dense(len(class_names),
                                  kernel_regularizer=tf.keras.regularizers.l2(0.0001))
        ])  # fmt: skip
        model.build((None,)+IMAGE_SIZE+(3,))  # fmt: skip
        model.summary()

        model.compile(
          optimizer=tf.keras.optimizers.SGD(learning_rate=0.005, momentum=0.9),
          loss=tf.keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1),
          metrics=['accuracy'])  # fmt: skip

        steps_per_epoch = train_size // BATCH_SIZE
        validation_steps = valid_size // BATCH_SIZE
        before = npy(model.layers[0].weights[0])
        hist = model.fit(
            train_ds,
            epochs=1, steps_per_epoch=steps_per_epoch,
            validation_data=val_ds,
            validation_steps=validation_steps).history  # fmt: skip
        assert np.isfinite(hist["loss"][0]) and np.isfinite(hist["val_loss"][0])
        moved = np.abs(npy(model.layers[0].weights[0]) - before).max()
        assert (moved > 0) == do_fine_tuning  # the backbone trains only when fine-tuning
        assert len(model.losses) == (1 + 244 if do_fine_tuning else 1)  # the head's l2, and TF-Slim's on 244 convs


# The rest of the API -----------------------------------------------------------------------------


@pytest.mark.slow  # builds the network
def test_image_helpers_take_layers_handles_and_modules(v1):
    assert hub.get_expected_image_size(hub.KerasLayer(V1_F5)) == [224, 224]
    assert hub.get_expected_image_size("https://tfhub.dev/google/imagenet/inception_resnet_v2/classification/1") == [
        299,
        299,
    ]
    assert hub.get_num_image_channels(V1_C1) == 3
    assert hub.get_expected_image_size(inception_hub.load(V1_C5, backend="tf")) == [224, 224]


def test_module_refuses_eager_code_with_the_way_out():
    with pytest.raises(RuntimeError, match="disable_v2_behavior"):
        hub.Module(V1_C1)


@pytest.mark.slow  # exports
def test_resolve_builds_each_module_once_and_load_runs_it(v1, tmp_path):
    ref, images = v1
    path = Path(hub.resolve(V1_C1))
    assert path.is_relative_to(Path(os.environ["INCEPTION_HUB_CACHE"]) / "hub" / "google/imagenet/inception_v1")
    built = (path / "saved_model.pb").stat().st_mtime_ns
    assert hub.resolve("google/imagenet/inception_v1/classification/1") == str(path)  # another spelling
    assert (path / "saved_model.pb").stat().st_mtime_ns == built
    assert hub.resolve(path) == str(path)  # a module folder is its own answer
    module = hub.load(V1_C1)  # a TF1 module: its inference graph, through signatures
    out = module.signatures["image_classification"](images=images)["default"]
    np.testing.assert_allclose(out, ref["logits"][:4], atol=1e-4, rtol=0)
    spec = hub.load_module_spec(V1_C1)
    assert spec.get_tags() == [set(), {"train"}] or spec.get_tags() == [{"train"}, set()]
    assert hub.get_expected_image_size(spec) == [224, 224]
    assert spec.get_output_info_dict()["default"].get_shape().as_list() == [None, 1001]
    with pytest.raises(ValueError, match="TF2 SavedModel"):
        hub.load_module_spec(V1_C5)


@pytest.mark.slow  # exports
def test_export_folders_are_handles_too(v1, tmp_path):
    from inception_hub.export import export

    ref, images = v1
    for handle in (V1_C5, V1_C1):
        folder = export(handle, tmp_path / handle.rsplit("/", 1)[-1], progress=False)
        np.testing.assert_allclose(hub.KerasLayer(folder)(images), ref["logits"][:4], atol=1e-4, rtol=0)
        features = hub.KerasLayer(str(folder), signature="image_feature_vector")(images)
        np.testing.assert_allclose(features, ref["feature_vector"][:4], atol=1e-4, rtol=0)
    onnx = export(V1_F5, tmp_path / "onnx", format="onnx", progress=False)
    with pytest.raises(InputError, match="exported onnx model"):
        hub.KerasLayer(onnx)


# TF1 graph code and the other backends, each in a process of its own ---------------------------------


@pytest.fixture(scope="module")
def tf1_v1(checkpoints, tmp_path_factory):
    env = offline_env(tmp_path_factory.mktemp("tf1_cache"))
    return run_check("tfhub_tf1_check.py", [f"inception_v1={checkpoints['inception_v1', 'v1']}", "--train"], env)


@pytest.mark.slow  # exports and trains
def test_the_tf1_module_pages_run_on_tf2_21_in_graph_mode(tf1_v1):
    for name, page in tf1_v1["pages"].items():
        assert page["size"] == [224, 224] and page["channels"] == 3, name
        assert page["error"] < 1e-4 and max(page["signature_errors"].values()) < 1e-4, name
        assert page["input_shape"] == [None, 224, 224, 3]
        assert "default" in page["as_dict"] and "InceptionV1/Mixed_5c" in page["as_dict"]
        assert page["as_dict"] == page["output_info"]
        assert page["first_variable"].startswith("module/InceptionV1/")
        assert page["trainable_variables"] == page["update_ops"] == page["regularization_losses"] == 0
    assert tf1_v1["pages"]["inception_v1/classification"]["signatures"] == [
        "default", "image_classification", "image_feature_vector",
    ]  # fmt: skip
    assert tf1_v1["pages"]["inception_v1/feature_vector"]["signatures"] == ["default", "image_feature_vector"]


@pytest.mark.slow  # exports and trains
def test_tf1_fine_tuning_runs_batch_norm_updates_through_update_ops(tf1_v1):
    train = tf1_v1["train"]
    assert train["frozen"] == [0, 0, 0, 0]  # trainable=False: no variables, updates or losses collected
    assert train["trainable_variables"] == 116  # all but the BatchNorm moving statistics
    assert train["update_ops"] == 2 * 57  # moving mean and variance of each BatchNorm
    assert train["regularization_losses"] == 58
    assert train["regularization"][0] == pytest.approx(train["regularization"][1], rel=1e-5)
    assert train["moving_mean_error"] < 1e-6 < train["moving_mean_moved"]
    assert train["weights_moved"] > 1e-4 and train["logits_moved"] > 1e-4
    assert train["variable_scope"] == "module_1"  # a second Module gets a fresh scope


@pytest.mark.slow  # exports
def test_tf1_refusals_say_what_to_do(tf1_v1):
    refused = tf1_v1["refusals"]
    assert refused["wrong_size"].startswith("TypeError") and "(?, 224, 224, 3)" in refused["wrong_size"]
    assert "Signature 'nope' is missing" in refused["unknown_signature"]
    assert "hub.load(...) or hub.KerasLayer(...)" in refused["tf2_handle"]
    assert "No such graph variant" in refused["unknown_tags"]
    assert refused["from_folder"].startswith("module_1/")


@pytest.mark.slow  # exports Inception-ResNet-V2
def test_the_inception_resnet_v2_classification_1_page(checkpoints, tmp_path_factory):
    env = offline_env(tmp_path_factory.mktemp("tf1_irv2_cache"))
    result = run_check("tfhub_tf1_check.py", [f"inception_resnet_v2={checkpoints['inception_resnet_v2', 'v1']}"], env)
    page = result["pages"]["inception_resnet_v2/classification"]
    assert page["size"] == [299, 299] and page["input_shape"] == [None, 299, 299, 3]
    assert page["error"] < 1e-4 and max(page["signature_errors"].values()) < 1e-4
    assert "InceptionResnetV2/PreAuxLogits" in page["as_dict"]


@pytest.mark.slow  # trains on each backend
@pytest.mark.parametrize("backend", ["jax", "torch"])
def test_a_feature_vector_4_layer_trains_under_a_new_head_with_fit(backend, checkpoints, tmp_path_factory):
    env = offline_env(tmp_path_factory.mktemp(f"keras_{backend}_cache"))
    env["KERAS_BACKEND"] = backend
    result = run_check("tfhub_backend_check.py", [str(checkpoints["inception_v1", "v1"])], env)
    assert result["backend"] == backend
    assert result["feature_error"] < 1e-4
    assert np.isfinite(result["loss"])
    assert result["moving_mean_error"] < 1e-6 < result["moving_mean_moved"]  # at the default momentum 0.99
    assert result["backbone_moved"] > 1e-4 and result["head_moved"] > 1e-4
    assert result["losses"] == 57  # TF-Slim's weight decay on every conv of the backbone
    assert result["tensorflow_imported"] is False
