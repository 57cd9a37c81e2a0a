"""The two network definitions and what can be derived from them without running them."""

from __future__ import annotations

import functools
from typing import Any

from . import inception_resnet_v2, inception_v1
from .layers import NUM_CLASSES, Architecture, Builder, Shape, ShapeBuilder, VariableSpec

#: Every network, by name. A new one is a net file declaring its ARCHITECTURE, listed here.
ARCHITECTURES: dict[str, Architecture] = {
    a.name: a for a in (inception_v1.ARCHITECTURE, inception_resnet_v2.ARCHITECTURE)
}


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


@functools.lru_cache(maxsize=256)
def fits(arch: str, height: int, width: int) -> bool:
    """Whether the network's VALID convolutions and pools accept this input size."""
    try:
        ARCHITECTURES[arch].fn(ShapeBuilder(), Shape(height, width, 3), num_classes=None)
    except ValueError:
        return False
    return True


def head_variables(arch: str) -> tuple[str, str]:
    """The classification head's weights and biases: a linear map of the pooled features, so
    of every position of the final end point too (what makes a class activation map exact)."""
    prefix = f"{ARCHITECTURES[arch].scope}/Logits/"
    weights, biases = (s.name for s in variable_specs(arch) if s.name.startswith(prefix))
    return weights, biases


def min_image_size(arch: str) -> int:
    """Smallest square input the network accepts."""
    return next(s for s in range(1, 1024) if fits(arch, s, s))


__all__ = [
    "ARCHITECTURES",
    "NUM_CLASSES",
    "Architecture",
    "Builder",
    "VariableSpec",
    "build",
    "fits",
    "head_variables",
    "min_image_size",
    "variable_specs",
]
