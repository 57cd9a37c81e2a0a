"""The one network definition against the real TF-Slim graphs' variables and outputs."""

from __future__ import annotations

import inspect
import re
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import REFERENCE, SIZES, reference
from inception_hub.module import min_image_size
from inception_hub.nets import ARCHITECTURES, variable_specs
from inception_hub.nets.layers import Shape, ShapeBuilder
from inception_hub.nets.tf_module import InceptionNet
from inception_hub.weights import read_checkpoint, validate


def tsv(arch):
    rows = []
    for line in (REFERENCE / arch / "variables.tsv").read_text().splitlines():
        name, shape = line.split("\t")
        rows.append((name, tuple(int(d) for d in shape.split(",")) if shape else ()))
    return rows


@pytest.mark.parametrize("arch", list(SIZES))
def test_definition_creates_exactly_the_checkpoint_variables_in_order(arch):
    assert [(s.name, s.shape) for s in variable_specs(arch, include_top=True, include_aux=True)] == tsv(arch)


def test_variable_counts_and_roles():
    v1 = variable_specs("inception_v1", include_top=True, include_aux=True)
    assert len(v1) == 230 and sum(int(np.prod(s.shape)) for s in v1) == 6_633_209
    assert "InceptionV1/Mixed_5b/Branch_2/Conv2d_0a_3x3/weights" in {s.name for s in v1}
    irv2 = variable_specs("inception_resnet_v2", include_top=True, include_aux=True)
    assert len(irv2) == 908
    # Inference omits the aux head; feature vectors omit the logits layer too.
    assert not any("AuxLogits" in s.name for s in variable_specs("inception_resnet_v2"))
    assert not any("Logits" in s.name for s in variable_specs("inception_resnet_v2", include_top=False))
    biases = {s.name for s in irv2 if s.leaf == "biases"}
    assert all(n.endswith("Conv2d_1x1/biases") or "Logits" in n for n in biases)
    assert not any(s.trainable for s in v1 if s.leaf.startswith("moving_"))


@pytest.fixture(scope="module")
def nets(checkpoints):
    """One net per (architecture, checkpoint format): V1 single file and V2 index + data."""
    return {
        (arch, fmt): InceptionNet(arch, 1001, validate(arch, read_checkpoint(checkpoints[arch, fmt])))
        for arch in SIZES
        for fmt in ("v1", "v2")
    }


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("arch,size", [(a, s) for a in SIZES for s in SIZES[a]])
def test_logits_features_and_end_points_match_tf_slim(nets, arch, size, fmt):
    ref = reference(arch, size)
    x = tf.constant(ref["inputs_u8"].astype(np.float32) / 255)
    logits, end_points = nets[arch, fmt].run(x)
    np.testing.assert_allclose(logits.numpy(), ref["logits"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(end_points["global_pool"].numpy(), ref["feature_vector"], rtol=0, atol=1e-4)
    for key in ref:
        if key.startswith("endpoint_mean/"):
            name = key.split("/", 1)[1]
            mean = tf.reduce_mean(end_points[name], axis=[1, 2]).numpy()
            np.testing.assert_allclose(mean, ref[key], rtol=0, atol=1e-4, err_msg=name)
    # The tolerance is tight relative to how much the logits differ between images.
    assert np.abs(logits.numpy()[0] - logits.numpy()[1]).max() > 100 * 1e-4


def test_training_mode_uses_batch_statistics_and_moves_averages(synth_weights):
    w = synth_weights["inception_v1"]
    net = InceptionNet("inception_v1", 1001, w)
    x = tf.random.stateless_uniform([4, 96, 96, 3], seed=[1, 2])
    name = "InceptionV1/Conv2d_1a_7x7"
    conv = tf.nn.conv2d(2 * x - 1, w[f"{name}/weights"], 2, "SAME").numpy()
    batch_mean = conv.mean(axis=(0, 1, 2))
    n = conv.shape[0] * conv.shape[1] * conv.shape[2]
    batch_var = conv.var(axis=(0, 1, 2)) * n / (n - 1)  # unbiased, as TF-Slim's fused BN update
    _, eps = net.run(x, training=True, batch_norm_momentum=0.9)
    old_mean, old_var = w[f"{name}/BatchNorm/moving_mean"], w[f"{name}/BatchNorm/moving_variance"]
    got_mean = net.slim_variables[f"{name}/BatchNorm/moving_mean"].numpy()
    got_var = net.slim_variables[f"{name}/BatchNorm/moving_variance"].numpy()
    np.testing.assert_allclose(got_mean, 0.9 * old_mean + 0.1 * batch_mean, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(got_var, 0.9 * old_var + 0.1 * batch_var, rtol=1e-3, atol=1e-3)
    # The activation was normalized with the batch's own statistics (then ReLU).
    beta = w[f"{name}/BatchNorm/beta"]
    expect = np.maximum((conv - batch_mean) / np.sqrt(conv.var(axis=(0, 1, 2)) + 1e-3) + beta, 0)
    np.testing.assert_allclose(eps["Conv2d_1a_7x7"].numpy(), expect, atol=2e-3)


def test_dropout_only_in_training(synth_weights):
    net = InceptionNet("inception_v1", 1001, synth_weights["inception_v1"])
    x = tf.random.stateless_uniform([2, 64, 64, 3], seed=[3, 4])
    a, b = net(x).numpy(), net(x).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(net(x, training=True).numpy(), net(x, training=True).numpy())


def test_regularization_losses_cover_the_weights(synth_weights):
    net = InceptionNet("inception_v1", 1001, synth_weights["inception_v1"])
    losses = net.regularization_losses()
    assert len(losses) == 58  # 57 convolutions + the logits
    w = synth_weights["inception_v1"]["InceptionV1/Conv2d_1a_7x7/weights"]
    assert float(losses[0]) == pytest.approx(4e-5 * 0.5 * float((w.astype(np.float64) ** 2).sum()), rel=1e-5)


def test_minimum_input_sizes():
    assert min_image_size("inception_v1") == 1
    assert min_image_size("inception_resnet_v2") == 75


@pytest.mark.parametrize("arch", list(SIZES))
def test_shape_comments_are_what_the_definition_computes(arch):
    """Every `# H x W x C` (or `# C`) comment states its end point's shape at the training size,
    as TF-Slim's sources do; the ShapeBuilder checks each of them."""
    a = ARCHITECTURES[arch]
    b = ShapeBuilder()
    a.fn(b, Shape(a.default_image_size, a.default_image_size, 3), num_classes=1001)
    checked = []
    for line in inspect.getsource(sys.modules[a.fn.__module__]).splitlines():
        code, _, comment = line.partition("  # ")
        if not re.fullmatch(r"\d+( x \d+ x \d+)?", comment.strip()):
            continue
        names = sorted({n for n in re.findall(r'"(\w+)"', code) if n in b.end_points})
        assert len(names) == 1, f"a shape comment on a line that names no end point: {line.strip()}"
        s = b.end_points[names[0]]
        got = f"{s.height} x {s.width} x {s.channels}" if s.height is not None else f"{s.channels}"
        assert got == comment.strip(), f"{arch} {names[0]}: the comment says {comment.strip()}, the net gives {got}"
        checked.append(names[0])
    assert len(checked) == len(b.end_points)  # and every end point has its comment
