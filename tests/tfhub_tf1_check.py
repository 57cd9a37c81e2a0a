"""TF1 graph code as the module pages print it, run on today's TensorFlow with
`import inception_hub.tfhub as hub` the one change. It runs in a process of its own
(`disable_v2_behavior()` is process-wide) and prints one JSON object for tests/test_tfhub_api.py.

python tests/tfhub_tf1_check.py ARCH=CHECKPOINT [ARCH=CHECKPOINT ...] [--train]
"""

from __future__ import annotations

import json
import sys

import numpy as np

from conftest import reference
from network_guard import block_network

V1_C1 = "https://tfhub.dev/google/imagenet/inception_v1/classification/1"


#: The usage blocks of the /1 module pages, as printed but for `images = ...`.
PAGES = {
    "inception_v1/classification": """
module = hub.Module("https://tfhub.dev/google/imagenet/inception_v1/classification/1")
height, width = hub.get_expected_image_size(module)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
logits = module(images)  # Logits with shape [batch_size, num_classes].
""",
    "inception_v1/feature_vector": """
module = hub.Module("https://tfhub.dev/google/imagenet/inception_v1/feature_vector/1")
height, width = hub.get_expected_image_size(module)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
features = module(images)  # Features with shape [batch_size, num_features].
""",
    "inception_resnet_v2/classification": """
module = hub.Module("https://tfhub.dev/google/imagenet/inception_resnet_v2/classification/1")
height, width = hub.get_expected_image_size(module)
images = reference_images(height, width)  # A batch of images with shape [batch_size, height, width, 3].
logits = module(images)  # Logits with shape [batch_size, num_classes].
""",
}


def page(name: str, batch: int = 2) -> dict:
    """Run a page's usage block, then its signatures (`image_classification`,
    `image_feature_vector`), in a session after global_variables_initializer()."""
    import tensorflow.compat.v1 as tf

    import inception_hub.tfhub as hub

    arch, kind = name.split("/")
    tf.reset_default_graph()
    refs = {}

    def reference_images(height: int, width: int) -> np.ndarray:
        refs.update(reference(arch, f"{height}x{width}"))
        return refs["inputs_u8"][:batch].astype(np.float32) / 255

    ns = {"hub": hub, "reference_images": reference_images}
    exec(PAGES[name], ns)  # noqa: S102 - the page's own code
    module, images = ns["module"], ns["images"]
    out = ns["logits" if kind == "classification" else "features"]
    named = {s: module(images, signature=s) for s in module.get_signature_names()}
    everything = module(images, as_dict=True)
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        got, got_named, mixed = sess.run([out, named, everything])
    main = "logits" if kind == "classification" else "feature_vector"
    expect = {"default": main, "image_classification": "logits", "image_feature_vector": "feature_vector"}
    return {
        "size": [ns["height"], ns["width"]],
        "channels": hub.get_num_image_channels(module),
        "signatures": module.get_signature_names(),
        "error": float(np.abs(got - refs[main][:batch]).max()),
        "signature_errors": {s: float(np.abs(v - refs[expect[s]][:batch]).max()) for s, v in got_named.items()},
        "as_dict": sorted(mixed),
        "output_info": sorted(module.get_output_info_dict()),
        "input_shape": module.get_input_info_dict()["images"].get_shape().as_list(),
        "variables": len(module.variables),
        "first_variable": module.variables[0].name,
        "trainable_variables": len(tf.trainable_variables()),
        "update_ops": len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)),
        "regularization_losses": len(tf.losses.get_regularization_losses()),
    }


def train_step(momentum: float = 0.99) -> dict:
    """Fine-tuning as TF1 code did it: the {"train"} graph, UPDATE_OPS run with the train op."""
    import tensorflow.compat.v1 as tf

    import inception_hub.tfhub as hub

    tf.reset_default_graph()
    frozen = hub.Module(V1_C1, tags={"train"})
    frozen_counts = [len(tf.trainable_variables()), len(tf.get_collection(tf.GraphKeys.UPDATE_OPS))]
    frozen(tf.placeholder(tf.float32, [None, 224, 224, 3]))
    frozen_counts += [len(tf.get_collection(tf.GraphKeys.UPDATE_OPS)), len(tf.losses.get_regularization_losses())]

    module = hub.Module(V1_C1, trainable=True, tags={"train"})
    images = tf.placeholder(tf.float32, [None, 224, 224, 3])
    labels = tf.placeholder(tf.int64, [None])
    logits = module(images)
    tf.losses.sparse_softmax_cross_entropy(labels, logits)
    loss = tf.losses.get_total_loss()  # with the module's REGULARIZATION_LOSSES
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        train_op = tf.train.GradientDescentOptimizer(0.01).minimize(loss)

    names = {
        "mean": "InceptionV1/Conv2d_1a_7x7/BatchNorm/moving_mean",
        "weights": "InceptionV1/Conv2d_1a_7x7/weights",
        "logits": "InceptionV1/Logits/Conv2d_0c_1x1/weights",
    }
    tracked = {k: module.variable_map[n] for k, n in names.items()}
    batch_mean = tf.reduce_mean(tf.nn.conv2d(2.0 * images - 1.0, tracked["weights"], 2, "SAME"), [0, 1, 2])
    weights = [v for n, v in module.variable_map.items() if n.endswith("/weights")]
    l2 = 4e-5 * tf.add_n([tf.nn.l2_loss(w) for w in weights])
    x = reference("inception_v1", "224x224")["inputs_u8"][:4].astype(np.float32) / 255
    feed = {images: x, labels: np.arange(4)}
    with tf.Session() as sess:
        sess.run(tf.global_variables_initializer())
        before, seen_mean = sess.run(tracked), sess.run(batch_mean, feed)
        reg, expected_reg = sess.run([tf.add_n(tf.losses.get_regularization_losses()), l2])
        sess.run(train_op, feed)
        after = sess.run(tracked)
    expected = momentum * before["mean"] + (1 - momentum) * seen_mean
    return {
        "frozen": frozen_counts,  # trainable vars, update ops before and after the call, regularization losses
        "trainable_variables": len(tf.trainable_variables()),
        "update_ops": len(update_ops),
        "regularization_losses": len(tf.losses.get_regularization_losses()),
        "regularization": [float(reg), float(expected_reg)],
        "moving_mean_error": float(np.abs(after["mean"] - expected).max()),
        "moving_mean_moved": float(np.abs(after["mean"] - before["mean"]).max()),
        "weights_moved": float(np.abs(after["weights"] - before["weights"]).max()),
        "logits_moved": float(np.abs(after["logits"] - before["logits"]).max()),
        "variable_scope": module.variables[0].name.split("/")[0],
    }


def refusals() -> dict:
    """What the TF1 API says to the mistakes it refuses."""
    import tensorflow.compat.v1 as tf

    import inception_hub.tfhub as hub

    tf.reset_default_graph()
    out = {}
    module = hub.Module(V1_C1)
    for name, call in {
        "wrong_size": lambda: module(np.zeros((1, 200, 200, 3), np.float32)),
        "unknown_signature": lambda: module(np.zeros((1, 224, 224, 3), np.float32), signature="nope"),
        "tf2_handle": lambda: hub.Module("https://tfhub.dev/google/imagenet/inception_v1/classification/5"),
        "unknown_tags": lambda: hub.Module(V1_C1, tags={"serve"}),
    }.items():
        try:
            call()
            out[name] = None
        except Exception as e:  # noqa: BLE001 - reported for the test to check
            out[name] = f"{type(e).__name__}: {e}"
    # The module folder itself works as the handle, as with tensorflow_hub.
    folder = hub.resolve(V1_C1)
    out["from_folder"] = hub.Module(folder).variables[0].name
    return out


def main() -> None:
    attempts = block_network()
    import tensorflow.compat.v1 as tf

    tf.disable_v2_behavior()  # as TF's migration guide runs TF1 code
    import inception_hub

    args = [a for a in sys.argv[1:] if "=" in a]
    for arg in args:
        arch, ckpt = arg.split("=", 1)
        inception_hub.fetch(arch, ckpt, progress=False)
    archs = [a.split("=", 1)[0] for a in args]
    result = {"pages": {}}
    for name in PAGES:
        if name.split("/")[0] in archs:
            result["pages"][name] = page(name)
    if "--train" in sys.argv:
        result["train"] = train_step()
        result["refusals"] = refusals()
    result["network_attempts"] = [str(a) for a in attempts]
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
