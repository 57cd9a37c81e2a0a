"""Model handles and what they stand for: architecture, output, version, image size, weights.

Handles are the ones tfhub.dev published, e.g. `google/imagenet/inception_v1/classification/5`,
with or without `https://tfhub.dev/`, plus short names such as `inception_v1` or
`inception_resnet_v2/feature_vector` (the newest version).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnknownHandleError
from .nets import ARCHITECTURES, NUM_CLASSES

#: Where TF-Slim published its pretrained checkpoints (see the TF-Slim README).
CHECKPOINT_BASE_URL = "https://download.tensorflow.org/models/"
KINDS = ("classification", "feature_vector")
VERSIONS = (1, 3, 4, 5)
LATEST_VERSION = 5


@dataclass(frozen=True)
class CheckpointSource:
    """An official TF-Slim checkpoint release: a tarball holding one V1-format checkpoint file."""

    tarball: str
    member: str

    @property
    def url(self) -> str:
        return CHECKPOINT_BASE_URL + self.tarball

    @property
    def stem(self) -> str:
        return self.tarball.removesuffix(".tar.gz")


CHECKPOINTS: dict[str, CheckpointSource] = {
    "inception_v1": CheckpointSource("inception_v1_2016_08_28.tar.gz", "inception_v1.ckpt"),
    "inception_resnet_v2": CheckpointSource(
        "inception_resnet_v2_2016_08_30.tar.gz", "inception_resnet_v2_2016_08_30.ckpt"
    ),
}


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to build one published module."""

    arch: str
    kind: str
    version: int

    @property
    def handle(self) -> str:
        return f"google/imagenet/{self.arch}/{self.kind}/{self.version}"

    @property
    def url(self) -> str:
        return f"https://tfhub.dev/{self.handle}"

    @property
    def image_size(self) -> tuple[int, int]:
        """The size the network was trained at (the fixed input size of version 1)."""
        s = ARCHITECTURES[self.arch].default_image_size
        return (s, s)

    @property
    def variable_size(self) -> bool:
        """Version 3 and later accept any input size; version 1 has a fixed one."""
        return self.version >= 3

    @property
    def hub_format(self) -> str:
        """Versions 1 and 3 are TF1 Hub modules, 4 and 5 TF2 reusable SavedModels."""
        return "tf1_hub" if self.version < 4 else "tf2_saved_model"

    @property
    def num_classes(self) -> int | None:
        return NUM_CLASSES if self.kind == "classification" else None

    @property
    def output_dim(self) -> int:
        return self.num_classes or ARCHITECTURES[self.arch].num_features

    @property
    def checkpoint(self) -> CheckpointSource:
        return CHECKPOINTS[self.arch]


def all_specs() -> list[ModelSpec]:
    return [ModelSpec(a, k, v) for a in ARCHITECTURES for k in KINDS for v in VERSIONS]


_PREFIX = re.compile(r"^(?:https?://)?(?:www\.)?tfhub\.dev/", re.IGNORECASE)


def resolve(handle: str) -> ModelSpec:
    """Turn any accepted spelling of a handle into its ModelSpec, or explain what is accepted."""
    if not isinstance(handle, str) or not handle.strip():
        raise UnknownHandleError(f"a model handle must be a non-empty string, got {handle!r}.{_known()}")
    text = _PREFIX.sub("", handle.strip()).split("?", 1)[0].strip("/")
    parts = text.split("/")
    if len(parts) == 5 and parts[:2] == ["google", "imagenet"]:
        arch, kind, version = parts[2], parts[3], parts[4]
    elif 1 <= len(parts) <= 3:
        arch = parts[0].replace("-", "_").lower()
        kind = parts[1] if len(parts) > 1 else "classification"
        version = parts[2] if len(parts) > 2 else str(LATEST_VERSION)
    else:
        raise UnknownHandleError(f"unknown model handle {handle!r}.{_known()}")
    if arch not in ARCHITECTURES or kind not in KINDS or not version.isdigit() or int(version) not in VERSIONS:
        raise UnknownHandleError(f"unknown model handle {handle!r}.{_known()}")
    return ModelSpec(arch, kind, int(version))


def _known() -> str:
    return (
        " Known handles: google/imagenet/{inception_v1,inception_resnet_v2}/{classification,feature_vector}/"
        "{1,3,4,5} (optionally prefixed with https://tfhub.dev/), or the short names inception_v1, "
        "inception_resnet_v2, inception_v1/feature_vector, inception_resnet_v2/feature_vector. "
        "`inception-hub models` lists them all."
    )
