"""The raw-bytes serving signature of exported TF2 SavedModels (`serving_bytes`), so TF Serving,
Triton or KServe can serve photos with no client code.

Input `image_bytes`: a batch of encoded JPEG, PNG, GIF (first frame) or BMP files (`tf.string
[None]`; TF Serving's REST API takes them as `{"b64": "..."}`). Each is decoded and preprocessed
inside the graph as `classify` does it: `tf.io.decode_image` (JPEG with libjpeg-turbo's fast
integer IDCT, the decoder `classify` reproduces), pixels / 255, `central_crop(central_fraction)`, TF1
bilinear resize to the model's size, clipped to [0, 1]. Outputs: `logits`, and the top 5
`classes` (int64), `scores` (softmax probabilities) and `labels` (strings); a feature-vector
model outputs `feature_vector`. Two things TensorFlow's decoders do not do, and `classify` does:
turn a photo by its EXIF orientation, and composite transparent pixels over white.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

BYTES_SIGNATURE = "serving_bytes"
BYTES_INPUT = "image_bytes"
TOP_K = 5


def preprocess_bytes(data: tf.Tensor, size: tuple[int, int], central_fraction: float) -> tf.Tensor:
    """One encoded image to the float32 [H, W, 3] module input, as `images.load_image` does."""
    image = tf.io.decode_image(data, channels=3, dtype=tf.uint8, expand_animations=False)
    image = tf.image.convert_image_dtype(image, tf.float32)  # times float32(1/255)
    image = tf.image.central_crop(image, central_fraction)
    image = tf.raw_ops.ResizeBilinear(
        images=image[tf.newaxis], size=list(size), align_corners=False, half_pixel_centers=False
    )[0]
    return tf.clip_by_value(image, 0.0, 1.0)


def bytes_signature(
    net: Any, size: tuple[int, int], labels: Sequence[str] | None, central_fraction: float
) -> tf.types.experimental.ConcreteFunction:
    """The signature for `net` (an InceptionNet or a fine-tuned classifier) at input `size`,
    cropping `central_fraction` (the card's) first; `labels` names its classes (None: a
    feature-vector model)."""
    label_table = tf.constant(list(labels)) if labels else None

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=BYTES_INPUT)])
    def serve(image_bytes):
        images = tf.map_fn(
            lambda data: preprocess_bytes(data, size, central_fraction),
            image_bytes,
            fn_output_signature=tf.TensorSpec([*size, 3], tf.float32),
        )
        out, end_points = net.run(images)
        if label_table is None:
            return {"feature_vector": out}
        scores, classes = tf.math.top_k(tf.nn.softmax(out), k=min(TOP_K, len(labels)))
        return {
            "logits": out,
            "classes": tf.cast(classes, tf.int64),
            "scores": scores,
            "labels": tf.gather(label_table, classes),
        }

    return serve.get_concrete_function()
