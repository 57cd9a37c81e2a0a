"""Keras 3 models on the TensorFlow, JAX and PyTorch backends, each in a process of its own
(Keras picks its backend at import): parity with the TF-Slim reference, training mode against a
hand-computed step, model.fit, freezing below an end point, and export (TensorFlow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # builds and trains both networks on each backend

HERE = Path(__file__).resolve().parent
BACKENDS = ("tensorflow", "jax", "torch")


@pytest.fixture(scope="module", params=BACKENDS)
def measured(request, checkpoints, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"keras_{request.param}")
    ckpt_dir = checkpoints["inception_v1", "v1"].parents[2]
    env = dict(os.environ, KERAS_BACKEND=request.param, PYTHONPATH=str(HERE))
    proc = subprocess.run(
        [sys.executable, str(HERE / "keras_backend_check.py"), str(ckpt_dir), str(out)],
        capture_output=True, text=True, env=env, timeout=900,
    )  # fmt: skip
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    result = json.loads(lines[0].removeprefix("RESULT "))
    assert result["backend"] == request.param
    return result


def test_parity_with_the_reference_at_every_size(measured):
    assert set(measured["parity"]) == {
        "inception_v1@224x224", "inception_v1@256x320", "inception_resnet_v2@299x299", "inception_resnet_v2@256x320",
    }  # fmt: skip
    for case, errors in measured["parity"].items():
        assert {"logits", "feature_vector", "Mixed_5b"} <= set(errors)
        worst = max(errors, key=errors.get)
        assert errors[worst] <= 1e-4, f"{measured['backend']} {case}: {worst} off by {errors[worst]}"
    assert len(measured["parity"]["inception_v1@224x224"]) == 2 + 16  # every end point of Inception V1


def test_training_mode_is_the_hand_computed_batch_norm_step(measured):
    for what, error in measured["training_step"].items():
        assert error <= 1e-4, f"{measured['backend']}: {what} off by {error}"


def test_fit_moves_weights_and_batch_norm_statistics_at_the_given_momentum(measured):
    for momentum in ("0.0", "0.5"):
        step = measured["fit"][f"momentum_{momentum}"]
        assert step["moving_mean_error"] <= 1e-4 and step["moving_mean_moved"] > 1e-3
        assert step["first_conv_moved"] > 1e-4 and step["logits_moved"] > 1e-4
    # Momentum 0.5 moves the statistics half as far as momentum 0 (which takes the batch's).
    moved = measured["fit"]["momentum_0.5"]["moving_mean_moved"] / measured["fit"]["momentum_0.0"]["moving_mean_moved"]
    assert abs(moved - 0.5) < 1e-3
    l2 = measured["fit"]["l2"]
    assert abs(l2["losses"] - l2["expected"]) <= 1e-6 * l2["expected"]


def test_freezing_below_an_end_point_keeps_it_and_trains_the_rest(measured):
    moved, top = measured["partial"]["moved"], measured["partial"]["top"]
    assert top[0] == "Mixed_5b" and top[-1] == "Logits"
    for name, change in moved.items():
        assert (change > 1e-5) == (name in top), f"{measured['backend']}: {name} moved {change}"


def test_tensorflow_is_imported_only_by_its_own_backend(measured):
    assert measured["tensorflow_imported"] == (measured["backend"] == "tensorflow")
    if measured["backend"] == "tensorflow":
        assert measured["export"]["tfsmlayer"] <= 1e-4


def test_grad_cam_uses_the_backends_gradient(measured, v1_ckpt):
    import inception_hub.keras as ihk
    from conftest import reference
    from inception_hub.gradcam import explain

    cam = measured["gradcam"]
    assert cam["shape"] == [7, 7] and cam["analytic_error"] <= 1e-4
    # The same map through the gradient of ten blocks, here on TensorFlow: the backends agree up
    # to float32 summation order, which the ReLUs and the division by the peak amplify (about 1%).
    x = reference("inception_v1", "224x224")["inputs_u8"][0].astype("float32") / 255
    here = explain(ihk.inception_v1(v1_ckpt), x, layer="Mixed_4f").heatmap
    there = np.array(cam["mixed_4f"])
    assert here.shape == there.shape == (14, 14) and np.abs(here - there).max() <= 0.03
    assert np.corrcoef(here.ravel(), there.ravel())[0, 1] > 0.999
    assert here.ravel()[there.argmax()] >= 0.97 and there.ravel()[here.argmax()] >= 0.97
