"""Runs in a process of its own with KERAS_BACKEND set (Keras picks its backend at import), and
prints one JSON object of measured values for tests/test_keras.py to assert on.

python tests/keras_backend_check.py CKPT_DIR OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from conftest import SIZES, reference


def npy(x) -> np.ndarray:
    """A backend tensor or variable as a NumPy array (PyTorch's may require grad)."""
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def parity(ckpt_dir: Path) -> dict:
    import inception_hub.keras as ihk

    out = {}
    for arch, sizes in SIZES.items():
        ckpt = str(ckpt_dir / arch / "v1" / f"{arch}.ckpt")  # the 2016 release's format
        clf = ihk.build_model(arch, ckpt)
        names = [k.removeprefix("endpoint_mean/") for k in reference(arch, sizes[0]) if k.startswith("endpoint_mean/")]
        maps = ihk.build_model(arch, ckpt, endpoints=[*names, "global_pool"])
        for size in sizes:
            ref = reference(arch, size)
            x = ref["inputs_u8"][:4].astype(np.float32) / 255
            got = {k: npy(v) for k, v in maps(x).items()}
            errors = {"logits": np.abs(npy(clf(x)) - ref["logits"][:4]).max()}
            errors["feature_vector"] = np.abs(got["global_pool"] - ref["feature_vector"][:4]).max()
            for n in names:
                errors[n] = np.abs(got[n].mean(axis=(1, 2)) - ref[f"endpoint_mean/{n}"][:4]).max()
            out[f"{arch}@{size}"] = {k: float(v) for k, v in errors.items()}
    return out


def training_step() -> dict:
    """One block in training mode against the same step computed by hand in NumPy."""
    from inception_hub.nets.keras_builder import Block

    rng = np.random.default_rng(0)
    block = Block("inception_v1", "Conv2d_2b_1x1", batch_norm_momentum=0.9)
    x = rng.normal(size=(4, 6, 5, 64)).astype(np.float32)
    block(x)  # builds
    w = rng.normal(size=(1, 1, 64, 64)).astype(np.float32) * 0.1
    beta, mean0, var0 = (rng.normal(size=64).astype(np.float32) for _ in range(3))
    var0 = np.abs(var0) + 0.5
    prefix = "InceptionV1/Conv2d_2b_1x1/"
    block.load_slim({prefix + "weights": w, prefix + "BatchNorm/beta": beta,
                     prefix + "BatchNorm/moving_mean": mean0, prefix + "BatchNorm/moving_variance": var0})  # fmt: skip
    y = npy(block(x, training=True))
    conv = np.einsum("nhwc,cd->nhwd", x.astype(np.float64), w[0, 0].astype(np.float64))
    m, v = conv.mean(axis=(0, 1, 2)), conv.var(axis=(0, 1, 2))
    expected = np.maximum((conv - m) / np.sqrt(v + 1e-3) + beta, 0)
    n = conv.size // 64
    moved_mean = 0.9 * mean0 + 0.1 * m
    moved_var = 0.9 * var0 + 0.1 * v * n / (n - 1)
    inference = npy(block(x, training=False))
    expected_inference = np.maximum((conv - moved_mean) / np.sqrt(moved_var + 1e-3) + beta, 0)
    slim = block.slim
    return {
        "output": float(np.abs(y - expected).max()),
        "moving_mean": float(np.abs(npy(slim[prefix + "BatchNorm/moving_mean"]) - moved_mean).max()),
        "moving_variance": float(np.abs(npy(slim[prefix + "BatchNorm/moving_variance"]) - moved_var).max()),
        "inference_after": float(np.abs(inference - expected_inference).max()),
    }


def fit(ckpt_dir: Path) -> dict:
    """A few steps of model.fit: weights and BatchNorm statistics move, at the momentum given."""
    import keras
    from keras import ops

    import inception_hub.keras as ihk

    ckpt = str(ckpt_dir / "inception_v1" / "v1" / "inception_v1.ckpt")
    rng = np.random.default_rng(1)
    x = rng.uniform(size=(8, 64, 64, 3)).astype(np.float32)
    y = rng.integers(0, 1001, size=8)
    out = {}
    for momentum in (0.0, 0.5):
        model = ihk.inception_v1(ckpt, batch_norm_momentum=momentum)
        first = model.get_layer("Conv2d_1a_7x7")
        w0 = npy(first.slim["InceptionV1/Conv2d_1a_7x7/weights"])
        mean0 = npy(first.slim["InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_mean"])
        logits0 = npy(model.get_layer("Logits").slim["InceptionV1/Logits/Conv2d_0c_1x1/weights"])
        # What the one step's forward pass sees: the batch mean of the first convolution.
        batch_mean = npy(ops.mean(ops.conv(x * 2 - 1, w0, strides=2, padding="same"), axis=(0, 1, 2)))
        model.compile(
            optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        )
        history = model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
        mean1 = npy(first.slim["InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_mean"])
        expected = momentum * mean0 + (1 - momentum) * batch_mean
        out[f"momentum_{momentum}"] = {
            "moving_mean_error": float(np.abs(mean1 - expected).max()),
            "moving_mean_moved": float(np.abs(mean1 - mean0).max()),
            "first_conv_moved": float(np.abs(npy(first.slim["InceptionV1/Conv2d_1a_7x7/weights"]) - w0).max()),
            "logits_moved": float(
                np.abs(npy(model.get_layer("Logits").slim["InceptionV1/Logits/Conv2d_0c_1x1/weights"]) - logits0).max()
            ),
            "loss": float(history.history["loss"][0]),
        }
    weights = [v for layer in model.layers for n, v in getattr(layer, "slim", {}).items() if n.endswith("/weights")]
    l2 = sum(float(np.sum(npy(v).astype(np.float64) ** 2)) for v in weights) * 4e-5 / 2
    out["l2"] = {"losses": float(sum(float(npy(t)) for t in model.losses)), "expected": l2}
    return out


def partial(ckpt_dir: Path) -> dict:
    """Freezing below Mixed_5b, then fit: what was frozen stays, the rest moves."""
    import keras

    import inception_hub.keras as ihk

    model = ihk.inception_v1(str(ckpt_dir / "inception_v1" / "v1" / "inception_v1.ckpt"))
    top = ihk.layers_from(model, "Mixed_5b")
    for layer in model.layers:
        layer.trainable = layer in top
    before = {n: npy(v) for layer in model.layers for n, v in getattr(layer, "slim", {}).items()}
    model.compile(optimizer=keras.optimizers.SGD(0.05), loss=keras.losses.SparseCategoricalCrossentropy(True))
    rng = np.random.default_rng(2)
    model.fit(rng.uniform(size=(4, 64, 64, 3)).astype(np.float32), np.arange(4), epochs=1, verbose=0)
    moved = {}
    for layer in model.layers:
        for n, v in getattr(layer, "slim", {}).items():
            moved.setdefault(layer.name, 0.0)
            moved[layer.name] = max(moved[layer.name], float(np.abs(npy(v) - before[n]).max()))
    return {"moved": moved, "top": [layer.name for layer in top]}


def gradcam(ckpt_dir: Path) -> dict:
    """Grad-CAM through the backend's gradient: at Mixed_5c it must be the analytic CAM (the
    logits are a linear function of its spatial mean); at Mixed_4f it is returned for the test
    to compare across backends."""
    import inception_hub.keras as ihk
    from inception_hub.gradcam import explain

    model = ihk.inception_v1(str(ckpt_dir / "inception_v1" / "v1" / "inception_v1.ckpt"))
    x = reference("inception_v1", "224x224")["inputs_u8"][0].astype(np.float32) / 255
    e = explain(model, x, layer="Mixed_5c", class_index=3)
    features = ihk.inception_v1(str(ckpt_dir / "inception_v1" / "v1" / "inception_v1.ckpt"), endpoints=["Mixed_5c"])
    a = npy(features(x[None])["Mixed_5c"])[0]
    w = npy(model.get_layer("Logits").slim["InceptionV1/Logits/Conv2d_0c_1x1/weights"])[0, 0, :, 3]
    cam = np.maximum(a @ w, 0)
    cam = cam / cam.max()
    deep = explain(model, x, layer="Mixed_4f")
    return {
        "analytic_error": float(np.abs(e.heatmap - cam).max()),
        "shape": list(e.heatmap.shape),
        "mixed_4f": deep.heatmap.tolist(),
        "mixed_4f_class": deep.class_index,
    }


def export(ckpt_dir: Path, out_dir: Path) -> dict:
    """TensorFlow backend: model.export, loaded back with TFSMLayer."""
    import keras

    import inception_hub.keras as ihk

    ref = reference("inception_v1", "256x320")
    model = ihk.inception_v1(str(ckpt_dir / "inception_v1" / "v1" / "inception_v1.ckpt"))
    model.export(str(out_dir / "exported"), verbose=False)
    layer = keras.layers.TFSMLayer(str(out_dir / "exported"), call_endpoint="serve")
    x = ref["inputs_u8"][:2].astype(np.float32) / 255
    return {"tfsmlayer": float(np.abs(npy(layer(x)) - ref["logits"][:2]).max())}


def main() -> None:
    import keras

    ckpt_dir, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
    result = {"backend": keras.backend.backend(), "parity": parity(ckpt_dir), "training_step": training_step()}
    result["fit"] = fit(ckpt_dir)
    result["partial"] = partial(ckpt_dir)
    result["gradcam"] = gradcam(ckpt_dir)
    if result["backend"] == "tensorflow":
        result["export"] = export(ckpt_dir, out_dir)
    result["tensorflow_imported"] = "tensorflow" in sys.modules
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
