"""Inception V1 (GoogLeNet with BatchNorm), as TF-Slim's `nets/inception_v1.py` builds it.

Szegedy et al., "Going deeper with convolutions", https://arxiv.org/abs/1409.4842.
Scopes, layer names and the order of variables match the released `inception_v1.ckpt`.
"""

from __future__ import annotations

from typing import Any

from .layers import NUM_CLASSES, Architecture, Builder

SCOPE = "InceptionV1"


def inception_block(
    b: Builder,
    net: Any,
    scope: str,
    branch_0: int,
    branch_1: tuple[int, int],
    branch_2: tuple[int, int],
    branch_3: int,
    branch_2_3x3_name: str = "Conv2d_0b_3x3",
) -> Any:
    """One Inception module: 1x1 | 1x1->3x3 | 1x1->3x3 | 3x3 max pool->1x1, concatenated.

    (The paper's 5x5 branch is a 3x3 in TF-Slim's version, and so in the checkpoint.)"""
    with b.scope(scope):
        with b.scope("Branch_0"):
            b0 = b.conv2d(net, branch_0, 1, scope="Conv2d_0a_1x1")
        with b.scope("Branch_1"):
            b1 = b.conv2d(net, branch_1[0], 1, scope="Conv2d_0a_1x1")
            b1 = b.conv2d(b1, branch_1[1], 3, scope="Conv2d_0b_3x3")
        with b.scope("Branch_2"):
            b2 = b.conv2d(net, branch_2[0], 1, scope="Conv2d_0a_1x1")
            b2 = b.conv2d(b2, branch_2[1], 3, scope=branch_2_3x3_name)
        with b.scope("Branch_3"):
            b3 = b.max_pool2d(net, 3, stride=1)
            b3 = b.conv2d(b3, branch_3, 1, scope="Conv2d_0b_1x1")
        return b.end_point(scope, b.concat([b0, b1, b2, b3]))


def inception_v1_base(b: Builder, inputs: Any) -> Any:
    """Inputs in [-1, 1] up to `Mixed_5c`, recording every end point.

    Shapes in the comments are for the 224 x 224 x 3 training size."""
    ep = b.end_point
    net = ep("Conv2d_1a_7x7", b.conv2d(inputs, 64, 7, stride=2, scope="Conv2d_1a_7x7"))  # 112 x 112 x 64
    net = ep("MaxPool_2a_3x3", b.max_pool2d(net, 3, stride=2))  # 56 x 56 x 64
    net = ep("Conv2d_2b_1x1", b.conv2d(net, 64, 1, scope="Conv2d_2b_1x1"))  # 56 x 56 x 64
    net = ep("Conv2d_2c_3x3", b.conv2d(net, 192, 3, scope="Conv2d_2c_3x3"))  # 56 x 56 x 192
    net = ep("MaxPool_3a_3x3", b.max_pool2d(net, 3, stride=2))  # 28 x 28 x 192

    net = inception_block(b, net, "Mixed_3b", 64, (96, 128), (16, 32), 32)  # 28 x 28 x 256
    net = inception_block(b, net, "Mixed_3c", 128, (128, 192), (32, 96), 64)  # 28 x 28 x 480
    net = ep("MaxPool_4a_3x3", b.max_pool2d(net, 3, stride=2))  # 14 x 14 x 480

    net = inception_block(b, net, "Mixed_4b", 192, (96, 208), (16, 48), 64)  # 14 x 14 x 512
    net = inception_block(b, net, "Mixed_4c", 160, (112, 224), (24, 64), 64)  # 14 x 14 x 512
    net = inception_block(b, net, "Mixed_4d", 128, (128, 256), (24, 64), 64)  # 14 x 14 x 512
    net = inception_block(b, net, "Mixed_4e", 112, (144, 288), (32, 64), 64)  # 14 x 14 x 528
    net = inception_block(b, net, "Mixed_4f", 256, (160, 320), (32, 128), 128)  # 14 x 14 x 832
    net = ep("MaxPool_5a_2x2", b.max_pool2d(net, 2, stride=2))  # 7 x 7 x 832

    # The released checkpoint names this one layer Conv2d_0a_3x3; the name has to be kept.
    net = inception_block(b, net, "Mixed_5b", 256, (160, 320), (32, 128), 128, "Conv2d_0a_3x3")  # 7 x 7 x 832
    return inception_block(b, net, "Mixed_5c", 384, (192, 384), (48, 128), 128)  # 7 x 7 x 1024


def inception_v1(
    b: Builder, inputs: Any, num_classes: int | None = NUM_CLASSES, create_aux_logits: bool = False
) -> Any:
    """Logits [N, num_classes], or the 1024-d feature vector when `num_classes` is None.

    TF-Slim pools with a fixed 7x7 window, which equals global average pooling at 224x224;
    global pooling is what makes any other input size work. Inception V1 has no aux head."""
    del create_aux_logits
    with b.scope(SCOPE):
        net = inception_v1_base(b, inputs)
        features = b.end_point("global_pool", b.global_pool(net))  # 1024
        if num_classes is None:
            return features
        with b.scope("Logits"):
            net = b.dropout(features)
            logits = b.fully_connected(net, num_classes, scope="Conv2d_0c_1x1", as_conv1x1=True)
        return b.end_point("Logits", logits)  # 1001


ARCHITECTURE = Architecture(
    name="inception_v1",
    scope=SCOPE,
    fn=inception_v1,
    default_image_size=224,
    num_features=1024,
    final_endpoint="Mixed_5c",
)
