"""The two network definitions and what can be derived from them without running them."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import inception_resnet_v2, inception_v1
from .layers import Builder, Shape, ShapeBuilder, VariableSpec


@dataclass(frozen=True)
class Architecture:
    """A network definition and its fixed facts."""

    name: str
    scope: str
    fn: Callable[..., Any]
    default_image_size: int
    num_features: int
    has_aux_logits: bool


ARCHITECTURES: dict[str, Architecture] = {
    "inception_v1": Architecture(
        "inception_v1",
        inception_v1.SCOPE,
        inception_v1.inception_v1,
        inception_v1.DEFAULT_IMAGE_SIZE,
        inception_v1.NUM_FEATURES,
        False,
    ),
    "inception_resnet_v2": Architecture(
        "inception_resnet_v2",
        inception_resnet_v2.SCOPE,
        inception_resnet_v2.inception_resnet_v2,
        inception_resnet_v2.DEFAULT_IMAGE_SIZE,
        inception_resnet_v2.NUM_FEATURES,
        True,
    ),
}

NUM_CLASSES = 1001


def build(b: Builder, arch: str, inputs: Any, num_classes: int | None, create_aux_logits: bool = False) -> Any:
    """Run `arch`'s definition on builder `b`; inputs are already in [-1, 1]."""
    return ARCHITECTURES[arch].fn(b, inputs, num_classes=num_classes, create_aux_logits=create_aux_logits)


@functools.cache
def variable_specs(arch: str, include_top: bool = True, include_aux: bool = False) -> tuple[VariableSpec, ...]:
    """The variables the definition creates, in TF-Slim's order.

    With `include_top and include_aux` this is exactly the released checkpoint's contents."""
    a = ARCHITECTURES[arch]
    b = ShapeBuilder()
    size = a.default_image_size
    build(b, arch, Shape(size, size, 3), NUM_CLASSES if include_top else None, include_aux and a.has_aux_logits)
    return tuple(b.variables)


__all__ = ["ARCHITECTURES", "NUM_CLASSES", "Architecture", "Builder", "VariableSpec", "build", "variable_specs"]
