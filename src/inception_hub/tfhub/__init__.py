"""tensorflow_hub's API for these modules on TensorFlow 2.16+ and Keras 3, offline, and TF-Hub's
side of them: the local hub server (`server`, `inception-hub serve-hub`) and tensorflow_hub's
own cache filled with them (`cache`, `inception-hub install-hub-cache`).

    import inception_hub.tfhub as hub
    layer = hub.KerasLayer("https://tfhub.dev/google/imagenet/inception_v1/classification/5")  # Keras 3
    module = hub.Module("https://tfhub.dev/google/imagenet/inception_v1/classification/1")    # TF1 graphs

`KerasLayer` (keras_layer.py), `Module`, `ModuleSpec` and `load_module_spec` (module.py,
module_spec.py), `load` and `resolve` (resolver.py), `get_expected_image_size` and
`get_num_image_channels` (image_util.py). Each is imported on first use, so the CLI's imports of
`cache` and `server` stay free of Keras and TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .image_util import ImageModuleInfo, get_expected_image_size, get_image_module_info, get_num_image_channels
    from .keras_layer import KerasLayer
    from .module import Module
    from .module_spec import ModuleSpec, load_module_spec
    from .resolver import load, resolve

#: Public name -> the file that defines it (PEP 562: imported when first asked for).
_LAZY = {
    "KerasLayer": "keras_layer",
    "Module": "module",
    "ModuleSpec": "module_spec",
    "load_module_spec": "module_spec",
    "load": "resolver",
    "resolve": "resolver",
    "get_expected_image_size": "image_util",
    "get_num_image_channels": "image_util",
    "get_image_module_info": "image_util",
    "ImageModuleInfo": "image_util",
}


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value  # once found, a plain attribute
        return value
    raise AttributeError(f"module 'inception_hub.tfhub' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "ImageModuleInfo",
    "KerasLayer",
    "Module",
    "ModuleSpec",
    "get_expected_image_size",
    "get_image_module_info",
    "get_num_image_channels",
    "load",
    "load_module_spec",
    "resolve",
]
