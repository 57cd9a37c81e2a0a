"""`hub.KerasLayer` of a feature_vector/4 handle under a new Dense head, trained with `model.fit`
on the Keras backend KERAS_BACKEND names (set before Keras is imported, so this runs in a process
of its own). Prints one JSON object for tests/test_tfhub_api.py.

python tests/tfhub_backend_check.py CHECKPOINT
"""

from __future__ import annotations

import json
import sys

import numpy as np

from conftest import reference
from network_guard import block_network

HANDLE = "https://tfhub.dev/google/imagenet/inception_v1/feature_vector/4"
FIRST = "InceptionV1/Conv2d_1a_7x7/"


def npy(x) -> np.ndarray:
    from keras import ops

    return np.asarray(ops.convert_to_numpy(x))


def main() -> None:
    attempts = block_network()
    import inception_hub

    inception_hub.fetch("inception_v1", sys.argv[1], progress=False)
    import keras
    from keras import ops

    import inception_hub.tfhub as hub

    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:4].astype(np.float32) / 255
    y = np.arange(4)
    layer = hub.KerasLayer(HANDLE, trainable=True)
    model = keras.Sequential([keras.Input((224, 224, 3)), layer, keras.layers.Dense(5)])
    features = npy(layer(x))  # inference mode: the module's features

    first = layer.resolved_object.get_layer("Conv2d_1a_7x7")
    mean0, w0 = npy(first.slim[FIRST + "BatchNorm/moving_mean"]), npy(first.slim[FIRST + "weights"])
    head0 = npy(model.layers[-1].kernel)
    # The batch mean the training step's first BatchNorm sees (the weights before the step).
    batch_mean = npy(ops.mean(ops.conv(x * 2 - 1, w0, strides=2, padding="same"), axis=(0, 1, 2)))
    model.compile(optimizer=keras.optimizers.SGD(0.01), loss=keras.losses.SparseCategoricalCrossentropy(True))
    history = model.fit(x, y, batch_size=4, epochs=1, shuffle=False, verbose=0)
    mean1 = npy(first.slim[FIRST + "BatchNorm/moving_mean"])
    expected = 0.99 * mean0 + 0.01 * batch_mean  # the modules' default momentum
    result = {
        "backend": keras.backend.backend(),
        "feature_error": float(np.abs(features - ref["feature_vector"][:4]).max()),
        "loss": float(history.history["loss"][0]),
        "moving_mean_error": float(np.abs(mean1 - expected).max()),
        "moving_mean_moved": float(np.abs(mean1 - mean0).max()),
        "backbone_moved": float(np.abs(npy(first.slim[FIRST + "weights"]) - w0).max()),
        "head_moved": float(np.abs(npy(model.layers[-1].kernel) - head0).max()),
        "losses": len(model.losses),
        "tensorflow_imported": "tensorflow" in sys.modules,
        "network_attempts": [str(a) for a in attempts],
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
