"""The model cards, and model handles with what they stand for.

A card (`CARDS`) holds each network's facts besides its definition: checkpoint release, paper,
published accuracy, preprocessing, engine order. A `ModelSpec` is one published module: a
network, an output kind and a version. Everything else reads these; nothing repeats them.

Handles are the ones tfhub.dev published, e.g. `google/imagenet/inception_v1/classification/5`,
with or without `https://tfhub.dev/`, plus short names such as `inception_v1` or
`inception_resnet_v2/feature_vector` (the newest version).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnknownHandleError
from .nets import ARCHITECTURES, NUM_CLASSES
from .nets.layers import BATCH_NORM_MOMENTUM, Architecture

#: Where TF-Slim published its pretrained checkpoints (see the TF-Slim README).
CHECKPOINT_BASE_URL = "https://download.tensorflow.org/models/"
KINDS = ("classification", "feature_vector")
VERSIONS = (1, 3, 4, 5)
LATEST_VERSION = 5
#: TF-Slim's evaluation preprocessing keeps the central 87.5% of the image before resizing.
CENTRAL_FRACTION = 0.875

#: What each published version added (shown on the model pages).
CHANGELOG = {
    1: "TF1 Hub format: graphs for tag sets {} and {train}; signatures default, image_classification "
    "(classification modules) and image_feature_vector; fixed input size.",
    3: f"Variable input size; a batch_norm_momentum argument (default {BATCH_NORM_MOMENTUM}) for fine-tuning.",
    4: "TF2 reusable SavedModel: hub.KerasLayer(..., trainable=True), regularization losses.",
    5: "A serving_default signature (input images, output logits or feature_vector).",
}


@dataclass(frozen=True)
class CheckpointSource:
    """An official TF-Slim checkpoint release: a tarball holding one V1-format checkpoint file."""

    tarball: str
    member: str
    sha256: str | None = None  # of the tarball, where a trustworthy record of it exists

    @property
    def url(self) -> str:
        return CHECKPOINT_BASE_URL + self.tarball

    @property
    def stem(self) -> str:
        return self.tarball.removesuffix(".tar.gz")


@dataclass(frozen=True)
class ModelCard:
    """Everything known about one network besides its definition (which `nets` holds): where
    its weights come from, how it was evaluated, what it was published as and how to run it."""

    arch: str
    title: str
    checkpoint: CheckpointSource
    paper: tuple[str, str]  # (citation, URL)
    #: TF-Slim's published ImageNet validation accuracy (top-1, top-5, in %).
    accuracy: tuple[float, float]
    #: Fastest exact (fp32) backend first, as benchmarks/throughput.py measured them on the
    #: project's 2-core machine (end-to-end and batch-32 model-only agree on the order).
    engines: tuple[str, ...]
    central_fraction: float = CENTRAL_FRACTION
    #: ONNX Runtime's thread spinning (benchmarks/engine_settings.py): spinning threads take the
    #: cores from the decoders, which costs the cheap network end to end and helps the costly one.
    onnxruntime_spinning: bool = True

    @property
    def architecture(self) -> Architecture:
        return ARCHITECTURES[self.arch]

    @property
    def image_size(self) -> tuple[int, int]:
        s = self.architecture.default_image_size
        return (s, s)


CARDS: dict[str, ModelCard] = {
    card.arch: card
    for card in (
        ModelCard(
            arch="inception_v1",
            title="Inception V1",
            checkpoint=CheckpointSource("inception_v1_2016_08_28.tar.gz", "inception_v1.ckpt"),
            paper=("Going deeper with convolutions (Szegedy et al., 2014)", "https://arxiv.org/abs/1409.4842"),
            accuracy=(69.8, 89.6),
            engines=("onnxruntime", "openvino", "tf"),
            onnxruntime_spinning=False,
        ),
        ModelCard(
            arch="inception_resnet_v2",
            title="Inception-ResNet-V2",
            checkpoint=CheckpointSource("inception_resnet_v2_2016_08_30.tar.gz", "inception_resnet_v2_2016_08_30.ckpt"),
            paper=(
                "Inception-v4, Inception-ResNet and the Impact of Residual Connections on Learning "
                "(Szegedy et al., 2016)",
                "https://arxiv.org/abs/1602.07261",
            ),
            accuracy=(80.4, 95.3),
            engines=("openvino", "onnxruntime", "tf"),
        ),
    )
}


def card(arch: str) -> ModelCard:
    return CARDS[arch]


# Signatures ------------------------------------------------------------------------------------

#: What a signature computes: the logits, or the pooled feature vector.
LOGITS, FEATURES = "logits", "feature_vector"


@dataclass(frozen=True)
class Signature:
    """A published signature: its name, what it computes, and the name of its output."""

    name: str
    output: str  # LOGITS or FEATURES
    output_key: str


def signatures(kind: str, *, tf1: bool = False) -> dict[str, Signature]:
    """The published modules' signatures, all taking `images`. TF1 modules call their main one
    `default`; TF2 version 5 calls it `serving_default`, with output `logits` or `feature_vector`."""
    main = LOGITS if kind == "classification" else FEATURES
    sigs = [Signature("default", main, "default") if tf1 else Signature("serving_default", main, main)]
    if kind == "classification":
        sigs.append(Signature("image_classification", LOGITS, "default"))
    sigs.append(Signature("image_feature_vector", FEATURES, "default"))
    return {s.name: s for s in sigs}


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
    def card(self) -> ModelCard:
        return CARDS[self.arch]

    @property
    def image_size(self) -> tuple[int, int]:
        """The size the network was trained at (the fixed input size of version 1)."""
        return self.card.image_size

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
        return self.card.checkpoint

    def with_kind(self, kind: str | None) -> ModelSpec:
        """The same network and version with the other output (None: unchanged)."""
        return self if kind in (None, self.kind) else ModelSpec(self.arch, kind, self.version)


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
