"""Fine-tuning on a small synthetic dataset made here, with the reference checkpoint as backbone."""

from __future__ import annotations

import colorsys
import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow_hub as hub
import tf_keras
from PIL import Image, ImageDraw

import inception_hub
from inception_hub import finetune
from inception_hub.cli import main
from inception_hub.finetune import DataError

pytestmark = pytest.mark.slow  # trains networks

CLASSES = {"circles": 0.0, "stripes": 0.33, "checkers": 0.66}  # each class has its own hue range


def make_dataset(root: Path, per_class: int = 30, seed: int = 0, size: int = 120) -> Path:
    """Three classes of textured shapes, with random shades, positions, scales and noise."""
    rng = np.random.default_rng(seed)
    for cls, hue in CLASSES.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):

            def color(light, hue=hue):
                h = (hue + rng.uniform(-0.06, 0.06)) % 1
                return tuple(int(255 * c) for c in colorsys.hls_to_rgb(h, light, rng.uniform(0.6, 1.0)))

            img = Image.new("RGB", (size, size), color(rng.uniform(0.15, 0.35)))
            draw = ImageDraw.Draw(img)
            fg = color(rng.uniform(0.55, 0.8))
            if cls == "circles":
                for _ in range(rng.integers(2, 5)):
                    r, (x, y) = rng.integers(10, 30), rng.integers(0, size, 2)
                    draw.ellipse([x - r, y - r, x + r, y + r], fill=fg)
            elif cls == "stripes":
                w = int(rng.integers(4, 12))
                for y in range(0, size, 2 * w):
                    draw.rectangle([0, y, size, y + w - 1], fill=fg)
            else:
                w = int(rng.integers(6, 16))
                for y in range(0, size, w):
                    for x in range(0, size, w):
                        if (x // w + y // w) % 2:
                            draw.rectangle([x, y, x + w - 1, y + w - 1], fill=fg)
            noisy = np.asarray(img).astype(np.int16) + rng.integers(-20, 20, (size, size, 3))
            Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8)).save(root / cls / f"{i:03d}.jpg", quality=90)
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("data") / "shapes")
    (root / "circles" / "empty.jpg").write_bytes(b"")
    (root / "stripes" / "notes.txt").write_text("not an image")
    return root


@pytest.fixture(scope="module")
def head_only(dataset, v1_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("head") / "model"
    logs = []
    result = finetune.train(
        dataset, "inception_v1", out, epochs=8, checkpoint=v1_ckpt, seed=0, progress=False, log=logs.append
    )
    return result, out, logs


def test_head_only_reaches_90_percent_and_reports_skipped_files(head_only, dataset):
    result, out, logs = head_only
    assert result.classes == ["checkers", "circles", "stripes"]
    assert max(result.history["val_accuracy"]) >= 0.9
    assert result.history["val_accuracy"][result.best_epoch - 1] >= 0.9
    skipped = dict(result.skipped)
    assert skipped[str(dataset / "circles" / "empty.jpg")].startswith("empty file")
    assert skipped[str(dataset / "stripes" / "notes.txt")] == "unsupported file type"
    assert any(f"warning: skipping {dataset / 'circles' / 'empty.jpg'}" in line for line in logs)
    summary = next(line for line in logs if "images in" in line)
    assert "90 images in 3 classes" in summary and "72 for training, 18 for validation" in summary


def test_saved_model_reloads_with_the_same_predictions(head_only, dataset):
    result, out, _ = head_only
    assert (out / "labels.txt").read_text().split() == result.classes
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["best_epoch"] == result.best_epoch and metrics["history"] == result.history
    assert metrics["settings"]["base_model"] == "google/imagenet/inception_v1/classification/5"
    files = sorted((dataset / "stripes").glob("*.jpg"))[:3] + sorted((dataset / "circles").glob("0*.jpg"))[:3]
    x = np.stack([inception_hub.load_image(f, (224, 224)) for f in files])
    in_memory = result.module(x)
    loaded = inception_hub.load(str(out))
    assert loaded.labels == tuple(result.classes) and loaded.expected_image_size == (224, 224)
    np.testing.assert_allclose(loaded(x), in_memory, atol=1e-5)
    layer = tf_keras.Sequential([hub.KerasLayer(str(out))])
    layer.build([None, 224, 224, 3])
    np.testing.assert_allclose(layer(x).numpy(), in_memory, atol=1e-5)
    assert [p[0].label for p in loaded.predict(x, top=1)] == ["stripes"] * 3 + ["circles"] * 3
    # The saved module's own feature vector, for embedding.
    fv = inception_hub.load(str(out), kind="feature_vector")
    assert fv(x).shape == (6, 1024) and fv.labels is None


def test_evaluate_on_held_out_photos_equals_a_count_made_here(head_only, tmp_path, capsys):
    """Known answers: photos drawn with another seed, their class the folder they are in. The
    harness's top-1 equals the hits counted from the saved model's own predictions; its raw-bytes
    signature names the fine-tuned classes."""
    import tensorflow as tf

    _, out, _ = head_only
    held_out = make_dataset(tmp_path / "held_out", per_class=5, seed=123)
    files = sorted(held_out.rglob("*.jpg"))
    model = inception_hub.load(str(out))
    predicted = model(np.stack([inception_hub.load_image(f, (224, 224)) for f in files])).argmax(1)
    hits = sum(model.labels[i] == f.parent.name for i, f in zip(predicted, files, strict=True))
    assert main(["evaluate", str(held_out), "--model", str(out), "--json", "--no-progress"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["images"] == len(files) == 15 and not report["unknown"]
    assert report["variants"][0]["top1"] == pytest.approx(hits / len(files))
    assert report["variants"][0]["top5"] == 1.0  # three classes
    signature = tf.saved_model.load(str(out)).signatures["serving_bytes"]
    answer = signature(image_bytes=tf.constant([f.read_bytes() for f in files[:4]]))
    assert [row[0].decode() for row in answer["labels"].numpy()] == [model.labels[i] for i in predicted[:4]]


def test_backbone_fine_tuning_from_the_cli_then_classify(dataset, v1_ckpt, tmp_path, capsys):
    out = tmp_path / "backbone"
    code = main(
        [
            "finetune",
            str(dataset),
            "--model",
            "inception_v1",
            "-o",
            str(out),
            "--epochs",
            "6",
            "--fine-tune-backbone",
            "--batch-norm-momentum",
            "0.99",
            "--checkpoint",
            v1_ckpt,
            "--no-progress",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val_accuracy"] >= 0.9, metrics["history"]
    assert metrics["settings"]["fine_tune_backbone"] and metrics["settings"]["batch_norm_momentum"] == 0.99
    assert f"saved 3-class model to {out}" in captured.out
    images = [str(p) for p in sorted((dataset / "checkers").glob("*.jpg"))[:4]]
    assert main(["classify", *images, "--model", str(out), "--format", "json", "-k", "1", "--no-progress"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["predictions"][0]["label"] for r in rows] == ["checkers"] * 4
    loaded = inception_hub.load(str(out))
    x = np.stack([inception_hub.load_image(p, (224, 224)) for p in images])
    np.testing.assert_allclose(
        [r["predictions"][0]["score"] for r in rows], [p[0].score for p in loaded.predict(x, 1)], atol=1e-5
    )


def test_same_seed_same_run(dataset, v1_ckpt):
    runs = [
        finetune.train(
            dataset, "inception_v1", None, epochs=2, checkpoint=v1_ckpt, seed=7, progress=False, log=lambda m: None
        ).history
        for _ in range(2)
    ]
    for key in runs[0]:
        np.testing.assert_allclose(runs[0][key], runs[1][key], rtol=1e-5)


def test_early_stopping_and_interrupt_keep_the_best_model(dataset, v1_ckpt, tmp_path, monkeypatch):
    flat = finetune.train(
        dataset,
        "inception_v1",
        None,
        epochs=10,
        learning_rate=0.0,
        patience=1,
        checkpoint=v1_ckpt,
        progress=False,
        log=lambda m: None,
    )
    assert len(flat.history["loss"]) == 2 and flat.stopped.startswith("early stopping")

    real = finetune.run_epoch
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # train epoch 1, validate epoch 1, then Ctrl-C in epoch 2
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(finetune.training, "run_epoch", interrupted)
    out = tmp_path / "interrupted"
    result = finetune.train(
        dataset, "inception_v1", out, epochs=5, checkpoint=v1_ckpt, progress=False, log=lambda m: None
    )
    assert result.stopped.startswith("interrupted") and len(result.history["loss"]) == 1
    assert inception_hub.load(str(out)).labels == ("checkers", "circles", "stripes")


def test_bad_data_directories(tmp_path, v1_ckpt):
    with pytest.raises(DataError, match="is not a directory"):
        finetune.train(tmp_path / "missing", checkpoint=v1_ckpt, progress=False)
    (tmp_path / "one" / "cats").mkdir(parents=True)
    with pytest.raises(DataError, match="1 class folder.*at least 2"):
        finetune.train(tmp_path / "one", checkpoint=v1_ckpt, progress=False)
    make_dataset(tmp_path / "broken", per_class=3)
    for f in (tmp_path / "broken" / "stripes").iterdir():
        f.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(DataError, match="no usable images for class.*stripes"):
        finetune.train(tmp_path / "broken", checkpoint=v1_ckpt, progress=False, log=lambda m: None)
    with pytest.raises(DataError, match="validation split"):
        finetune.train(tmp_path / "broken", validation_split=1.5, checkpoint=v1_ckpt, progress=False)
    assert main(["finetune", str(tmp_path / "one"), "-o", str(tmp_path / "o"), "--checkpoint", v1_ckpt]) == 2


def test_training_from_an_end_point_leaves_the_blocks_below_it_as_they_were(dataset, v1_ckpt, synth_weights, tmp_path):
    import tensorflow as tf

    out = tmp_path / "top"
    argv = ["finetune", str(dataset), "-o", str(out), "--epochs", "2", "--train-from", "Mixed_5b"]
    assert main([*argv, "--checkpoint", v1_ckpt, "--no-progress", "--learning-rate", "0.05"]) == 0
    trained = tf.saved_model.load(str(out)).net.backbone.slim_variables
    before = synth_weights["inception_v1"]
    moved = {name: float(np.abs(trained[name].numpy() - before[name]).max()) for name in trained}
    below = [n for n in moved if n.split("/")[1] not in ("Mixed_5b", "Mixed_5c")]
    above = [n for n in moved if n not in below]
    assert len(below) > 100 and len(above) > 20
    assert all(moved[n] == 0.0 for n in below)  # weights and BatchNorm statistics alike
    assert all(moved[n] > 0 for n in above if n.endswith(("weights", "moving_mean"))), moved
    assert json.loads((out / "metrics.json").read_text())["settings"]["train_from"] == "Mixed_5b"
    with pytest.raises(DataError, match="--train-from takes an end point of inception_v1"):
        finetune.train(dataset, "inception_v1", None, train_from="Mixed_9z", checkpoint=v1_ckpt, progress=False)
