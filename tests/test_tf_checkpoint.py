"""Reading TensorFlow checkpoints without TensorFlow, checked against TensorFlow's own reader."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import SIZES
from inception_hub.errors import CheckpointError
from inception_hub.weights import tf_checkpoint


def tf_read(prefix) -> dict[str, np.ndarray]:
    reader = tf.train.load_checkpoint(str(prefix))
    return {n: reader.get_tensor(n) for n in reader.get_variable_to_shape_map()}


@pytest.mark.parametrize("fmt", ["v1", "v2"])
@pytest.mark.parametrize("arch", list(SIZES))
def test_reference_checkpoints_read_exactly_as_tensorflow_reads_them(checkpoints, arch, fmt):
    ours, theirs = tf_checkpoint.read(checkpoints[arch, fmt]), tf_read(checkpoints[arch, fmt])
    assert sorted(ours) == sorted(theirs)
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype and ours[name].shape == value.shape, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)


@pytest.mark.parametrize("version", [1, 2])
def test_other_dtypes_and_bookkeeping_entries(tmp_path, version):
    """A training checkpoint as TF-Slim wrote them: an int64 global_step, a float64, a scalar."""
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.train.get_or_create_global_step()
        tf.compat.v1.get_variable("a/weights", initializer=np.arange(24, dtype=np.float32).reshape(2, 3, 4))
        tf.compat.v1.get_variable("b", initializer=np.float64(-2.5))
        tf.compat.v1.get_variable("c", initializer=np.array([-3, 7], np.int32))
        fmt = tf.compat.v1.train.SaverDef.V1 if version == 1 else tf.compat.v1.train.SaverDef.V2
        saver = tf.compat.v1.train.Saver(write_version=fmt)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(tf.compat.v1.assign(tf.compat.v1.train.get_global_step(), 123456789012))
            prefix = saver.save(sess, str(tmp_path / "model.ckpt"), write_meta_graph=False)
    ours, theirs = tf_checkpoint.read(prefix), tf_read(prefix)
    assert sorted(ours) == sorted(theirs) == ["a/weights", "b", "c", "global_step"]
    for name, value in theirs.items():
        assert ours[name].dtype == value.dtype, name
        np.testing.assert_array_equal(ours[name], value, err_msg=name)
    assert int(ours["global_step"]) == 123456789012 and ours["c"].tolist() == [-3, 7]


def test_truncated_and_corrupt_files_get_clear_errors(checkpoints, tmp_path):
    v1 = checkpoints["inception_v1", "v1"].read_bytes()
    for name, data, match in [
        ("half.ckpt", v1[: len(v1) // 2], "no table footer"),
        ("tail.ckpt", v1[-100:], "runs past the end|no table footer"),
        ("empty.ckpt", b"", "too short"),
    ]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(CheckpointError, match=match):
            tf_checkpoint.read(tmp_path / name)
    v2 = checkpoints["inception_v1", "v2"]
    (tmp_path / "cut.index").write_bytes(v2.with_name(v2.name + ".index").read_bytes())
    data = v2.with_name(v2.name + ".data-00000-of-00001").read_bytes()
    (tmp_path / "cut.data-00000-of-00001").write_bytes(data[: len(data) // 3])
    with pytest.raises(CheckpointError, match="missing or cut short"):
        tf_checkpoint.read(tmp_path / "cut")
    (tmp_path / "lost.index").write_bytes(v2.with_name(v2.name + ".index").read_bytes())
    with pytest.raises(CheckpointError, match="cannot read the data file .*lost.data-00000-of-00001"):
        tf_checkpoint.read(tmp_path / "lost")


def test_reading_weights_imports_no_tensorflow(checkpoints):
    code = (
        "import sys; from inception_hub.weights import load_weights\n"
        f"w = load_weights('inception_v1', {str(checkpoints['inception_v1', 'v1'])!r})\n"
        f"w2 = load_weights('inception_v1', {str(checkpoints['inception_v1', 'v2'])!r})\n"
        "assert w.digest == w2.digest and len(w) == 230\n"
        "print('tensorflow' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
