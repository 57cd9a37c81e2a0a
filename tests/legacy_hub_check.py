"""The TF1 module pages' code, unchanged, in the real tensorflow_hub 0.15 on TF 2.15 (the last
stack that has `hub.Module`), against modules that inception-hub exported and that
`install-hub-cache` put into `$TFHUB_CACHE_DIR`. It runs in the legacy virtualenv (`make
legacy-venv`), which holds TensorFlow, tensorflow_hub and numpy but not inception-hub, with every
internet connection refused, and prints one JSON line for tests/test_legacy_hub.py.

python tests/legacy_hub_check.py REFERENCE_DIR MODULE_FOLDER BATCH_NORM_MOMENTUM WEIGHT_DECAY
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import numpy as np

V1_C1 = "https://tfhub.dev/google/imagenet/inception_v1/classification/1"
#: The feature_vector/1 page loads its module from the test bucket.
V1_FV1_PAGE = "https://storage.googleapis.com/tfhub-test-modules/google/imagenet/inception_v1/feature_vector/1.tar.gz"
IRV2_C1 = "https://tfhub.dev/google/imagenet/inception_resnet_v2/classification/1"
NOT_INSTALLED = "https://tfhub.dev/google/imagenet/inception_v1/classification/3"

#: The pages' usage blocks as printed, but for `images = ...` (filled with reference inputs).
PAGES = {
    "inception_v1/classification": f"""
module = hub.Module("{V1_C1}")
height, width = hub.get_expected_image_size(module)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
logits = module(images)  # Logits with shape [batch_size, num_classes].
""",
    "inception_v1/feature_vector": f"""
module = hub.Module("{V1_FV1_PAGE}")
height, width = hub.get_expected_image_size(module)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
features = module(images)  # Features with shape [batch_size, num_features].
""",
    "inception_resnet_v2/classification": f"""
module = hub.Module("{IRV2_C1}")
height, width = hub.get_expected_image_size(module)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
logits = module(images)  # Logits with shape [batch_size, num_classes].
""",
}

#: The image_feature_vector signature as TF-Hub's common signatures page shows it.
FEATURE_VECTOR_SIGNATURE = """
module_spec = hub.load_module_spec(handle)
height, width = hub.get_expected_image_size(module_spec)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
module = hub.Module(module_spec)
outputs = module(dict(images=images), signature="image_feature_vector", as_dict=True)
features = outputs["default"]
"""


def block_network(setattr_=setattr) -> list:
    """Refuse every internet connection and name look-up from now on; returns the attempts.
    `setattr_` is pytest's `monkeypatch.setattr` inside a test (undone after it)."""
    attempts: list = []
    real_connect, real_connect_ex = socket.socket.connect, socket.socket.connect_ex
    internet = (socket.AF_INET, socket.AF_INET6)

    def refuse(what):
        attempts.append(str(what))
        raise OSError(f"the network is blocked in this check: {what}")

    def connect(self, address):
        return refuse(address) if self.family in internet else real_connect(self, address)

    def connect_ex(self, address):
        return refuse(address) if self.family in internet else real_connect_ex(self, address)

    setattr_(socket.socket, "connect", connect)
    setattr_(socket.socket, "connect_ex", connect_ex)
    setattr_(socket, "getaddrinfo", lambda host, *a, **k: refuse(("getaddrinfo", host)))
    return attempts


def reference(root: Path, arch: str, size: str) -> dict:
    with np.load(root / arch / f"reference_seed0_{size}.npz") as z:
        return {k: z[k] for k in z.files}


def run_block(code: str, root: Path, arch: str, batch: int = 3, **names) -> tuple[dict, dict]:
    """Run a usage block in a new graph; return its namespace and the reference it was fed."""
    import tensorflow as tf
    import tensorflow_hub as hub

    tf.compat.v1.reset_default_graph()
    refs: dict = {}

    def reference_images(height, width):
        refs.update(reference(root, arch, f"{height}x{width}"))
        return refs["inputs_u8"][:batch].astype(np.float32) / 255

    ns = {"hub": hub, "reference_images": reference_images, **names}
    exec(code, ns)  # noqa: S102 - the page's own code
    return ns, refs


def evaluate(tensors: dict) -> dict:
    import tensorflow as tf

    with tf.compat.v1.Session() as sess:
        sess.run(tf.compat.v1.global_variables_initializer())  # the module's weights, as hub.Module gave them
        return sess.run(tensors)


def page(name: str, root: Path) -> dict:
    arch, kind = name.split("/")
    ns, refs = run_block(PAGES[name], root, arch)
    module, images = ns["module"], ns["images"]
    main = "logits" if kind == "classification" else "feature_vector"
    signatures = module.get_signature_names()
    expect = {"default": main, "image_classification": "logits", "image_feature_vector": "feature_vector"}
    got = evaluate(
        {
            "page": ns["logits" if kind == "classification" else "features"],
            **{s: module(images, signature=s) for s in signatures},
        }
    )
    return {
        "size": [ns["height"], ns["width"]],
        "signatures": sorted(signatures),
        "error": float(np.abs(got["page"] - refs[main][: len(images)]).max()),
        "signature_errors": {s: float(np.abs(got[s] - refs[expect[s]][: len(images)]).max()) for s in signatures},
    }


def feature_vector_signature(handle: str, root: Path) -> float:
    ns, refs = run_block(FEATURE_VECTOR_SIGNATURE, root, "inception_v1", handle=handle)
    got = evaluate({"features": ns["features"]})["features"]
    return float(np.abs(got - refs["feature_vector"][: len(got)]).max())


def train_step(momentum: float, weight_decay: float, root: Path) -> dict:
    """Fine-tuning as the pages said: trainable=True, tags={"train"}, UPDATE_OPS with the train op."""
    import tensorflow.compat.v1 as tf
    import tensorflow_hub as hub

    tf.reset_default_graph()
    module = hub.Module(V1_C1, trainable=True, tags={"train"})
    images = tf.placeholder(tf.float32, [None, 224, 224, 3])
    labels = tf.placeholder(tf.int64, [None])
    logits = module(images)
    tf.losses.sparse_softmax_cross_entropy(labels, logits)
    loss = tf.losses.get_total_loss()  # with the module's REGULARIZATION_LOSSES
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = tf.train.GradientDescentOptimizer(0.01).minimize(loss)
    tracked = {
        "mean": module.variable_map["InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_mean"],
        "weights": module.variable_map["InceptionV1/Conv2d_1a_7x7/weights"],
    }
    batch_mean = tf.reduce_mean(tf.nn.conv2d(2.0 * images - 1.0, tracked["weights"], 2, "SAME"), [0, 1, 2])
    weights = [v for n, v in module.variable_map.items() if n.endswith("/weights")]
    l2 = weight_decay * tf.add_n([tf.nn.l2_loss(w) for w in weights])
    x = reference(root, "inception_v1", "224x224")["inputs_u8"][:4].astype(np.float32) / 255
    feed = {images: x, labels: np.arange(4)}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        before, seen_mean = sess.run(tracked), sess.run(batch_mean, feed)
        reg, expected_reg = sess.run([tf.add_n(tf.losses.get_regularization_losses()), l2])
        sess.run(train_op, feed)
        after = sess.run(tracked)
    expected = momentum * before["mean"] + (1 - momentum) * seen_mean
    return {
        "trainable_variables": len(tf.trainable_variables()),
        "update_ops": len(update_ops),
        "regularization": [float(reg), float(expected_reg)],
        "moving_mean_error": float(np.abs(after["mean"] - expected).max()),
        "moving_mean_moved": float(np.abs(after["mean"] - before["mean"]).max()),
        "weights_moved": float(np.abs(after["weights"] - before["weights"]).max()),
    }


def main() -> None:
    root, folder, momentum, weight_decay = Path(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    attempts = block_network()
    import tensorflow as tf
    import tensorflow_hub as hub

    tf.compat.v1.disable_eager_execution()  # hub.Module is TF1 graph code
    result = {"versions": [tf.__version__, hub.__version__]}
    # Proof that the network is out of reach: a handle that was not installed does not load.
    try:
        hub.Module(NOT_INSTALLED)
        result["not_installed"] = None
    except Exception as e:  # noqa: BLE001 - reported for the test
        result["not_installed"] = type(e).__name__
    result["probe_attempts"] = len(attempts)
    result["pages"] = {name: page(name, root) for name in PAGES}
    result["feature_vector_signature"] = {h: feature_vector_signature(h, root) for h in (V1_FV1_PAGE, folder)}
    result["train"] = train_step(momentum, weight_decay, root)
    result["attempts"] = attempts
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
