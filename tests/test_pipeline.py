"""The file pipeline: order, errors, and bounded look-ahead however many files there are."""

from __future__ import annotations

import itertools
import shutil

import numpy as np

from conftest import IMAGES
from inception_hub.images import load_image
from inception_hub.pipeline import find_images, run

SAMPLE = sorted((IMAGES / "imagenet-sample").glob("*.JPEG"))[:5]


def test_results_keep_input_order_and_match_the_module(clf, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    paths = [str(SAMPLE[0]), str(broken), *map(str, SAMPLE[1:])]
    results = list(run(clf, paths, batch_size=2))
    assert [r.path for r in results] == paths
    assert results[1].output is None and results[1].error
    good = [r for r in results if r.error is None]
    expect = clf(np.stack([load_image(r.path, (224, 224)) for r in good]))
    np.testing.assert_allclose(np.stack([r.output for r in good]), expect, atol=1e-5)


def test_look_ahead_is_bounded_on_an_endless_input(clf):
    pulled = 0

    def endless():
        nonlocal pulled
        for path in itertools.cycle(map(str, SAMPLE)):
            pulled += 1
            yield path

    stream = run(clf, endless(), batch_size=4)
    for _ in range(10):
        next(stream)
    # Only a bounded window (two batches) is decoded ahead of what has been yielded.
    assert pulled <= 10 + 2 * 4 + 4
    stream.close()


def test_find_images_walks_folders_and_globs(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    shutil.copy(SAMPLE[0], tmp_path / "a" / "x.JPEG")
    shutil.copy(SAMPLE[1], tmp_path / "a" / "b" / "y.png")
    (tmp_path / "a" / "notes.txt").write_text("skip me")
    found, unmatched = find_images([tmp_path / "a", str(tmp_path / "a" / "*.JPEG"), tmp_path / "missing"])
    assert found == [str(tmp_path / "a" / "x.JPEG"), str(tmp_path / "a" / "b" / "y.png")]
    assert unmatched == [str(tmp_path / "missing")]
