"""The model cards, and model handles with what they stand for.

A card (`CARDS`) holds each network's facts besides its definition: checkpoint release, paper,
published accuracy, preprocessing, engine order. A `ModelSpec` is one published module: a
network, an output kind and a version. Everything else reads these; nothing repeats them.

Handles are the ones tfhub.dev published, e.g. `google/imagenet/inception_v1/classification/5`,
with or without `https://tfhub.dev/`, their .tar.gz files in Google Cloud Storage, their Kaggle
Models URLs and kagglehub handles, plus short names such as `inception_v1` or
`inception_resnet_v2/feature_vector` (the newest version).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .errors import UnknownHandleError
from .nets import ARCHITECTURES, NUM_CLASSES
from .nets.layers import BATCH_NORM_MOMENTUM, FEATURES, LOGITS, Architecture

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


#: Hosts that served the tfhub.dev handles: tfhub.dev itself and its mirror in China.
_TFHUB = re.compile(r"^(?:https?://)?(?:www\.)?(?:tfhub\.dev|hub\.tensorflow\.google\.cn)/", re.IGNORECASE)
_KAGGLE = re.compile(r"^(?:https?://)?(?:www\.)?kaggle\.com/", re.IGNORECASE)
#: Where tfhub.dev kept the modules' .tar.gz files (its downloads were redirected there; module
#: pages of 2018 linked the test bucket, some under `google/image/imagenet/`), and China's mirror;
#: without a host, the same path asked of serve-hub.
_GCS = re.compile(
    r"^(?:gs://|(?:https?://)?(?:storage\.googleapis\.com|gcs\.tensorflow\.google\.cn)/)?(?:tfhub-modules|tfhub-test-modules)/",
    re.IGNORECASE,
)
GCS_BUCKETS = (
    "https://storage.googleapis.com/tfhub-modules/google/imagenet",
    "https://storage.googleapis.com/tfhub-test-modules/google/imagenet",
    "https://storage.googleapis.com/tfhub-test-modules/google/image/imagenet",
    "gs://tfhub-modules/google/imagenet",
    "https://gcs.tensorflow.google.cn/tfhub-modules/google/imagenet",
)

#: Kaggle Models versions of the TensorFlow2 framework -> tfhub.dev versions. In November 2023
#: tfhub.dev redirected each handle to Kaggle Models, which numbers a variation's versions per
#: framework from 1: the TF2 SavedModels /4 and /5 became TensorFlow2 versions 1 and 2. Sources:
#: OpenVINO's TF-Hub model lists (openvinotoolkit/openvino, tests/model_hub_tests), whose entry
#: `imagenet/inception_v1/classification` moved from tfhub.dev's /5 to
#: `kaggle.com/models/google/inception-v1/frameworks/tensorFlow2/variations/classification/versions/2`,
#: as `imagenet/resnet_v2_50/feature_vector/5` and `imagenet/mobilenet_v2_100_224/feature_vector/5`
#: moved to TensorFlow2 `versions/2`, and the variation of a feature vector is `feature-vector`
#: (`inception-v3/.../variations/feature-vector`).
KAGGLE_TF2_VERSIONS = {1: 4, 2: 5}
#: Kaggle TensorFlow1 versions -> tfhub.dev versions. INFERRED, NOT DOCUMENTED: every tfhub.dev ->
#: Kaggle pair that can be checked (universal-sentence-encoder-large TF1 /1 /2 /3 -> Kaggle
#: TensorFlow1 1 2 3; nnlm, elmo, albert) numbers each framework's versions 1..n in order, so /1
#: is 1 and /3 is 2 if Kaggle renumbered it, or 3 if it kept the number: both map to /3. /1 and /3
#: hold the same weights (they differ in input size and BatchNorm momentum), so a wrong guess
#: costs little.
KAGGLE_TF1_VERSIONS = {1: 1, 2: 3, 3: 3}
KAGGLE_TF1_NOTE = (
    "Kaggle TensorFlow1 versions are mapped 1 -> /1 and 2, 3 -> /3: inferred from how Kaggle numbered "
    "other tfhub.dev modules, not documented for these (/1 and /3 hold the same weights)."
)
_KAGGLE_FRAMEWORKS = {"tensorflow2": KAGGLE_TF2_VERSIONS, "tensorflow1": KAGGLE_TF1_VERSIONS}
#: Kaggle TfJs version -> the tfhub.dev version its TF.js model came from (inferred, as for TensorFlow1).
KAGGLE_TFJS_VERSIONS = {1: 3}


def kaggle_slug(arch: str) -> str:
    """The network's name on Kaggle Models (`inception-v1`, `inception-resnet-v2`)."""
    return arch.replace("_", "-")


def kaggle_versions(spec: ModelSpec) -> tuple[str, list[int]]:
    """The Kaggle Models framework of a module (`tensorFlow2` or `tensorFlow1`, as kagglehub
    handles spell it) and the Kaggle versions that stand for it."""
    tf2 = spec.hub_format == "tf2_saved_model"
    table = KAGGLE_TF2_VERSIONS if tf2 else KAGGLE_TF1_VERSIONS
    return ("tensorFlow2" if tf2 else "tensorFlow1"), [k for k, v in table.items() if v == spec.version]


def kagglehub_handles(spec: ModelSpec) -> list[str]:
    """The kagglehub handles of a module, e.g. `google/inception-v1/tensorFlow2/classification/2`."""
    framework, versions = kaggle_versions(spec)
    base = f"google/{kaggle_slug(spec.arch)}/{framework}/{spec.kind.replace('_', '-')}"
    return [f"{base}/{v}" for v in versions]


def kaggle_urls(spec: ModelSpec) -> list[str]:
    """The Kaggle Models URLs of a module: the short form Kaggle's usage snippets show and the long
    form of its pages, with and without www, with the framework spelled as each shows it; the long
    form with `?tfhub-redirect=true` (where tfhub.dev's redirects landed); the download API."""
    framework, versions = kaggle_versions(spec)
    variation = spec.kind.replace("_", "-")
    slug = kaggle_slug(spec.arch)
    urls = []
    for kaggle in versions:
        for fw in (framework[0].upper() + framework[1:], framework):
            short = f"models/google/{slug}/{fw}/{variation}/{kaggle}"
            long = f"models/google/{slug}/frameworks/{fw}/variations/{variation}/versions/{kaggle}"
            for host in ("https://www.kaggle.com", "https://kaggle.com"):
                urls += [f"{host}/{short}", f"{host}/{long}"]
            urls += [f"https://www.kaggle.com/{long}?tfhub-redirect=true"]
            urls += [f"https://www.kaggle.com/api/v1/models/google/{slug}/{fw}/{variation}/{kaggle}/download"]
    return urls


def spellings(spec: ModelSpec) -> list[str]:
    """Every way users' code names this module, as written (tensorflow_hub caches a module under
    the SHA-1 of the exact string): tfhub.dev and hub.tensorflow.google.cn over https and http,
    `feature_vector` and tfhub.dev's own `feature-vector`, with and without a trailing slash or
    `?tf-hub-format=compressed`; the .tar.gz files in Google Cloud Storage; the Kaggle Models URLs.
    `spec.url` comes first."""
    kinds = dict.fromkeys((spec.kind, spec.kind.replace("_", "-")))
    out = []
    for host in ("tfhub.dev", "hub.tensorflow.google.cn"):
        for scheme in ("https", "http"):
            for kind in kinds:
                url = f"{scheme}://{host}/google/imagenet/{spec.arch}/{kind}/{spec.version}"
                out += [url, url + "/", url + "?tf-hub-format=compressed"]
    out += [f"{bucket}/{spec.arch}/{spec.kind}/{spec.version}.tar.gz" for bucket in GCS_BUCKETS]
    return out + kaggle_urls(spec)


def _published(text: str) -> ModelSpec | None:
    """The module a published handle names (a tfhub.dev handle, a GCS .tar.gz, a Kaggle Models
    URL or kagglehub handle, with or without host and query), or None when `text` is not one."""
    text = text.strip().split("#", 1)[0].split("?", 1)[0]
    if (tfjs := tfjs_spec(text)) is not None:
        raise UnknownHandleError(_tfjs(text, tfjs))
    gcs = _GCS.match(text)
    if gcs:
        parts = text[gcs.end() :].split("/")
        if len(parts) == 6 and [p.lower() for p in parts[:3]] == ["google", "image", "imagenet"]:
            parts.pop(1)  # the 2018 test bucket's path
        if len(parts) != 5 or [p.lower() for p in parts[:2]] != ["google", "imagenet"]:
            return None
        return _spec(parts[2], parts[3], parts[4].removesuffix(".tar.gz")) if parts[4].endswith(".tar.gz") else None
    kaggle = _KAGGLE.match(text)
    parts = [p for p in text[kaggle.end() if kaggle else 0 :].split("/") if p]
    low = [p.lower() for p in parts]
    if low[:2] == ["api", "v1"] and len(parts) == 9 and low[8] == "download":
        parts, low = parts[2:8], low[2:8]  # Kaggle's download API: models/google/<model>/<fw>/<var>/<v>
    if not kaggle and low[:1] != ["models"]:
        if len(parts) in (4, 5) and low[0] == "google" and low[1] != "imagenet":
            return _kaggle(text, *parts[1:])  # a kagglehub handle
        parts = [p for p in _TFHUB.sub("", text).split("/") if p]
        if len(parts) != 5 or [p.lower() for p in parts[:2]] != ["google", "imagenet"]:
            return None
        return _spec(parts[2], parts[3], parts[4])
    if len(parts) in (7, 9) and low[3:9:2] == ["frameworks", "variations", "versions"][: (len(parts) - 3) // 2]:
        parts = parts[:3] + parts[4::2]  # the long form of Kaggle's pages
    if len(parts) not in (5, 6) or low[:2] != ["models", "google"]:
        return None
    return _kaggle(text, *parts[2:])


def _kaggle(text: str, slug: str, framework: str, variation: str, version: str | None = None) -> ModelSpec | None:
    """The module of a Kaggle Models name; without a version, the newest one."""
    versions = _KAGGLE_FRAMEWORKS.get(framework.lower())
    if versions is None or (version is not None and (not version.isdigit() or int(version) not in versions)):
        return None
    return _spec(slug, variation, str(versions[int(version) if version else max(versions)]))


def tfjs_spec(text: str) -> ModelSpec | None:
    """The module whose TF.js model `text` names (a tfhub.dev `tfjs-model` path, Kaggle's `TfJs`), or None."""
    text = text.strip().split("#", 1)[0].split("?", 1)[0]
    kaggle = _KAGGLE.match(text)
    parts = [p for p in (text[kaggle.end() :] if kaggle else _TFHUB.sub("", text)).split("/") if p]
    low = [p.lower() for p in parts]
    if len(parts) == 8 and low[:3] == ["google", "tfjs-model", "imagenet"] and low[6] == "default":
        return _spec(parts[3], parts[4], parts[5]) if parts[7].isdigit() else None
    parts, low = (parts[1:], low[1:]) if low[:1] == ["models"] else (parts, low)
    if len(parts) in (6, 8) and low[2:7:2] == ["frameworks", "variations", "versions"][: (len(parts) - 2) // 2]:
        parts, low = parts[:2] + parts[3::2], low[:2] + low[3::2]  # the long form of Kaggle's pages
    parts = [*parts, str(max(KAGGLE_TFJS_VERSIONS))] if len(parts) == 4 else parts
    if len(parts) != 5 or low[0::2][:2] != ["google", "tfjs"] or parts[4] not in map(str, KAGGLE_TFJS_VERSIONS):
        return None
    return _spec(parts[1], parts[3], str(KAGGLE_TFJS_VERSIONS[int(parts[4])]))


def _tfjs(text: str, spec: ModelSpec) -> str:
    latest = ModelSpec(spec.arch, spec.kind, LATEST_VERSION)
    return (
        f"{text!r} is a TF.js model, which inception-hub does not build for Python (serve-hub serves it; export "
        f"{spec.handle} --format tfjs writes it). In Python: {latest.url} (or /1, /3, /4; Kaggle: "
        f"{kagglehub_handles(latest)[0]}); without TensorFlow: inception-hub export {latest.handle} DIR --format onnx"
    )


def _spec(arch: str, kind: str, version: str) -> ModelSpec | None:
    arch, kind = arch.replace("-", "_").lower(), kind.replace("-", "_").lower()
    if arch not in ARCHITECTURES or kind not in KINDS or not version.isdigit() or int(version) not in VERSIONS:
        return None
    return ModelSpec(arch, kind, int(version))


def resolve_published(handle: str) -> ModelSpec | None:
    """The module a published handle or URL names (not a short name), or None."""
    return _published(handle) if isinstance(handle, str) and handle.strip() else None


def resolve(handle: str) -> ModelSpec:
    """Turn any accepted spelling of a handle into its ModelSpec, or explain what is accepted."""
    if not isinstance(handle, str) or not handle.strip():
        raise UnknownHandleError(f"a model handle must be a non-empty string, got {handle!r}.{_known()}")
    spec = _published(handle)
    if spec is None:
        parts = handle.strip().strip("/").split("/")
        if 1 <= len(parts) <= 3 and not _KAGGLE.match(handle.strip()) and not _TFHUB.match(handle.strip()):
            kind = parts[1] if len(parts) > 1 else "classification"
            spec = _spec(parts[0], kind, parts[2] if len(parts) > 2 else str(LATEST_VERSION))
    if spec is None:
        raise UnknownHandleError(f"unknown model handle {handle!r}.{_known()}")
    return spec


def _known() -> str:
    return (
        " Known handles: google/imagenet/{inception_v1,inception_resnet_v2}/{classification,feature_vector}/"
        "{1,3,4,5} (optionally prefixed with https://tfhub.dev/; feature-vector also works), their .tar.gz "
        "files (https://storage.googleapis.com/tfhub-modules/google/imagenet/inception_v1/classification/5.tar.gz), "
        "their Kaggle Models URLs (https://www.kaggle.com/models/google/inception-v1/TensorFlow2/classification/2) "
        "and kagglehub handles (google/inception-v1/tensorFlow2/classification/2), or the short names inception_v1, "
        "inception_resnet_v2, inception_v1/feature_vector, inception_resnet_v2/feature_vector. "
        "`inception-hub models` lists them all."
    )
