"""`inception-hub install-hub-cache`: unmodified tfhub.dev and Kaggle handle strings load with the
real tensorflow_hub while any request to the network would fail."""

from __future__ import annotations

import json
import os
import stat
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from conftest import reference
from inception_hub.catalog import ModelSpec, resolve, spellings
from inception_hub.cli import main
from inception_hub.errors import InceptionHubError
from inception_hub.metadata import METADATA
from inception_hub.tfhub import cache as hub_cache

V1_5 = "https://tfhub.dev/google/imagenet/inception_v1/classification/5"
IRV2_FV_4 = "https://tfhub.dev/google/imagenet/inception_resnet_v2/feature-vector/4"
V1_1 = "https://tfhub.dev/google/imagenet/inception_v1/classification/1"
KAGGLE = "https://www.kaggle.com/models/google/inception-v1/TensorFlow2/classification/2"


@pytest.fixture
def offline(monkeypatch):
    """Every HTTP(S) request goes to a proxy on a closed port, so it fails."""
    for var in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(var, raising=False)
    for var in ("https_proxy", "http_proxy", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")


@pytest.fixture(scope="module")
def tfhub_cache(checkpoints, tmp_path_factory):
    cache = tmp_path_factory.mktemp("tfhub_modules")
    argv = ["install-hub-cache", "--tfhub-cache-dir", str(cache), "--no-progress"]
    argv += [f"--checkpoint=inception_v1={checkpoints['inception_v1', 'v1']}"]
    argv += [f"--checkpoint=inception_resnet_v2={checkpoints['inception_resnet_v2', 'v1']}"]
    assert main([*argv, V1_5, V1_1, IRV2_FV_4]) == 0
    return cache


@pytest.mark.slow  # exports three modules
def test_unmodified_handles_load_offline_with_the_real_tensorflow_hub(tfhub_cache, offline, monkeypatch):
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tfhub_cache))
    # Proof that the network is out of reach: a handle that was not installed fails to load.
    with pytest.raises((urllib.error.URLError, OSError)):
        hub.load("https://tfhub.dev/google/imagenet/inception_v1/feature_vector/3", tags=[])

    v1 = reference("inception_v1", "224x224")
    x1 = v1["inputs_u8"][:4] / 255.0
    model = tf_keras.Sequential([hub.KerasLayer(V1_5)])
    model.build([None, 224, 224, 3])
    np.testing.assert_allclose(model.predict(x1, verbose=0), v1["logits"][:4], atol=1e-4, rtol=0)

    irv2 = reference("inception_resnet_v2", "299x299")
    model = tf_keras.Sequential([hub.KerasLayer(IRV2_FV_4, trainable=False)])
    model.build([None, 299, 299, 3])
    out = model.predict(irv2["inputs_u8"][:2] / 255.0, verbose=0)
    np.testing.assert_allclose(out, irv2["feature_vector"][:2], atol=1e-4, rtol=0)

    m = hub.load(V1_1, tags=[])
    out = m.signatures["default"](images=tf.constant(x1, tf.float32))["default"]
    np.testing.assert_allclose(out, v1["logits"][:4], atol=1e-4, rtol=0)

    m = hub.load(KAGGLE)
    np.testing.assert_allclose(m(tf.constant(x1, tf.float32)), v1["logits"][:4], atol=1e-4, rtol=0)

    # The spellings load never saw seeded before: the .tar.gz files, the China mirror, where
    # tfhub.dev's redirects landed, Kaggle's download API.
    for url in (
        "https://storage.googleapis.com/tfhub-modules/google/imagenet/inception_v1/classification/5.tar.gz",
        "gs://tfhub-modules/google/imagenet/inception_v1/classification/5.tar.gz",
        "https://hub.tensorflow.google.cn/google/imagenet/inception_v1/classification/5",
        "https://www.kaggle.com/models/google/inception-v1/frameworks/TensorFlow2/variations/classification/versions/2"
        "?tfhub-redirect=true",
        "https://www.kaggle.com/api/v1/models/google/inception-v1/tensorFlow2/classification/2/download",
    ):
        model = tf_keras.Sequential([hub.KerasLayer(url)])
        model.build([None, 224, 224, 3])
        np.testing.assert_allclose(model.predict(x1, verbose=0), v1["logits"][:4], atol=1e-4, rtol=0, err_msg=url)
    for url in (
        "https://storage.googleapis.com/tfhub-test-modules/google/imagenet/inception_v1/classification/1.tar.gz",
        "https://storage.googleapis.com/tfhub-test-modules/google/image/imagenet/inception_v1/classification/1.tar.gz",
        "https://www.kaggle.com/models/google/inception-v1/TensorFlow1/classification/1",
    ):
        out = hub.load(url, tags=[]).signatures["default"](images=tf.constant(x1, tf.float32))["default"]
        np.testing.assert_allclose(out, v1["logits"][:4], atol=1e-4, rtol=0, err_msg=url)


@pytest.mark.slow  # exports a module
def test_kagglehub_model_download_returns_the_module_offline(checkpoints, tmp_path, offline, monkeypatch, capsys):
    import kagglehub
    import tensorflow as tf
    import tensorflow_hub as hub
    import tf_keras

    from legacy_hub_check import block_network  # the one network guard of these tests

    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    ckpt = f"--checkpoint=inception_v1={checkpoints['inception_v1', 'v1']}"
    assert main(["install-hub-cache", "--kagglehub", V1_5, "inception_v1/feature_vector/1", ckpt, "--no-progress"]) == 0
    assert "inferred" in capsys.readouterr().out  # the TensorFlow1 version mapping is said to be a guess
    attempts = block_network(monkeypatch.setattr)
    path = kagglehub.model_download("google/inception-v1/tensorFlow2/classification/2")
    v1 = reference("inception_v1", "224x224")
    x = tf.constant(v1["inputs_u8"][:4] / 255.0, tf.float32)
    np.testing.assert_allclose(tf.saved_model.load(path)(x), v1["logits"][:4], atol=1e-4, rtol=0)
    model = tf_keras.Sequential([hub.KerasLayer(path)])
    model.build([None, 224, 224, 3])
    np.testing.assert_allclose(model.predict(x, verbose=0), v1["logits"][:4], atol=1e-4, rtol=0)
    tf1 = hub.load(kagglehub.model_download("google/inception-v1/tensorFlow1/feature-vector/1"), tags=[])
    out = tf1.signatures["image_feature_vector"](images=x)["default"]
    np.testing.assert_allclose(out, v1["feature_vector"][:4], atol=1e-4, rtol=0)
    assert attempts == []
    assert main(["install-hub-cache", "--kagglehub", "--list"]) == 0
    listed = capsys.readouterr().out
    assert (
        "google/inception-v1/TensorFlow2/classification/2  ->  google/imagenet/inception_v1/classification/5" in listed
    )
    assert "inferred" in listed


@pytest.mark.slow
def test_list_reinstall_and_remove(tfhub_cache, checkpoints, capsys):
    module = tfhub_cache / hub_cache.folder_name(V1_5.replace("feature-vector", "feature_vector"))
    built = (module / "saved_model.pb").stat().st_mtime_ns
    capsys.readouterr()
    assert main(["install-hub-cache", "--list", "--tfhub-cache-dir", str(tfhub_cache)]) == 0
    listed = capsys.readouterr().out
    for spelling in (V1_5, IRV2_FV_4, V1_1, KAGGLE, V1_5 + "?tf-hub-format=compressed", "http://" + V1_1[8:] + "/"):
        assert f"{spelling}  ->  google/imagenet/" in listed
    assert "3 modules" in listed
    assert "inferred" in listed  # V1_1 has Kaggle TensorFlow1 spellings, whose mapping is a guess

    # The same weights again: nothing is rebuilt.
    ckpt = f"inception_v1={checkpoints['inception_v1', 'v2']}"  # the same values in the V2 format
    assert main(["install-hub-cache", V1_5, "--checkpoint", ckpt, "--tfhub-cache-dir", str(tfhub_cache)]) == 0
    assert (module / "saved_model.pb").stat().st_mtime_ns == built

    assert main(["install-hub-cache", "--remove", "inception_resnet_v2", "--tfhub-cache-dir", str(tfhub_cache)]) == 0
    left = {e.spelling for e in hub_cache.entries(tfhub_cache)}
    assert IRV2_FV_4 not in left and V1_5 in left and KAGGLE in left
    assert not (tfhub_cache / hub_cache.folder_name(IRV2_FV_4)).exists()


# The installer's bookkeeping, with a stand-in for the (slow) module export --------------------


def _fake_build(spec: ModelSpec, folder, digest="d" * 64):
    (folder / "variables").mkdir(parents=True, exist_ok=True)
    (folder / "saved_model.pb").write_bytes(b"pb")
    (folder / METADATA).parent.mkdir(exist_ok=True)
    (folder / METADATA).write_text(json.dumps({"handle": spec.handle, "weights_digest": digest}))


def _install(cache, specs, digest="d" * 64, **kw):
    builds = []

    def build(spec, folder):
        builds.append(spec)
        _fake_build(spec, folder, digest)

    hub_cache.install(specs, cache, lambda arch: digest, build, report=lambda line: None, **kw)
    return builds


def test_every_spelling_is_a_link_to_one_module_with_a_descriptor(tmp_path):
    spec = resolve("inception_v1/feature_vector/5")
    old = os.umask(0o027)
    try:
        assert _install(tmp_path, [spec]) == [spec]
    finally:
        os.umask(old)
    names = {hub_cache.folder_name(s) for s in spellings(spec)}
    # 24 on tfhub.dev and hub.tensorflow.google.cn, 5 .tar.gz locations, 12 Kaggle URLs
    assert len(names) == len(spellings(spec)) == 41
    main_folder = tmp_path / hub_cache.folder_name(spec.url)
    assert main_folder.is_dir() and not main_folder.is_symlink()
    for name in names - {main_folder.name}:
        assert os.readlink(tmp_path / name) == main_folder.name
    for spelling in spellings(spec):
        descriptor = (tmp_path / f"{hub_cache.folder_name(spelling)}.descriptor.txt").read_text()
        assert descriptor.startswith(f"Module: {spelling}\n") and hub_cache.MARK in descriptor
        mode = stat.S_IMODE((tmp_path / f"{hub_cache.folder_name(spelling)}.descriptor.txt").stat().st_mode)
        assert mode == 0o640  # the umask's
    assert {e.spelling for e in hub_cache.entries(tmp_path)} == set(spellings(spec))


def test_new_weights_rebuild_the_module_and_the_same_weights_do_not(tmp_path):
    spec = resolve("inception_v1")
    assert _install(tmp_path, [spec]) == [spec]
    assert _install(tmp_path, [spec]) == []
    assert _install(tmp_path, [spec], digest="e" * 64) == [spec]
    assert {e.weights_digest for e in hub_cache.entries(tmp_path)} == {"e" * 64}


def test_modules_from_elsewhere_are_kept_unless_forced(tmp_path):
    spec = resolve("inception_v1")
    foreign = [tmp_path / hub_cache.folder_name(spec.url), tmp_path / hub_cache.folder_name(spec.url + "/")]
    for folder in foreign:
        (folder / "variables").mkdir(parents=True)
        (folder / "saved_model.pb").write_bytes(b"the module tfhub.dev served")
    assert _install(tmp_path, [spec]) == []  # its main spelling holds a foreign module: skipped whole
    assert all((f / "saved_model.pb").read_bytes() == b"the module tfhub.dev served" for f in foreign)
    foreign[0].joinpath("saved_model.pb").unlink()
    foreign[0].joinpath("variables").rmdir()
    foreign[0].rmdir()
    _install(tmp_path, [spec])  # installs, except over the other foreign folder
    assert not foreign[1].is_symlink() and (foreign[1] / "saved_model.pb").read_bytes().startswith(b"the module")
    assert spec.url + "/" not in {e.spelling for e in hub_cache.entries(tmp_path)}
    _install(tmp_path, [spec], force=True)
    assert foreign[1].is_symlink()
    hub_cache.remove(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_select_names_networks_handles_and_what_has_weights():
    assert len(hub_cache.select(["inception_v1"], {}, lambda a: False)) == 8
    assert hub_cache.select([KAGGLE], {}, lambda a: False) == [resolve(V1_5)]
    assert {s.arch for s in hub_cache.select([], {}, lambda a: a == "inception_resnet_v2")} == {"inception_resnet_v2"}
    with pytest.raises(Exception, match="inception-hub fetch"):
        hub_cache.select([], {}, lambda a: False)


def test_tfhub_cache_dir_follows_tensorflow_hub(monkeypatch, tmp_path):
    import tempfile

    monkeypatch.delenv("TFHUB_CACHE_DIR", raising=False)
    assert hub_cache.tfhub_cache_dir() == tmp_path.__class__(tempfile.gettempdir()) / "tfhub_modules"
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(tmp_path))
    assert hub_cache.tfhub_cache_dir() == tmp_path
    assert hub_cache.tfhub_cache_dir(tmp_path / "x") == tmp_path / "x"


def test_new_spellings_are_seeded(tmp_path):
    spec = resolve("inception_v1/feature_vector/1")
    _install(tmp_path, [spec])
    installed = {e.spelling for e in hub_cache.entries(tmp_path)}
    for spelling in (
        "https://storage.googleapis.com/tfhub-modules/google/imagenet/inception_v1/feature_vector/1.tar.gz",
        "https://storage.googleapis.com/tfhub-test-modules/google/imagenet/inception_v1/feature_vector/1.tar.gz",
        "https://storage.googleapis.com/tfhub-test-modules/google/image/imagenet/inception_v1/feature_vector/1.tar.gz",
        "https://hub.tensorflow.google.cn/google/imagenet/inception_v1/feature_vector/1",
        "https://www.kaggle.com/models/google/inception-v1/frameworks/TensorFlow1/variations/feature-vector/versions/1"
        "?tfhub-redirect=true",
        "https://www.kaggle.com/api/v1/models/google/inception-v1/tensorFlow1/feature-vector/1/download",
    ):
        assert spelling in installed
        assert (tmp_path / hub_cache.folder_name(spelling) / "saved_model.pb").is_file()


def test_a_cache_folder_of_another_user_is_refused(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "tfhub_modules"
    cache.mkdir()
    monkeypatch.setattr(os, "geteuid", lambda: cache.stat().st_uid + 1)
    with pytest.raises(InceptionHubError, match="belongs to another user"):
        _install(cache, [resolve("inception_v1")])
    with pytest.raises(InceptionHubError, match="belongs to another user"):
        hub_cache.remove(cache)
    assert main(["install-hub-cache", "inception_v1", "--tfhub-cache-dir", str(cache)]) == 2
    assert "belongs to another user" in capsys.readouterr().err
    assert list(cache.iterdir()) == []
    monkeypatch.undo()
    _install(tmp_path / "a-new-one", [resolve("inception_v1")])  # a folder not there yet is created, as ours


def test_remove_leaves_what_only_carries_the_mark(tmp_path):
    spec = resolve("inception_v1")
    _install(tmp_path, [spec])
    # A module tensorflow_hub downloaded, with a descriptor that has the mark in it (e.g. inside the
    # handle string it was asked for), and one of our modules replaced since by another module.
    forged = tmp_path / hub_cache.folder_name("https://example.com/m?Installed by: inception-hub")
    _fake_build(spec, forged)  # our metadata file in it too
    (forged / "saved_model.pb").write_bytes(b"someone else's module")
    Path(f"{forged}.descriptor.txt").write_text(f"Module: https://example.com/m\n{hub_cache.MARK} (weights x)\n")
    replaced = tmp_path / hub_cache.folder_name(spec.url)
    (replaced / "saved_model.pb").write_bytes(b"tfhub.dev's module, downloaded again")
    listed = {e.spelling for e in hub_cache.entries(tmp_path)}
    assert spec.url not in listed and "https://example.com/m" not in listed and spec.url + "/" in listed
    hub_cache.remove(tmp_path)
    assert (forged / "saved_model.pb").read_bytes() == b"someone else's module"
    assert (replaced / "saved_model.pb").read_bytes().startswith(b"tfhub.dev's module")
    assert not (tmp_path / hub_cache.folder_name(spec.url + "/")).exists()  # our links went
    assert hub_cache.entries(tmp_path) == []


def test_kagglehub_finds_the_modules_offline(tmp_path, offline, monkeypatch):
    import kagglehub  # the hub extra installs it

    from legacy_hub_check import block_network  # the one network guard of these tests

    attempts = block_network(monkeypatch.setattr)
    monkeypatch.setenv("KAGGLEHUB_CACHE", str(tmp_path))
    specs = [resolve("inception_v1/classification/5"), resolve("inception_resnet_v2/feature_vector/3")]
    builds = []

    def build(spec, folder):
        builds.append(spec)
        _fake_build(spec, folder)

    hub_cache.install(specs, tmp_path, lambda a: "d" * 64, build, report=lambda line: None, layout=hub_cache.KAGGLEHUB)
    assert builds == specs
    for handle, spec in (
        ("google/inception-v1/tensorFlow2/classification/2", specs[0]),
        ("google/inception-v1/TensorFlow2/classification/2", specs[0]),
        ("google/inception-resnet-v2/tensorFlow1/feature-vector/2", specs[1]),
        ("google/inception-resnet-v2/tensorFlow1/feature-vector/3", specs[1]),
    ):
        path = Path(kagglehub.model_download(handle))
        assert json.loads((path / METADATA).read_text())["handle"] == spec.handle, handle
    main_folder = tmp_path / "models/google/inception-v1/tensorFlow2/classification/2"
    assert main_folder.is_dir() and not main_folder.is_symlink()
    assert (tmp_path / "models/google/inception-v1/tensorFlow2/classification/2.complete").is_file()
    assert attempts == []
    # Proof that the network is out of reach: a version not installed fails.
    with pytest.raises(Exception):  # noqa: B017 - kagglehub's own error for a failed request
        kagglehub.model_download("google/inception-v1/tensorFlow2/classification/1")
    assert attempts
    assert len(hub_cache.remove(tmp_path, None, hub_cache.KAGGLEHUB)) == 6  # 2 + 2 versions x 2
    assert not (tmp_path / "models/google/inception-v1/tensorFlow2/classification/2.complete").exists()
    assert not main_folder.exists() and not (tmp_path / hub_cache.RECORD).exists()
