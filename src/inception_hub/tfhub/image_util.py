"""tensorflow_hub's image helpers: the size and channels a module's images must have.

They take a `Module` or `ModuleSpec` (read from the `image_module_info` attachment, else the
signature's input shape, as tensorflow_hub did), and also a `KerasLayer`, an `inception_hub.load`
module or a handle string (the size the network was trained at: any size works from /3 on).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ..export import proto
from .resolver import module_source

#: The key tensorflow_hub attached the image size under.
IMAGE_MODULE_INFO_KEY = "image_module_info"


@dataclass(frozen=True)
class InputSize:
    height: int = 0
    width: int = 0


@dataclass(frozen=True)
class ImageModuleInfo:
    """The `image_module_info` message (`default_image_size.height`, `.width`)."""

    default_image_size: InputSize = InputSize()

    @classmethod
    def FromString(cls, data: bytes) -> ImageModuleInfo:  # noqa: N802 - the protobuf classes' name
        size = proto.parse(bytes(proto.parse(data).get(1, [b""])[0]))
        return cls(InputSize(int(size.get(1, [0])[0]), int(size.get(2, [0])[0])))


def get_image_module_info(module_or_spec, required: bool = False) -> ImageModuleInfo | None:
    """The module's attached ImageModuleInfo, or None when it has none."""
    return module_or_spec.get_attached_message(IMAGE_MODULE_INFO_KEY, ImageModuleInfo, required=required)


def get_expected_image_size(module_or_spec, signature: str | None = None, input_name: str | None = None) -> list[int]:
    """[height, width] of the images the module expects (version 1: the only size it takes)."""
    if isinstance(module_or_spec, (str, os.PathLike)):
        return list(module_source(module_or_spec).image_size)
    size = getattr(module_or_spec, "expected_image_size", None)
    if size:
        return list(size)
    info = get_image_module_info(module_or_spec)
    if info and info.default_image_size.height and info.default_image_size.width:
        return [info.default_image_size.height, info.default_image_size.width]
    dims = _input_shape(module_or_spec, signature, input_name)
    if dims is None or len(dims) != 4 or not dims[1] or not dims[2]:
        raise ValueError(
            f"Shape of module input is {dims}, expected [batch_size, height, width, num_channels] "
            "with known height and width."
        )
    return [dims[1], dims[2]]


def get_num_image_channels(module_or_spec, signature: str | None = None, input_name: str | None = None) -> int:
    """The number of channels of the images (3: RGB)."""
    if isinstance(module_or_spec, (str, os.PathLike)) or hasattr(module_or_spec, "expected_image_size"):
        return 3  # every module of these networks takes RGB
    dims = _input_shape(module_or_spec, signature, input_name)
    if dims is None or len(dims) != 4 or dims[3] is None:
        raise ValueError(
            f"Shape of module input is {dims}, expected [batch_size, height, width, num_channels] "
            "with known num_channels"
        )
    return dims[3]


def _input_shape(module_or_spec, signature: str | None, input_name: str | None) -> list | None:
    name = input_name or "images"
    inputs = module_or_spec.get_input_info_dict(signature)
    if name not in inputs:
        raise ValueError(f"Module is missing input {name!r} in signature {signature or 'default'!r}.")
    shape = inputs[name].get_shape()
    return None if shape.rank is None else shape.as_list()
