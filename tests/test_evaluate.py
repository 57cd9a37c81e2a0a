"""`inception-hub evaluate` on data whose answers are known: the sample photos labelled so that
the model's top-1 and top-5 hits are counted here independently, in each of the three layouts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import inception_hub
from conftest import IMAGES, SHARED
from inception_hub.cli import main
from inception_hub.engine.choice import plan

PHOTOS = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:24]


@pytest.fixture(scope="module")
def wnids() -> list[str]:
    """The 1001 classes' wnids from the shared label data (not the package's own list)."""
    return (SHARED / "labels" / "imagenet_wnids_1001.txt").read_text().split()


@pytest.fixture(scope="module")
def known(clf, wnids):
    """Each photo's label, chosen so the answer is known: every third labelled with the model's
    own top class (a top-1 hit), every third with its third class (a top-5 hit only), the rest
    with the photo's real class; and the accuracy counted from the model's logits here."""
    logits = clf(np.stack([inception_hub.load_image(p, (224, 224)) for p in PHOTOS]))
    ranked = np.argsort(-logits, axis=1)
    labels = []
    for i, photo in enumerate(PHOTOS):
        index = [ranked[i, 0], ranked[i, 2], wnids.index(photo.name.split("_")[0])][i % 3]
        labels.append(wnids[index])
    truth = np.array([wnids.index(w) for w in labels])
    top1 = float((ranked[:, 0] == truth).mean())
    top5 = float((ranked[:, :5] == truth[:, None]).any(1).mean())
    assert 1 / 3 <= top1 < top5  # the labels give a known, non-trivial answer
    return labels, top1, top5


def _evaluate(capsys, data, *args) -> tuple[int, dict]:
    code = main(["evaluate", str(data), "--json", "--no-progress", *args])
    return code, json.loads(capsys.readouterr().out)


def test_three_layouts_give_the_counted_accuracy(capsys, tmp_path, v1_ckpt, known):
    labels, top1, top5 = known
    flat, folders, table = tmp_path / "flat", tmp_path / "folders", tmp_path / "csv"
    for d in (flat, folders, table):
        d.mkdir()
    rows = ["ImageId,PredictionString"]  # ImageNet's LOC_val_solution.csv layout
    for i, (photo, wnid) in enumerate(zip(PHOTOS, labels, strict=True)):
        os.symlink(photo, flat / f"{wnid}_{i}.JPEG")
        (folders / wnid).mkdir(exist_ok=True)
        os.symlink(photo, folders / wnid / f"{i}.JPEG")
        os.symlink(photo, table / f"val_{i:03d}.JPEG")
        rows.append(f"val_{i:03d},{wnid} 1 2 30 40")
    (table / "solution.csv").write_text("\n".join(rows) + "\n")
    for data, batch in ((flat, "32"), (folders, "7"), (table, "5")):  # scored batch by batch
        code, report = _evaluate(capsys, data, "--checkpoint", v1_ckpt, "--batch-size", batch)
        assert code == 0 and report["images"] == len(PHOTOS) and not report["skipped"]
        (row,) = report["variants"]
        assert row["top1"] == pytest.approx(top1) and row["top5"] == pytest.approx(top5), data.name
        assert row["images_per_s"] > 0 and report["agreement"] == []


def test_unreadable_and_unknown_photos_are_reported_and_the_rest_scored(capsys, tmp_path, v1_ckpt, known):
    labels, top1, _ = known
    for i, (photo, wnid) in enumerate(zip(PHOTOS, labels, strict=True)):
        os.symlink(photo, tmp_path / f"{wnid}_{i}.JPEG")
    (tmp_path / "n01440764_broken.JPEG").write_bytes(b"not a photo")
    os.symlink(PHOTOS[0], tmp_path / "n99999999_unknown.JPEG")
    code, report = _evaluate(capsys, tmp_path, "--checkpoint", v1_ckpt)
    assert code == 1  # some photos could not be read
    assert [s["path"].endswith("n01440764_broken.JPEG") for s in report["skipped"]] == [True]
    assert [u["class"] for u in report["unknown"]] == ["n99999999"]
    assert report["images"] == len(PHOTOS)
    assert report["variants"][0]["top1"] == pytest.approx(top1)
    _, report = _evaluate(capsys, tmp_path, "--checkpoint", v1_ckpt, "--limit", "6")
    assert report["images"] + len(report["skipped"]) + len(report["unknown"]) == 6
    main(["evaluate", str(tmp_path), "--checkpoint", v1_ckpt, "--no-progress"])
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["variant", "images", "top-1", "%", "top-5", "%", "images/s"]
    default = plan("inception_v1").backend  # where measuring is on, the measured choice
    assert out.splitlines()[1].split()[:3] == [f"{default}/fp32", str(len(PHOTOS)), f"{100 * top1:.2f}"]
    assert main(["evaluate", str(tmp_path / "nowhere"), "--no-progress"]) == 2
    assert "not a folder of photos" in capsys.readouterr().err


def test_the_shared_sample_by_its_wnid_file_names(capsys, v1_ckpt, clf, wnids):
    folder = IMAGES / "imagenet-sample"
    code, report = _evaluate(capsys, folder, "--checkpoint", v1_ckpt, "--limit", "30")
    names = sorted(folder.glob("*.JPEG"))
    picked = [names[i] for i in np.linspace(0, len(names) - 1, 30).round().astype(int)]
    logits = clf(np.stack([inception_hub.load_image(p, (224, 224)) for p in picked]))
    truth = np.array([wnids.index(p.name.split("_")[0]) for p in picked])
    assert code == 0 and report["images"] == 30
    assert report["variants"][0]["top1"] == pytest.approx(float((logits.argmax(1) == truth).mean()))
    top5 = np.argsort(-logits, axis=1)[:, :5]
    assert report["variants"][0]["top5"] == pytest.approx(float((top5 == truth[:, None]).any(1).mean()))


def test_the_report_is_written_over_a_report_of_ours_only(capsys, tmp_path, v1_ckpt):
    """`evaluate -o` wrote over whatever it named (a JSON file of the user's, a photo); now that
    is refused before any photo is run, left as it was, and only a report is replaced."""
    data = tmp_path / "data"
    data.mkdir()
    for i, photo in enumerate(PHOTOS[:2]):
        os.symlink(photo, data / f"{photo.name.split('_')[0]}_{i}.JPEG")
    settings, photo = tmp_path / "settings.json", tmp_path / "vacation.jpg"
    settings.write_text('{"theme": "dark"}\n')
    shutil.copy(PHOTOS[0], photo)
    argv = ["evaluate", str(data), "--checkpoint", v1_ckpt, "--no-progress", "-o"]
    for out, why in ((settings, "is not an evaluate report written by"), (photo, "use a .json file name")):
        assert main([*argv, str(out)]) == 2
        err = capsys.readouterr().err
        assert str(out) in err and why in err and "Traceback" not in err
    assert settings.read_text() == '{"theme": "dark"}\n' and photo.read_bytes() == PHOTOS[0].read_bytes()
    report = tmp_path / "report.json"
    for _ in range(2):
        assert main([*argv, str(report)]) == 0
    capsys.readouterr()
    assert json.loads(report.read_text())["images"] == 2


def test_the_shipped_wnid_list_is_the_label_order(wnids):
    from inception_hub.labels import imagenet_wnids

    assert list(imagenet_wnids()) == wnids


def test_the_report_says_where_the_weights_came_from(capsys, tmp_path, v1_ckpt):
    """`models` said "cached (imported, not the release)" but `evaluate` gave the scores of
    imported (here synthetic) weights as if they were the release's."""
    from inception_hub import fetch

    for i, photo in enumerate(PHOTOS[:2]):
        os.symlink(photo, tmp_path / f"{photo.name.split('_')[0]}_{i}.JPEG")
    _, report = _evaluate(capsys, tmp_path, "--checkpoint", v1_ckpt)
    assert report["variants"][0]["weights"] == {"origin": "checkpoint", "source": os.path.abspath(v1_ckpt)}
    assert main(["evaluate", str(tmp_path), "--checkpoint", v1_ckpt, "--no-progress"]) == 0
    assert f"weights: the checkpoint {os.path.abspath(v1_ckpt)}" in capsys.readouterr().out

    fetch("inception_v1", source=v1_ckpt, progress=False)  # as the offline `make demo` does
    _, report = _evaluate(capsys, tmp_path, "--backend", "onnxruntime", "openvino", "--precision", "fp32")
    assert len(report["variants"]) == 2
    for row in report["variants"]:
        assert row["weights"]["origin"] == "imported" and row["weights"]["source"] == str(Path(v1_ckpt).resolve())
    assert main(["evaluate", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"weights: imported from {Path(v1_ckpt).resolve()}, not the official release" in out
