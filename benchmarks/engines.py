"""The engines throughput.py times: inception-hub on each backend and precision, "the TF-Hub way"
(the exported SavedModel fed by tf.data), and the peers (torchvision googlenet or timm
inception_resnet_v2 fed by a torch DataLoader, Keras applications' InceptionResNetV2 fed by tf.data).

Each is an `Engine`: how to turn preprocessed arrays into its input, how to run the model, and one or
more ways to classify files end to end. Optional libraries that are missing raise `Skip`.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from common import CACHE, SIZES, Skip, load_module, log, optional

#: TF-Slim's evaluation crop: the central 87.5% of each side.
CENTRAL_FRACTION = 0.875
TOP_K = 5
#: The precisions measured on each backend.
PRECISIONS = {"tf": ("fp32",), "onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
#: Schemas that torchvision's import registers fake kernels for (see import_torchvision).
TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_KEEP: list[Any] = []  # objects that must outlive their creating function (torch.library definitions)


def exported_model(arch: str, checkpoint: Path | None) -> Path:
    """The TF2 SavedModel that inception-hub exports for `arch`, cached per checkpoint file."""
    from inception_hub.export import export

    key = "official" if checkpoint is None else f"{checkpoint.stat().st_size}-{checkpoint.stat().st_mtime_ns}"
    out = CACHE / "savedmodels" / f"{arch}-{key}"
    if not (out / "saved_model.pb").is_file():
        log(f"exporting {arch} to {out}")
        export(f"google/imagenet/{arch}/classification/5", out, checkpoint=checkpoint, overwrite=True, progress=False)
    return out


@dataclass
class Engine:
    """One way to classify images. `prepare` turns NHWC float32 [0, 1] arrays into the engine's own input
    (untimed); `infer` runs the model on it; each `end_to_end` variant classifies files to top-5 and
    returns how many images it classified."""

    name: str
    group: str  # "inception-hub", "tf-hub" or "peer"
    prepare: Callable[[np.ndarray], Any]
    infer: Callable[[Any], Any]
    end_to_end: dict[str, Callable[[list[str]], int]]
    keep: list[Any] = field(default_factory=list)  # the model objects, released with the engine


def project_engine(arch: str, checkpoint: Path | None, backend: str, precision: str) -> Engine:
    from inception_hub import decode_predictions, pipeline

    module = load_module(arch, checkpoint, backend, precision)

    def end_to_end(paths: list[str]) -> int:
        done, rows = 0, []
        for result in pipeline.run(module, paths, batch_size=32):
            if result.output is None:
                raise RuntimeError(f"{result.path}: {result.error}")
            rows.append(result.output)
            if len(rows) == 32:
                done += len(decode_predictions(np.stack(rows), top=TOP_K))
                rows = []
        return done + (len(decode_predictions(np.stack(rows), top=TOP_K)) if rows else 0)

    return Engine(
        f"inception-hub {backend} {precision}",
        "inception-hub",
        prepare=lambda x: x,
        infer=lambda x: module(x, batch_size=len(x)),
        end_to_end={"": end_to_end},
        keep=[module],
    )


def tf_dataset(paths: list[str], size: int, batch: int, minus_one_to_one: bool = False) -> Any:
    """The usual TF-Hub input pipeline: decode, [0, 1] floats, central crop, bilinear resize, batch."""
    import tensorflow as tf

    def load(path: tf.Tensor) -> tf.Tensor:
        image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.central_crop(image, CENTRAL_FRACTION)
        image = tf.image.resize(image, (size, size), method="bilinear")
        return image * 2.0 - 1.0 if minus_one_to_one else image

    dataset = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch).prefetch(tf.data.AUTOTUNE)


def tf_end_to_end(model: Callable[[Any], Any], size: int, minus_one_to_one: bool = False) -> Callable:
    import tensorflow as tf

    def run(paths: list[str]) -> int:
        done = 0
        for images in tf_dataset(paths, size, 32, minus_one_to_one):
            done += tf.math.top_k(model(images), k=TOP_K).indices.numpy().shape[0]
        return done

    return run


def tfhub_engine(arch: str, checkpoint: Path | None) -> Engine:
    import tensorflow as tf

    loaded = tf.saved_model.load(str(exported_model(arch, checkpoint)))
    return Engine(
        "TF-Hub way (SavedModel + tf.data)",
        "tf-hub",
        prepare=tf.constant,
        infer=lambda x: loaded(x).numpy(),
        end_to_end={"": tf_end_to_end(loaded, SIZES[arch])},
        keep=[loaded],
    )


def keras_engine(arch: str) -> Engine:
    if arch != "inception_resnet_v2":
        raise Skip("Keras applications has no Inception V1")
    try:
        import keras
    except ImportError as e:
        raise Skip(f"keras is not importable ({e})") from e
    if keras.backend.backend() != "tensorflow":
        raise Skip(f"keras runs on {keras.backend.backend()}, not tensorflow")
    model = keras.applications.InceptionResNetV2(weights=None)
    return Engine(
        f"Keras {keras.__version__} InceptionResNetV2 + tf.data",
        "peer",
        prepare=lambda x: x * 2.0 - 1.0,  # Keras' preprocess_input for this model: [-1, 1]
        infer=model.predict_on_batch,
        end_to_end={"": tf_end_to_end(model.predict_on_batch, SIZES[arch], minus_one_to_one=True)},
        keep=[model],
    )


def import_torchvision() -> Any:
    """Import torchvision, also from PyPI's wheel, whose compiled ops are built for CUDA torch and do not
    load with the CPU torch. Its models and transforms are pure Python; its import only needs the schemas
    it registers fake kernels for, so define those when the compiled library cannot."""
    try:
        import torch
    except ImportError as e:
        raise Skip(f"torch is not importable ({e}); pip install torch==2.13.0") from e
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        raise Skip("torchvision is not installed; pip install --no-deps torchvision==0.28.0")
    if "torchvision" not in sys.modules:
        library = Path(next(iter(spec.submodule_search_locations))) / "_C.so"
        try:
            torch.ops.load_library(str(library))
        except (OSError, RuntimeError):
            definitions = torch.library.Library("torchvision", "DEF")
            for schema in TORCHVISION_SCHEMAS:
                definitions.define(schema)
            _KEEP.append(definitions)  # the definitions go away with the Library object
    try:
        import torchvision
    except Exception as e:  # a torchvision release that needs more schemas: say which
        raise Skip(f"torchvision does not import ({type(e).__name__}: {e})") from e
    return torchvision


class FileDataset:
    """Map-style dataset of image files decoded by PIL, as torchvision's ImageFolder does."""

    def __init__(self, paths: list[str], transform: Callable[[Any], Any]) -> None:
        self.paths = paths
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> Any:
        from PIL import Image

        with Image.open(self.paths[index]) as image:
            return self.transform(image.convert("RGB"))


def torch_engine(arch: str, loader_workers: list[int], threads: int | None) -> Engine:
    torchvision = import_torchvision()
    import torch
    from torchvision import transforms

    size = SIZES[arch]
    if arch == "inception_v1":
        model = torchvision.models.googlenet(weights=None, init_weights=True)
        name, mean, std = (
            f"torchvision {torchvision.__version__} googlenet",
            (0.485, 0.456, 0.406),
            (0.229, 0.224, 0.225),
        )
    else:
        timm = optional("timm", "pip install --no-deps timm")
        model = timm.create_model("inception_resnet_v2", pretrained=False)
        name, mean, std = f"timm {timm.__version__} inception_resnet_v2", (0.5,) * 3, (0.5,) * 3
    model.eval()
    if threads:
        torch.set_num_threads(threads)
    transform = transforms.Compose(
        [
            transforms.Resize(round(size / CENTRAL_FRACTION)),
            transforms.CenterCrop(size),
            transforms.ToTensor(),
            transforms.Normalize(mean, std),
        ]
    )
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)

    def prepare(x: np.ndarray) -> Any:
        return ((torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))) - mean_t) / std_t).contiguous()

    def infer(x: Any) -> Any:
        with torch.inference_mode():
            return model(x)

    def end_to_end(workers: int) -> Callable[[list[str]], int]:
        def run(paths: list[str]) -> int:
            loader = torch.utils.data.DataLoader(FileDataset(paths, transform), batch_size=32, num_workers=workers)
            done = 0
            with torch.inference_mode():
                for images in loader:
                    done += torch.topk(model(images), TOP_K).indices.shape[0]
            return done

        return run

    variants = {f"num_workers={w}": end_to_end(w) for w in loader_workers}
    return Engine(f"{name} + DataLoader", "peer", prepare, infer, variants, keep=[model])


def engine_builders(arch: str, checkpoint: Path | None, args: argparse.Namespace) -> list[tuple[str, Callable]]:
    """(label, build) for each engine of the run, in the order they are timed; `args.skip` leaves groups out."""
    from inception_hub.engine import available_backends

    builders: list[tuple[str, Callable]] = []
    if "project" not in args.skip:
        for backend in available_backends():
            for precision in PRECISIONS[backend]:
                builders.append(
                    (
                        f"inception-hub {backend} {precision}",
                        lambda b=backend, p=precision: project_engine(arch, checkpoint, b, p),
                    )
                )
    if "tfhub" not in args.skip:
        builders.append(("TF-Hub way", lambda: tfhub_engine(arch, checkpoint)))
    if "peers" not in args.skip:
        builders.append(("torch peer", lambda: torch_engine(arch, args.torch_workers, args.torch_threads)))
        builders.append(("Keras peer", lambda: keras_engine(arch)))
    return builders
