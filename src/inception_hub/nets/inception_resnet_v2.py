"""Inception-ResNet-V2, as TF-Slim's `nets/inception_resnet_v2.py` builds it (output stride 16).

Szegedy et al., "Inception-v4, Inception-ResNet and the Impact of Residual Connections on
Learning", https://arxiv.org/abs/1602.07261. Scopes match `inception_resnet_v2_2016_08_30.ckpt`,
including TF-Slim's `Repeat`, `Repeat_1`, `Repeat_2` scopes around the residual blocks.
"""

from __future__ import annotations

from typing import Any

from .layers import NUM_CLASSES, Architecture, Builder

SCOPE = "InceptionResnetV2"


def block35(b: Builder, net: Any, scale: float) -> Any:
    """35x35 residual block (Inception-ResNet-A)."""
    with b.scope("Branch_0"):
        b0 = b.conv2d(net, 32, 1, scope="Conv2d_1x1")
    with b.scope("Branch_1"):
        b1 = b.conv2d(net, 32, 1, scope="Conv2d_0a_1x1")
        b1 = b.conv2d(b1, 32, 3, scope="Conv2d_0b_3x3")
    with b.scope("Branch_2"):
        b2 = b.conv2d(net, 32, 1, scope="Conv2d_0a_1x1")
        b2 = b.conv2d(b2, 48, 3, scope="Conv2d_0b_3x3")
        b2 = b.conv2d(b2, 64, 3, scope="Conv2d_0c_3x3")
    up = b.conv2d(b.concat([b0, b1, b2]), 320, 1, scope="Conv2d_1x1", batch_norm=False, activation=False)
    return b.residual(net, up, scale=scale, activation=True)


def block17(b: Builder, net: Any, scale: float) -> Any:
    """17x17 residual block (Inception-ResNet-B)."""
    with b.scope("Branch_0"):
        b0 = b.conv2d(net, 192, 1, scope="Conv2d_1x1")
    with b.scope("Branch_1"):
        b1 = b.conv2d(net, 128, 1, scope="Conv2d_0a_1x1")
        b1 = b.conv2d(b1, 160, (1, 7), scope="Conv2d_0b_1x7")
        b1 = b.conv2d(b1, 192, (7, 1), scope="Conv2d_0c_7x1")
    up = b.conv2d(b.concat([b0, b1]), 1088, 1, scope="Conv2d_1x1", batch_norm=False, activation=False)
    return b.residual(net, up, scale=scale, activation=True)


def block8(b: Builder, net: Any, scale: float, activation: bool = True) -> Any:
    """8x8 residual block (Inception-ResNet-C)."""
    with b.scope("Branch_0"):
        b0 = b.conv2d(net, 192, 1, scope="Conv2d_1x1")
    with b.scope("Branch_1"):
        b1 = b.conv2d(net, 192, 1, scope="Conv2d_0a_1x1")
        b1 = b.conv2d(b1, 224, (1, 3), scope="Conv2d_0b_1x3")
        b1 = b.conv2d(b1, 256, (3, 1), scope="Conv2d_0c_3x1")
    up = b.conv2d(b.concat([b0, b1]), 2080, 1, scope="Conv2d_1x1", batch_norm=False, activation=False)
    return b.residual(net, up, scale=scale, activation=activation)


def repeat(b: Builder, net: Any, repeat_scope: str, block: Any, name: str, count: int, scale: float) -> Any:
    """TF-Slim's `slim.repeat`: blocks named `<name>_1` ... `<name>_<count>` under one scope."""
    with b.scope(repeat_scope):
        for i in range(1, count + 1):
            with b.scope(f"{name}_{i}"):
                net = block(b, net, scale)
    return net


def inception_resnet_v2_base(b: Builder, inputs: Any) -> tuple[Any, Any]:
    """Inputs in [-1, 1] up to `Conv2d_7b_1x1`; returns it and the `PreAuxLogits` activation.

    Shapes in the comments are for the 299 x 299 x 3 training size."""
    ep = b.end_point
    net = b.conv2d(inputs, 32, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
    net = ep("Conv2d_1a_3x3", net)  # 149 x 149 x 32
    net = ep("Conv2d_2a_3x3", b.conv2d(net, 32, 3, padding="VALID", scope="Conv2d_2a_3x3"))  # 147 x 147 x 32
    net = ep("Conv2d_2b_3x3", b.conv2d(net, 64, 3, scope="Conv2d_2b_3x3"))  # 147 x 147 x 64
    net = ep("MaxPool_3a_3x3", b.max_pool2d(net, 3, stride=2, padding="VALID"))  # 73 x 73 x 64
    net = ep("Conv2d_3b_1x1", b.conv2d(net, 80, 1, padding="VALID", scope="Conv2d_3b_1x1"))  # 73 x 73 x 80
    net = ep("Conv2d_4a_3x3", b.conv2d(net, 192, 3, padding="VALID", scope="Conv2d_4a_3x3"))  # 71 x 71 x 192
    net = ep("MaxPool_5a_3x3", b.max_pool2d(net, 3, stride=2, padding="VALID"))  # 35 x 35 x 192

    with b.scope("Mixed_5b"):
        with b.scope("Branch_0"):
            b0 = b.conv2d(net, 96, 1, scope="Conv2d_1x1")
        with b.scope("Branch_1"):
            b1 = b.conv2d(net, 48, 1, scope="Conv2d_0a_1x1")
            b1 = b.conv2d(b1, 64, 5, scope="Conv2d_0b_5x5")
        with b.scope("Branch_2"):
            b2 = b.conv2d(net, 64, 1, scope="Conv2d_0a_1x1")
            b2 = b.conv2d(b2, 96, 3, scope="Conv2d_0b_3x3")
            b2 = b.conv2d(b2, 96, 3, scope="Conv2d_0c_3x3")
        with b.scope("Branch_3"):
            b3 = b.avg_pool2d(net, 3, stride=1, padding="SAME")
            b3 = b.conv2d(b3, 64, 1, scope="Conv2d_0b_1x1")
        net = ep("Mixed_5b", b.concat([b0, b1, b2, b3]))  # 35 x 35 x 320

    net = repeat(b, net, "Repeat", block35, "block35", 10, scale=0.17)

    with b.scope("Mixed_6a"):
        with b.scope("Branch_0"):
            b0 = b.conv2d(net, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with b.scope("Branch_1"):
            b1 = b.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b1 = b.conv2d(b1, 256, 3, scope="Conv2d_0b_3x3")
            b1 = b.conv2d(b1, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with b.scope("Branch_2"):
            b2 = b.max_pool2d(net, 3, stride=2, padding="VALID")
        net = ep("Mixed_6a", b.concat([b0, b1, b2]))  # 17 x 17 x 1088

    net = repeat(b, net, "Repeat_1", block17, "block17", 20, scale=0.10)
    pre_aux = net = ep("PreAuxLogits", net)  # 17 x 17 x 1088

    with b.scope("Mixed_7a"):
        with b.scope("Branch_0"):
            b0 = b.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b0 = b.conv2d(b0, 384, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with b.scope("Branch_1"):
            b1 = b.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b1 = b.conv2d(b1, 288, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with b.scope("Branch_2"):
            b2 = b.conv2d(net, 256, 1, scope="Conv2d_0a_1x1")
            b2 = b.conv2d(b2, 288, 3, scope="Conv2d_0b_3x3")
            b2 = b.conv2d(b2, 320, 3, stride=2, padding="VALID", scope="Conv2d_1a_3x3")
        with b.scope("Branch_3"):
            b3 = b.max_pool2d(net, 3, stride=2, padding="VALID")
        net = ep("Mixed_7a", b.concat([b0, b1, b2, b3]))  # 8 x 8 x 2080

    net = repeat(b, net, "Repeat_2", block8, "block8", 9, scale=0.20)
    # The last block is unscaled and has no ReLU: Conv2d_7b_1x1's BatchNorm follows directly.
    with b.scope("Block8"):
        net = block8(b, net, scale=1.0, activation=False)
    net = ep("Conv2d_7b_1x1", b.conv2d(net, 1536, 1, scope="Conv2d_7b_1x1"))  # 8 x 8 x 1536
    return net, pre_aux


def aux_logits(b: Builder, net: Any, num_classes: int) -> Any:
    """The auxiliary head on `PreAuxLogits`. The checkpoint carries it; inference ignores it,
    so it is only built to know its variables (its 5x5 kernel assumes the 299x299 input)."""
    with b.scope("AuxLogits"):
        aux = b.avg_pool2d(net, 5, stride=3, padding="VALID")
        aux = b.conv2d(aux, 128, 1, scope="Conv2d_1b_1x1")
        aux = b.conv2d(aux, 768, (aux.height, aux.width), padding="VALID", scope="Conv2d_2a_5x5")
        return b.fully_connected(b.flatten(aux), num_classes, scope="Logits")


def inception_resnet_v2(
    b: Builder, inputs: Any, num_classes: int | None = NUM_CLASSES, create_aux_logits: bool = False
) -> Any:
    """Logits [N, num_classes], or the 1536-d feature vector when `num_classes` is None."""
    with b.scope(SCOPE):
        net, pre_aux = inception_resnet_v2_base(b, inputs)
        if create_aux_logits:
            aux_logits(b, pre_aux, num_classes or NUM_CLASSES)
        features = b.end_point("global_pool", b.global_pool(net))  # 1536
        if num_classes is None:
            return features
        with b.scope("Logits"):
            net = b.dropout(features)
            logits = b.fully_connected(net, num_classes, scope="Logits")
        return b.end_point("Logits", logits)  # 1001


ARCHITECTURE = Architecture(
    name="inception_resnet_v2",
    scope=SCOPE,
    fn=inception_resnet_v2,
    default_image_size=299,
    num_features=1536,
    final_endpoint="Conv2d_7b_1x1",
    has_aux_logits=True,
)
