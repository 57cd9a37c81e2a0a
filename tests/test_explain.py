"""Grad-CAM: on a model whose answer is known, and `inception-hub explain` end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import IMAGES
from inception_hub.cli import main
from inception_hub.images import central_crop_box, decode_image

pytestmark = pytest.mark.slow  # trains a head on the network

SIZE = 160  # Mixed_5c is 5x5 at this size


def _photos(rng, n: int, corner: tuple[int, int] | None) -> np.ndarray:
    """Noise; with `corner` (row, col in {0, 1}), a red square near that corner of each photo."""
    x = rng.uniform(0.3, 0.6, size=(n, SIZE, SIZE, 3)).astype(np.float32)
    if corner is not None:
        for img in x:
            dy, dx = rng.integers(0, 8, 2)
            top = dy if corner[0] == 0 else SIZE - 48 - dy
            left = dx if corner[1] == 0 else SIZE - 48 - dx
            img[top : top + 48, left : left + 48] = (1.0, 0.05, 0.05)
    return x


def test_the_map_peaks_where_the_class_defining_shape_is(v1_ckpt):
    import keras

    import inception_hub.keras as ihk
    from inception_hub.gradcam import explain

    rng = np.random.default_rng(0)
    # Class 1 has the shape in the top-left corner; class 0 has none.
    x = np.concatenate([_photos(rng, 24, None), _photos(rng, 24, (0, 0))])
    y = np.array([0] * 24 + [1] * 24)
    base = ihk.inception_v1(v1_ckpt, include_top=False, pooling="avg")
    model = keras.Model(base.input, keras.layers.Dense(2, name="head")(base.output))
    for layer in model.layers:
        layer.trainable = layer.name in ("Mixed_5c", "head")
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    keras.utils.set_random_seed(0)
    model.fit(x, y, epochs=8, batch_size=16, verbose=0)

    half = 5 // 2
    for corner in ((0, 0), (1, 1)):  # where it was trained, and the opposite corner
        for image in _photos(rng, 3, corner):
            e = explain(model, image, class_index=1)
            assert e.heatmap.shape == (5, 5) and e.heatmap.max() == 1.0 and e.predictions[0].label == "class 1"
            row, col = np.unravel_index(e.heatmap.argmax(), e.heatmap.shape)
            quadrant = e.heatmap[: half + 1, : half + 1] if corner == (0, 0) else e.heatmap[half:, half:]
            if corner == (0, 0):
                assert row <= half and col <= half, e.heatmap.round(2)
            else:
                assert row >= half and col >= half, e.heatmap.round(2)
            assert quadrant.sum() > 0.5 * e.heatmap.sum()
    none = explain(model, _photos(rng, 1, None)[0], class_index=1)
    assert none.predictions[0].label == "class 0"


def test_explain_command_writes_one_overlay_per_photo(v1_ckpt, tmp_path, capsys):
    grace = IMAGES / "grace_hopper.jpg"
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    argv = ["explain", str(grace), str(tmp_path / "broken.jpg"), "--checkpoint", v1_ckpt, "-o", str(tmp_path / "out")]
    assert main([*argv, "--class", "Tabby", "--layer", "Mixed_4f"]) == 1  # one unreadable photo
    captured = capsys.readouterr()
    assert "broken.jpg" in captured.err and str(tmp_path / "out" / "grace_hopper.gradcam.png") in captured.out
    overlay = Image.open(tmp_path / "out" / "grace_hopper.gradcam.png")
    top, left, h, w = central_crop_box(*decode_image(grace).shape[:2])
    assert overlay.size == (w, h) and overlay.mode == "RGB"
    assert main([*argv[:2], "--checkpoint", v1_ckpt, "-o", str(tmp_path / "o2"), "--class", "no such thing"]) == 2
    assert "no class labelled 'no such thing'" in capsys.readouterr().err
    assert main(["explain", str(grace), "-m", "inception_v1/feature_vector", "-o", str(tmp_path / "o3")]) == 2
    assert "needs a classification model" in capsys.readouterr().err


def test_the_default_map_needs_no_keras_and_equals_grad_cam_at_the_final_end_point(v1_ckpt, tmp_path, capsys):
    """Without --layer, explain runs on the engines (no Keras, no TensorFlow imported) and draws
    the map that Keras Grad-CAM draws at Mixed_5c."""
    grace = IMAGES / "grace_hopper.jpg"
    code = (
        "import sys; from inception_hub.cli import main; "
        f"rc = main(['explain', {str(grace)!r}, '--checkpoint', {v1_ckpt!r}, '-o', {str(tmp_path / 'lean')!r}, "
        "'--class', '7', '--no-progress']); "
        "print(rc, 'keras' in sys.modules or 'tensorflow' in sys.modules)"
    )
    env = {**os.environ, "INCEPTION_HUB_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.strip().splitlines()[-1] == "0 False"
    argv = ["explain", str(grace), "--checkpoint", v1_ckpt, "-o", str(tmp_path / "keras"), "--class", "7"]
    assert main([*argv, "--layer", "Mixed_5c"]) == 0
    capsys.readouterr()
    lean = np.asarray(Image.open(tmp_path / "lean" / "grace_hopper.gradcam.png"), np.int16)
    keras = np.asarray(Image.open(tmp_path / "keras" / "grace_hopper.gradcam.png"), np.int16)
    assert lean.shape == keras.shape and np.abs(lean - keras).max() <= 1  # uint8 rounding of equal maps
    photo = decode_image(grace)
    top, left, h, w = central_crop_box(*photo.shape[:2])
    plain = np.asarray(photo[top : top + h, left : left + w], np.int16)
    assert np.abs(lean - plain)[100:].max() > 50  # the map is drawn (below the labels' box)
