"""Handles, labels and decode_predictions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

import inception_hub
from conftest import SHARED
from inception_hub.catalog import ModelSpec, all_specs, resolve
from inception_hub.errors import InputError, UnknownHandleError
from inception_hub.labels import LABELS_SHA256, decode_predictions, imagenet_labels


@pytest.mark.parametrize(
    "handle,expected",
    [
        ("google/imagenet/inception_v1/classification/5", ("inception_v1", "classification", 5)),
        ("https://tfhub.dev/google/imagenet/inception_v1/classification/5", ("inception_v1", "classification", 5)),
        (
            "https://tfhub.dev/google/imagenet/inception_resnet_v2/feature_vector/4/",
            ("inception_resnet_v2", "feature_vector", 4),
        ),
        (
            "tfhub.dev/google/imagenet/inception_v1/feature_vector/1?tf-hub-format=compressed",
            ("inception_v1", "feature_vector", 1),
        ),
        (
            "http://tfhub.dev/google/imagenet/inception_resnet_v2/classification/3",
            ("inception_resnet_v2", "classification", 3),
        ),
        ("inception_v1", ("inception_v1", "classification", 5)),
        ("Inception-ResNet-V2", ("inception_resnet_v2", "classification", 5)),
        ("inception_resnet_v2/feature_vector", ("inception_resnet_v2", "feature_vector", 5)),
        ("inception_v1/feature_vector/1", ("inception_v1", "feature_vector", 1)),
        ("https://tfhub.dev/google/imagenet/inception_v1/feature-vector/5", ("inception_v1", "feature_vector", 5)),
        (
            "https://hub.tensorflow.google.cn/google/imagenet/inception_v1/classification/3",
            ("inception_v1", "classification", 3),
        ),
        (
            "https://www.kaggle.com/models/google/inception-v1/TensorFlow2/classification/2",
            ("inception_v1", "classification", 5),
        ),
        (
            "https://www.kaggle.com/models/google/inception-resnet-v2/frameworks/tensorFlow2/variations/feature-vector/versions/1",
            ("inception_resnet_v2", "feature_vector", 4),
        ),
        ("kaggle.com/models/google/inception-v1/tensorflow2/feature-vector/1/", ("inception_v1", "feature_vector", 4)),
        # The .tar.gz files tfhub.dev's downloads came from, and the module pages' test bucket.
        (
            "https://storage.googleapis.com/tfhub-modules/google/imagenet/inception_resnet_v2/classification/3.tar.gz",
            ("inception_resnet_v2", "classification", 3),
        ),
        (
            "https://storage.googleapis.com/tfhub-test-modules/google/imagenet/inception_v1/feature_vector/1.tar.gz",
            ("inception_v1", "feature_vector", 1),
        ),
        (
            "https://storage.googleapis.com/tfhub-test-modules/google/image/imagenet/inception_v1/feature_vector/1.tar.gz",
            ("inception_v1", "feature_vector", 1),
        ),
        (
            "gs://tfhub-modules/google/imagenet/inception_v1/classification/4.tar.gz",
            ("inception_v1", "classification", 4),
        ),
        ("tfhub-modules/google/imagenet/inception_v1/classification/4.tar.gz", ("inception_v1", "classification", 4)),
        # Where tfhub.dev's redirects landed, and Kaggle's download API.
        (
            "https://www.kaggle.com/models/google/inception-v1/frameworks/TensorFlow2/variations/classification/versions/2?tfhub-redirect=true",
            ("inception_v1", "classification", 5),
        ),
        (
            "https://www.kaggle.com/api/v1/models/google/inception-resnet-v2/tensorFlow2/feature-vector/1/download",
            ("inception_resnet_v2", "feature_vector", 4),
        ),
        # kagglehub handles, with and without a version (then the newest).
        ("google/inception-v1/tensorFlow2/classification/2", ("inception_v1", "classification", 5)),
        ("google/inception-v1/tensorFlow2/classification/1", ("inception_v1", "classification", 4)),
        ("google/inception-v1/tensorFlow2/classification", ("inception_v1", "classification", 5)),
        ("google/inception-resnet-v2/TensorFlow2/feature-vector", ("inception_resnet_v2", "feature_vector", 5)),
        # Kaggle TensorFlow1 versions (the mapping is inferred: see catalog.KAGGLE_TF1_VERSIONS).
        ("google/inception-v1/tensorFlow1/classification/1", ("inception_v1", "classification", 1)),
        ("google/inception-v1/tensorFlow1/feature-vector/2", ("inception_v1", "feature_vector", 3)),
        (
            "https://www.kaggle.com/models/google/inception-resnet-v2/frameworks/TensorFlow1/variations/classification/versions/3",
            ("inception_resnet_v2", "classification", 3),
        ),
        ("google/inception-v1/tensorFlow1/classification", ("inception_v1", "classification", 3)),
    ],
)
def test_handles_resolve(handle, expected):
    s = resolve(handle)
    assert (s.arch, s.kind, s.version) == expected


@pytest.mark.parametrize(
    "handle",
    [
        "inception_v3",
        "google/imagenet/inception_v1/classification/2",
        "google/imagenet/inception_v1/logits/5",
        "https://tfhub.dev/google/imagenet/mobilenet_v2_100_224/classification/5",
        "",
        "a/b/c/d/e/f",
        "https://www.kaggle.com/models/google/inception-v1/TensorFlow2/classification/3",
        "https://www.kaggle.com/models/google/inception-v3/TensorFlow2/classification/2",
        "google/inception-v1/tensorFlow1/classification/4",
        "google/inception-v1/pyTorch/classification/1",
        "https://storage.googleapis.com/tfhub-modules/google/imagenet/inception_v1/classification/5",
        "https://storage.googleapis.com/other-bucket/google/imagenet/inception_v1/classification/5.tar.gz",
    ],
)
def test_unknown_handles_list_the_known_ones(handle):
    with pytest.raises(UnknownHandleError) as e:
        resolve(handle)
    assert "google/imagenet/{inception_v1,inception_resnet_v2}/{classification,feature_vector}/{1,3,4,5}" in str(
        e.value
    )


def test_every_spelling_of_every_module_resolves_to_it_and_names_its_own_cache_folder():
    from inception_hub.catalog import spellings
    from inception_hub.tfhub.cache import folder_name

    folders = {}
    for spec in all_specs():
        names = spellings(spec)
        assert names[0] == spec.url and len(names) == len(set(names))
        # tfhub.dev and its mirror in China: 2 hosts, https and http, the kind's spellings, as written, with a
        # slash, with ?tf-hub-format=compressed; 5 .tar.gz locations; 12 Kaggle URLs per Kaggle version.
        kaggle_versions = 2 if spec.version == 3 else 1
        assert len(names) == 2 * 2 * (1 if spec.kind == "classification" else 2) * 3 + 5 + 12 * kaggle_versions
        for name in names:
            assert resolve(name) == spec
            folders.setdefault(folder_name(name), spec)
    assert len(folders) == sum(len(spellings(s)) for s in all_specs())  # no two spellings share a folder


def test_kaggle_tensorflow1_versions_map_1_to_1_and_2_3_to_3_and_say_it_is_inferred():
    from inception_hub.catalog import KAGGLE_TF1_NOTE, KAGGLE_TF1_VERSIONS, kagglehub_handles

    url = "https://www.kaggle.com/models/google/inception-v1/frameworks/tensorFlow1/variations/classification/versions/"
    assert [resolve(url + v).version for v in "123"] == [1, 3, 3]
    assert KAGGLE_TF1_VERSIONS == {1: 1, 2: 3, 3: 3} and "inferred" in KAGGLE_TF1_NOTE
    assert kagglehub_handles(resolve("inception_v1/feature_vector/3")) == [
        "google/inception-v1/tensorFlow1/feature-vector/2",
        "google/inception-v1/tensorFlow1/feature-vector/3",
    ]
    assert kagglehub_handles(resolve("inception_resnet_v2/classification/5")) == [
        "google/inception-resnet-v2/tensorFlow2/classification/2"
    ]


@pytest.mark.parametrize(
    "handle",
    [
        "https://tfhub.dev/google/tfjs-model/imagenet/inception_v1/classification/3/default/1",
        "https://tfhub.dev/google/tfjs-model/imagenet/inception_v1/classification/3/default/1?tfjs-format=compressed",
        "google/inception-v1/tfJs/classification/1",
        "https://www.kaggle.com/models/google/inception-v1/tfJs/classification/1",
    ],
)
def test_tfjs_handles_say_what_exists_instead(handle):
    with pytest.raises(UnknownHandleError) as e:
        resolve(handle)
    message = str(e.value)
    assert "is a TF.js model, which inception-hub does not build" in message
    assert "https://tfhub.dev/google/imagenet/inception_v1/classification/5" in message
    assert "google/inception-v1/tensorFlow2/classification/2" in message and "--format onnx" in message


def test_load_takes_any_spelling(v1_ckpt):
    m = inception_hub.load(
        "https://www.kaggle.com/models/google/inception-v1/TensorFlow2/feature-vector/2", checkpoint=v1_ckpt
    )
    assert m.spec == resolve("inception_v1/feature_vector/5") and m(np.zeros((1, 224, 224, 3), np.float32)).shape == (
        1,
        1024,
    )


def test_load_and_model_take_kagglehub_handles_and_the_module_pages_tar_gz(v1_ckpt, capsys):
    from conftest import reference_images
    from inception_hub.cli import main

    m = inception_hub.load("google/inception-v1/tensorFlow2/feature-vector", checkpoint=v1_ckpt)
    assert m.spec == resolve("inception_v1/feature_vector/5")
    photo = str(reference_images("inception_v1")[0])
    gcs = "https://storage.googleapis.com/tfhub-test-modules/google/imagenet/inception_v1/classification/1.tar.gz"
    for handle in ("google/inception-v1/tensorFlow2/classification", gcs):
        assert main(["classify", photo, "--model", handle, "--checkpoint", v1_ckpt, "-k", "1", "--no-progress"]) == 0
        assert capsys.readouterr().out.startswith(photo + "\n  1. ")


def test_load_unknown_handle_fails_before_any_weights():
    with pytest.raises(UnknownHandleError, match="unknown model handle 'inception_v4'"):
        inception_hub.load("inception_v4")


def test_catalog_facts():
    assert len(all_specs()) == 16
    v1 = resolve("google/imagenet/inception_v1/feature_vector/1")
    assert v1.image_size == (224, 224) and v1.output_dim == 1024 and not v1.variable_size and v1.hub_format == "tf1_hub"
    irv2 = ModelSpec("inception_resnet_v2", "classification", 5)
    assert irv2.image_size == (299, 299) and irv2.output_dim == 1001 and irv2.variable_size
    assert irv2.checkpoint.url == "https://download.tensorflow.org/models/inception_resnet_v2_2016_08_30.tar.gz"
    assert irv2.url == "https://tfhub.dev/google/imagenet/inception_resnet_v2/classification/5"


def test_shipped_labels_are_the_official_file():
    from importlib import resources

    data = resources.files("inception_hub").joinpath("data/ImageNetLabels.txt").read_bytes()
    assert hashlib.sha256(data).hexdigest() == LABELS_SHA256
    assert data == (SHARED / "labels" / "ImageNetLabels.txt").read_bytes()
    labels = imagenet_labels()
    assert len(labels) == 1001 and labels[0] == "background" and labels[1] == "tench" and labels[-1] == "toilet tissue"


def test_labels_follow_wnid_order():
    wnids = (SHARED / "labels" / "imagenet_wnids_1001.txt").read_text().split()
    labels = imagenet_labels()
    assert wnids[0] == "background" and len(wnids) == 1001
    assert labels[wnids.index("n01443537")] == "goldfish"
    assert labels[wnids.index("n04590129")] == "window shade"


def test_decode_predictions_ranks_by_probability():
    logits = np.full((2, 1001), -5.0, np.float32)
    logits[0, 2], logits[0, 1] = 6.0, 4.0
    logits[1, 1000] = 3.0
    preds = decode_predictions(logits, top=2)
    assert [(p.index, p.label) for p in preds[0]] == [(2, "goldfish"), (1, "tench")]
    expected = np.exp(6) / (np.exp(6) + np.exp(4) + 999 * np.exp(-5))
    assert preds[0][0].score == pytest.approx(expected, rel=1e-5)
    assert preds[1][0].label == "toilet tissue"
    assert sum(p.score for p in decode_predictions(logits, top=1001)[0]) == pytest.approx(1.0, rel=1e-5)


def test_decode_predictions_rejects_feature_vectors():
    with pytest.raises(InputError, match=r"shape \[N, 1001\], got \[3, 1024\]"):
        decode_predictions(np.zeros((3, 1024)))


def test_a_class_name_with_a_line_break_never_splits_a_labels_file(tmp_path):
    """A fine-tuned class named with U+2028 once became two lines of labels.txt, and :classify
    then named the wrong classes silently: names are checked when written, files read by newline
    only and their count checked against the model's outputs."""
    from inception_hub.catalog import ModelSpec
    from inception_hub.errors import InceptionHubError, InputError
    from inception_hub.finetune.data import DataError, scan
    from inception_hub.labels import labels_text, parse_labels
    from inception_hub.metadata import read_metadata, write_metadata

    spec = ModelSpec("inception_v1", "classification", 5)
    for bad in ("cat\u2028dog", "cat\ndog", "cat\rdog", " "):
        with pytest.raises(InputError, match="line break"):
            write_metadata(spec, tmp_path / "m", ["ok", bad])
    assert parse_labels(labels_text(["a b", "c\u00e9"]), 2) == ["a b", "c\u00e9"]
    folder = tmp_path / "old"
    write_metadata(spec, folder, ["a", "b"])
    (folder / "assets.extra" / "labels.txt").write_text("a\u2028x\nb\n", encoding="utf-8")  # an older writer's
    assert read_metadata(folder)["labels"] == ["a\u2028x", "b"]  # one name, not split in two
    (folder / "assets.extra" / "labels.txt").write_text("a\nx\nb\n", encoding="utf-8")
    with pytest.raises(InceptionHubError, match="3 names for 2 outputs"):
        read_metadata(folder)
    data = tmp_path / "data"
    for name in ("cat\u2028dog", "bird"):
        (data / name).mkdir(parents=True)
    with pytest.raises(DataError, match="line break"):
        scan(data)
