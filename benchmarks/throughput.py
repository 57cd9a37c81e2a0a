"""CPU throughput of inception-hub against "the TF-Hub way" and PyTorch / Keras peers, on the same images.

Everything runs in one process, one engine at a time, on the first N sorted JPEGs of a folder:

1. inception-hub on each installed backend and precision (tf, onnxruntime, openvino fp32, openvino bf16);
2. the TF-Hub way: the exported TF2 SavedModel fed by a tf.data pipeline, top-5 by tf.math.top_k;
3. peers, each optional: torchvision googlenet and timm inception_resnet_v2 fed by a torch DataLoader
   (PIL + torchvision transforms), Keras applications' InceptionResNetV2 fed by the same tf.data pipeline.

For each engine: end-to-end images/s (files in, top-5 out) and model-only images/s at batch 1 and 32
(preprocessed arrays in memory, warmed up, best of --repeat runs). Then single-core decode rates of several
JPEG decoders with their accuracy cost against the exact TF-Slim preprocessing, a measured float32 matmul
peak (fractions of it are printed), and the cold start-up time of `inception-hub classify`. Results go to
JSON, a PNG and a Markdown table. Weights are synthetic checkpoints with the official variable names and
shapes (speed does not depend on the values) unless --official uses the cached official weights.

Optional peers and decoders go into the project venv. Pin torch to the local CPU wheel (any other spec
pulls gigabytes of CUDA) and keep setuptools<81 (tensorflow-hub needs pkg_resources). PyPI's torchvision is
built for CUDA torch; import_torchvision() explains how it still imports:

    pip install torch==2.13.0 "setuptools<81"
    pip install --no-deps torchvision==0.28.0 timm
    pip install torch==2.13.0 "setuptools<81" pyyaml huggingface_hub safetensors \
        matplotlib opencv-python-headless simplejpeg

Run it on a quiet machine: the full run (all 900 images) takes about 40 minutes on the project's 2-core
machine, `--images 300` about 20; the smoke test about 2 minutes once the caches exist.

    python benchmarks/throughput.py
    python benchmarks/throughput.py --models inception_v1 --images 16 --repeat 1 --skip startup   # smoke test
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib.metadata
import importlib.util
import io
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / ".cache"
SHARED = ROOT.parent / "shared"
SIZES = {"inception_v1": 224, "inception_resnet_v2": 299}
#: FLOPs per image at the default size, a multiply-add counted as 2.
FLOPS = {"inception_v1": 3.0e9, "inception_resnet_v2": 26.3e9}
NOMINAL_PEAK_GFLOPS = 467.0  # the figure given for this machine; the measured one is used for fractions
CENTRAL_FRACTION = 0.875
TOP_K = 5
#: Schemas that torchvision's import registers fake kernels for (see import_torchvision).
TORCHVISION_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
#: Packages whose versions the results record.
DISTRIBUTIONS = ("inception-hub", "tensorflow", "onnxruntime", "openvino", "numpy", "pillow", "torch", "torchvision")
DISTRIBUTIONS += ("timm", "keras", "opencv-python-headless", "simplejpeg", "matplotlib")
#: The precisions measured on each backend.
PRECISIONS = {"tf": ("fp32",), "onnxruntime": ("fp32", "int8"), "openvino": ("fp32", "bf16", "int8")}
_KEEP: list[Any] = []  # objects that must outlive their creating function (torch.library definitions)


class Skip(Exception):
    """An optional engine or decoder that cannot run here; the message says why."""


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ timing


def best_rate(step: Callable[[], int], repeat: int, min_time: float, max_calls: int = 10_000) -> dict:
    """images/s of `step` (which returns how many images it did): `repeat` runs, each calling it until
    `min_time` seconds have passed (so fast calls are not timed one by one), at most `max_calls` times."""
    rates = []
    for _ in range(repeat):
        done, start = 0, time.perf_counter()
        for _ in range(max_calls):
            done += step()
            if time.perf_counter() - start >= min_time:
                break
        rates.append(done / (time.perf_counter() - start))
    return {"best": max(rates), "median": float(np.median(rates)), "runs": rates}


@contextlib.contextmanager
def one_core() -> Iterator[int | None]:
    """Pin every thread of this process to one CPU (threads started meanwhile inherit it), so that a decoder
    runs at its single-core rate whatever thread pools its library keeps (TensorFlow's, OpenCV's)."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    saved = os.sched_getaffinity(0)
    core = min(saved)

    def pin(cpus: set[int]) -> None:
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError):  # a thread may end while we walk the list
                os.sched_setaffinity(int(tid), cpus)

    pin({core})
    try:
        yield core
    finally:
        pin(saved)


# ---------------------------------------------------------------------------------------- weights, models


def ensure_checkpoint(arch: str, directory: Path, reference: Path) -> Path:
    """The synthetic TF-Slim checkpoint for `arch` (official names and shapes, seed 0), written once."""
    path = directory / f"{arch}.ckpt"
    if path.is_file():
        return path
    spec = importlib.util.spec_from_file_location("synth_checkpoint", reference / "synth_checkpoint.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot import {reference / 'synth_checkpoint.py'}; pass --reference-dir")
    synth = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(synth)
    log(f"writing synthetic checkpoint {path}")
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{arch}.ckpt.tmp"
    synth.write_checkpoint(synth.synth_weights(arch, 0), str(tmp), "v1")
    os.replace(tmp, path)
    return path


def own_cache() -> None:
    """Keep everything this script caches out of git without touching the repository's .gitignore."""
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / ".gitignore").write_text("*\n")


def exported_model(arch: str, checkpoint: Path | None) -> Path:
    """The TF2 SavedModel that inception-hub exports for `arch`, cached per checkpoint file."""
    from inception_hub.export import export

    key = "official" if checkpoint is None else f"{checkpoint.stat().st_size}-{checkpoint.stat().st_mtime_ns}"
    out = CACHE / "savedmodels" / f"{arch}-{key}"
    if not (out / "saved_model.pb").is_file():
        log(f"exporting {arch} to {out}")
        export(f"google/imagenet/{arch}/classification/5", out, checkpoint=checkpoint, overwrite=True, progress=False)
    return out


def load_module(arch: str, checkpoint: Path | None, backend: str | None, precision: str = "fp32") -> Any:
    import inception_hub

    return inception_hub.load(arch, checkpoint=checkpoint, backend=backend, precision=precision, progress=False)


# ------------------------------------------------------------------------------------------------ engines


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
        try:
            import timm
        except ImportError as e:
            raise Skip(f"timm is not importable ({e}); pip install --no-deps timm") from e
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


# ------------------------------------------------------------------------------------------- measurements


def measure_model_only(engine: Engine, images: np.ndarray, batch: int, repeat: int, min_time: float) -> dict:
    """Model-only images/s on `batch` preprocessed images already in the engine's input format."""
    x = engine.prepare(images[:batch])
    for _ in range(2):  # first calls trace, compile and allocate
        engine.infer(x)
    return best_rate(lambda: (engine.infer(x), batch)[1], repeat, min_time)


def measure_end_to_end(run: Callable[[list[str]], int], paths: list[str], repeat: int) -> dict:
    """Files in, top-5 out: images/s over all `paths`, best of `repeat` passes."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        done = run(paths)
        elapsed = time.perf_counter() - start
        if done != len(paths):
            raise RuntimeError(f"classified {done} of {len(paths)} images")
        rates.append(done / elapsed)
    return {"best": max(rates), "median": float(np.median(rates)), "runs": rates}


def measure_engine(build: Callable[[], Engine], images: np.ndarray, paths: list[str], args: argparse.Namespace) -> dict:
    """Build one engine, time it (model-only b1, b32, then end-to-end), release it."""
    start = time.perf_counter()
    engine = build()
    record: dict[str, Any] = {"name": engine.name, "group": engine.group, "build_s": time.perf_counter() - start}
    for batch in (1, 32):
        record[f"b{batch}"] = measure_model_only(engine, images, batch, args.repeat, args.min_time)
        log(f"  {engine.name}: model-only b{batch} {record[f'b{batch}']['best']:.1f} img/s")
    if len(engine.end_to_end) > 1:
        run = pick_variant(engine, paths[: args.probe_images], record)
    else:
        (variant, run), *_ = engine.end_to_end.items()
        record["name"] += f" ({variant})" if variant else ""
    record["e2e"] = measure_end_to_end(run, paths, args.e2e_repeat)
    log(f"  {record['name']}: end-to-end {record['e2e']['best']:.1f} img/s")
    del engine
    gc.collect()
    return record


def pick_variant(engine: Engine, probe: list[str], record: dict) -> Callable[[list[str]], int]:
    """The fastest end-to-end variant (e.g. DataLoader num_workers) on a few images, so only it makes the
    long pass; the probe rates are kept in `record` and the winner is named in the engine's name."""
    rates = {name: measure_end_to_end(run, probe, 1)["best"] for name, run in engine.end_to_end.items()}
    best = max(rates, key=rates.__getitem__)
    record["e2e_probe"] = {"images": len(probe), "rates": rates, "chosen": best}
    record["name"] = f"{engine.name} ({best})"
    log(f"  {engine.name}: probe on {len(probe)} images {', '.join(f'{k} {v:.1f}' for k, v in rates.items())} img/s")
    return engine.end_to_end[best]


def engine_builders(arch: str, checkpoint: Path | None, args: argparse.Namespace) -> list[tuple[str, Callable]]:
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


def benchmark_model(arch: str, checkpoint: Path | None, paths: list[str], args: argparse.Namespace) -> dict:
    from inception_hub.images import load_image

    size = SIZES[arch]
    log(f"== {arch} at {size}x{size}, {len(paths)} images")
    first = [load_image(p, (size, size)) for p in paths[:32]]
    images = np.stack([first[i % len(first)] for i in range(32)])  # fewer than 32 images: repeat them
    engines, skipped = [], {}
    for label, build in engine_builders(arch, checkpoint, args):
        try:
            engines.append(measure_engine(build, images, paths, args))
        except Skip as e:
            skipped[label] = str(e)
            log(f"  {label}: skipped: {e}")
        except Exception as e:  # a long run should not die on one engine: record what went wrong
            skipped[label] = f"failed: {type(e).__name__}: {e}"
            log(f"  {label}: failed: {type(e).__name__}: {e}")
    add_ratios(engines, FLOPS[arch], args.peak_gflops, arch)
    out = {"image_size": size, "flops_per_image": FLOPS[arch], "engines": engines, "skipped": skipped}
    if any("int8" in e["name"] for e in engines):
        out["int8_agreement"] = int8_agreement(arch, checkpoint, paths)
    return out


def int8_agreement(arch: str, checkpoint: Path | None, paths: list[str]) -> dict:
    """int8 against fp32 on every benchmark image, per engine (footprint.agreement)."""
    from footprint import agreement

    from inception_hub.images import load_image

    size = SIZES[arch]
    x = np.stack([load_image(p, (size, size)) for p in paths])
    out = {}
    for backend in ("onnxruntime", "openvino"):
        exact = load_module(arch, checkpoint, backend)(x, batch_size=32)
        out[backend] = agreement(exact, load_module(arch, checkpoint, backend, "int8")(x, batch_size=32))
        log(f"  int8 on {backend}: {out[backend]}")
    return out


def add_ratios(engines: list[dict], flops: float, peak_gflops: float, arch: str) -> None:
    """Each engine's rate relative to the TF-Hub way, to the best peer and to the default fp32 engine,
    and as a fraction of peak; end-to-end also as a fraction of the engine's own batch-32 model-only rate."""
    from inception_hub.engine import choose_backend

    default = f"inception-hub {choose_backend(None, 'fp32', arch)} fp32"
    for e in engines:
        e["e2e"]["of_own_b32"] = e["e2e"]["best"] / e["b32"]["best"]
    for metric in ("e2e", "b1", "b32"):
        fp32 = next((e[metric]["best"] for e in engines if e["name"].startswith(default)), None)
        for e in engines:
            e[metric]["vs_default_fp32"] = e[metric]["best"] / fp32 if fp32 else None
        hub = next((e[metric]["best"] for e in engines if e["group"] == "tf-hub"), None)
        peers = [e[metric]["best"] for e in engines if e["group"] == "peer"]
        for e in engines:
            rate = e[metric]["best"]
            e[metric]["vs_tfhub"] = rate / hub if hub else None
            e[metric]["vs_best_peer"] = rate / max(peers) if peers else None
            e[metric]["fraction_of_peak"] = rate * flops / (peak_gflops * 1e9) if peak_gflops else None


# -------------------------------------------------------------------------------------------- decoders


def crop_box(height: int, width: int) -> tuple[slice, slice]:
    from inception_hub.images import central_crop_box

    top, left, h, w = central_crop_box(height, width, CENTRAL_FRACTION)
    return slice(top, top + h), slice(left, left + w)


def cv2_resize(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    rows, cols = crop_box(*image.shape[:2])
    small = cv2.resize(image[rows, cols], (size, size), interpolation=cv2.INTER_LINEAR)
    return small.astype(np.float32) * np.float32(1 / 255)


def pil_resize(image: Any, size: int) -> np.ndarray:
    from PIL import Image

    rows, cols = crop_box(image.height, image.width)
    image = image.convert("RGB").crop((cols.start, rows.start, cols.stop, rows.stop))
    return np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) * np.float32(1 / 255)


def reduced_size(size: int) -> int:
    """Smallest decoded side that still leaves `size` pixels after the central crop."""
    return math.ceil(size / CENTRAL_FRACTION)


def decoders() -> dict[str, Callable[[], Callable[[bytes, int], np.ndarray]]]:
    """Name -> factory of `decode(jpeg_bytes, size) -> float32 [size, size, 3] in [0, 1]`, all with the
    same central crop; a factory raises Skip when its library is missing."""

    def exact() -> Callable:
        from inception_hub.images import load_image

        return lambda data, size: load_image(data, (size, size))

    def tf_image() -> Callable:
        import tensorflow as tf

        @tf.function(input_signature=[tf.TensorSpec([], tf.string), tf.TensorSpec([], tf.int32)])
        def run(data: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
            image = tf.image.convert_image_dtype(tf.io.decode_jpeg(data, channels=3), tf.float32)
            return tf.image.resize(tf.image.central_crop(image, CENTRAL_FRACTION), tf.stack([size, size]))

        return lambda data, size: run(data, size).numpy()

    def opencv() -> Callable:
        cv2 = optional("cv2", "pip install opencv-python-headless")
        cv2.setNumThreads(1)
        return lambda data, size: cv2_resize(
            cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB), size
        )

    def pillow(draft: bool) -> Callable:
        from PIL import Image

        def run(data: bytes, size: int) -> np.ndarray:
            with Image.open(io.BytesIO(data)) as image:
                if draft:  # libjpeg scales by 1/2, 1/4 or 1/8 in the IDCT: far less work
                    image.draft("RGB", (reduced_size(size),) * 2)
                return pil_resize(image, size)

        return run

    def simplejpeg(scaled: bool) -> Callable:
        sj = optional("simplejpeg", "pip install simplejpeg")
        optional("cv2", "pip install opencv-python-headless")
        extra = (lambda size: {"min_height": reduced_size(size), "min_width": reduced_size(size)}) if scaled else None

        def run(data: bytes, size: int) -> np.ndarray:
            return cv2_resize(sj.decode_jpeg(data, colorspace="RGB", **(extra(size) if extra else {})), size)

        return run

    return {
        "inception-hub exact (TF decode + TF1 resize)": exact,
        "tf.io.decode_jpeg + tf.image.resize": tf_image,
        "OpenCV imdecode + INTER_LINEAR": opencv,
        "Pillow decode + BILINEAR": lambda: pillow(False),
        "Pillow draft (DCT-scaled) + BILINEAR": lambda: pillow(True),
        "simplejpeg (libjpeg-turbo) + cv2": lambda: simplejpeg(False),
        "simplejpeg DCT-scaled + cv2": lambda: simplejpeg(True),
    }


def optional(module: str, install: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise Skip(f"{module} is not importable ({e}); {install}") from e


def decode_rate(decode: Callable[[bytes, int], np.ndarray], blobs: list[bytes], size: int, repeat: int) -> dict:
    """Single-core images/s over all `blobs` (already in memory: file reading is not timed)."""
    decode(blobs[0], size)  # imports, tracing
    with one_core() as core:
        rate = best_rate(lambda: sum(decode(b, size) is not None for b in blobs), repeat, 0.0, max_calls=1)
    return {**rate, "core": core}


def decode_accuracy(
    decode: Callable[[bytes, int], np.ndarray], blobs: list[bytes], size: int, reference: dict[str, Any]
) -> dict:
    """Pixel error against the exact preprocessing and, with a model, top-1 agreement of its logits."""
    exact, module, exact_top1 = reference["decode"], reference.get("module"), reference.get("top1")
    worst, means, top1 = 0.0, [], []
    for start in range(0, len(blobs), 32):
        chunk = blobs[start : start + 32]
        ours = np.stack([decode(b, size) for b in chunk])
        diff = np.abs(ours - np.stack([exact(b, size) for b in chunk])) * 255
        worst, means = max(worst, float(diff.max())), [*means, float(diff.mean())]
        if module is not None:
            top1.append(np.argmax(module(np.clip(ours, 0.0, 1.0)), axis=1))
    out = {"max_abs_diff_x255": worst, "mean_abs_diff_x255": float(np.mean(means))}
    if module is not None:
        out["top1_agreement"] = float(np.mean(np.concatenate(top1) == exact_top1))
    return out


def benchmark_decoders(
    sizes: dict[str, int], paths: list[str], v1_checkpoint: Path | None, args: argparse.Namespace
) -> dict:
    """Decode rates and accuracy costs at each model's input size; top-1 agreement with inception_v1's
    logits (at 224) when inception_v1 is among the models."""
    blobs = [Path(p).read_bytes() for p in paths]
    factories = decoders()
    exact = factories["inception-hub exact (TF decode + TF1 resize)"]()
    results: dict[str, Any] = {}
    for arch, size in sizes.items():
        reference: dict[str, Any] = {"decode": exact}
        if arch == "inception_v1":
            module = load_module(arch, v1_checkpoint, None)  # the fastest exact backend installed
            reference["module"] = module
            reference["top1"] = np.concatenate(
                [
                    np.argmax(module(np.stack([exact(b, size) for b in blobs[i : i + 32]])), 1)
                    for i in range(0, len(blobs), 32)
                ]
            )
            reference["backend"] = module.backend
        rows, skipped = [], {}
        log(f"== decoders at {size}x{size}")
        for name, factory in factories.items():
            try:
                decode = factory()
            except Skip as e:
                skipped[name] = str(e)
                log(f"  {name}: skipped: {e}")
                continue
            row = {"name": name, "per_core": decode_rate(decode, blobs, size, args.repeat)}
            row.update(decode_accuracy(decode, blobs, size, reference))
            rows.append(row)
            agreement = f", top-1 agreement {row['top1_agreement']:.3f}" if "top1_agreement" in row else ""
            rate, worst = row["per_core"]["best"], row["max_abs_diff_x255"]
            log(f"  {name}: {rate:.0f} img/s/core, max diff {worst:.1f}/255{agreement}")
        results[str(size)] = {"rows": rows, "skipped": skipped, "agreement_backend": reference.get("backend")}
    return results


# ------------------------------------------------------------------------------------------ peak, startup


def measure_peak(n: int, repeat: int) -> dict:
    """The best of the engines' own float32 kernels (footprint.measure_peak)."""
    from footprint import measure_peak as peak

    out = peak(n, repeat)
    out["nominal_gflops"] = NOMINAL_PEAK_GFLOPS
    kernels = ", ".join(f"{k.removesuffix('_gflops')} {v:.0f}" for k, v in out.items() if k.endswith("_gflops"))
    log(f"== peak: {kernels} GFLOP/s float32")
    return out


def measure_startup(image: str, checkpoint: Path | None, repeat: int) -> list[dict]:
    """Cold `inception-hub classify` per backend and precision (footprint.measure_startup)."""
    from footprint import measure_startup as startup

    from inception_hub.engine import available_backends

    log("== start-up of `inception-hub classify`")
    variants = [(b, p) for b in available_backends() for p in PRECISIONS[b]]
    rows = startup(image, checkpoint, repeat, variants)
    for r in rows:
        log(f"  {r['backend']} {r['precision']}: {r.get('best_s', float('nan')):.2f} s "
            f"{r.get('peak_rss_mib', float('nan')):.0f} MiB {r.get('error', '')}")  # fmt: skip
    return rows


# ------------------------------------------------------------------------------------------------ output


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(results: dict) -> str:
    peak = results["peak"]
    lines = [
        f"Images/s on {results['machine']['cpu']} ({results['machine']['cpus']} CPUs), "
        f"{results['config']['images']} images; best of {results['config']['repeat']} (model-only) / "
        f"{results['config']['e2e_repeat']} (end-to-end). Peak = the best float32 kernel measured "
        f"({peak['best_kernel']}, {peak['measured_gflops']:.0f} GFLOP/s; numpy's matmul "
        f"{peak['numpy_matmul_gflops']:.0f}); bf16 and int8 can exceed it. "
        f"FLOPs/image: inception_v1 3.0 G, inception_resnet_v2 26.3 G. Weights: {results['config']['weights']}. "
        "×fp32: against inception-hub's default fp32 engine; own b32: end-to-end as a share of the same "
        "engine's batch-32 model-only rate.",
        "",
        "| model | engine | end-to-end img/s | ×TF-Hub | ×fp32 | % own b32 | ×best peer | % peak | b1 img/s "
        "| b32 img/s | b32 ×TF-Hub | b32 ×fp32 | b32 ×best peer | b32 % peak |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for arch, model in results["models"].items():
        for e in model["engines"]:
            e2e, b1, b32 = e["e2e"], e["b1"], e["b32"]
            lines.append(
                f"| {arch} | {e['name']} | {e2e['best']:.1f} | {fmt(e2e['vs_tfhub'], '.2f')} "
                f"| {fmt(e2e.get('vs_default_fp32'), '.2f')} | {fmt(pct(e2e.get('of_own_b32')), '.0f')} "
                f"| {fmt(e2e['vs_best_peer'], '.2f')} | {fmt(pct(e2e['fraction_of_peak']))} | {b1['best']:.1f} "
                f"| {b32['best']:.1f} | {fmt(b32['vs_tfhub'], '.2f')} | {fmt(b32.get('vs_default_fp32'), '.2f')} "
                f"| {fmt(b32['vs_best_peer'], '.2f')} | {fmt(pct(b32['fraction_of_peak']))} |"
            )
        lines += [f"| {arch} | {name}: skipped ({why}) |" + " |" * 12 for name, why in model["skipped"].items()]
    agreements = [(arch, m["int8_agreement"]) for arch, m in results["models"].items() if "int8_agreement" in m]
    if agreements:
        lines += [
            "",
            f"int8 against fp32 on the same engine, {results['config']['weights']} weights (synthetic weights give "
            "flat logits, so these are lower bounds of what the official weights give)",
            "",
            "| model | engine | images | top-1 agreement | int8 top-1 in fp32 top-5 | max abs logit diff |",
            "|---|---|--:|--:|--:|--:|",
        ]
        for arch, block in agreements:
            lines += [
                f"| {arch} | {backend} | {a['images']} | {a['top1_agreement']:.3f} | {a['top1_in_fp32_top5']:.3f} "
                f"| {a['max_abs_logit_diff']:.2f} |"
                for backend, a in block.items()
            ]
    for size, block in results.get("decoders", {}).items():
        lines += [
            "",
            f"Decoding + central crop + resize to {size}x{size}, one core (images/s), error vs the exact "
            "preprocessing"
            + (
                f" (top-1 agreement: inception_v1 on {block['agreement_backend']}, {results['config']['weights']} "
                "weights)"
                if block["agreement_backend"]
                else ""
            ),
            "",
            "| decoder | img/s/core | max abs diff (×255) | mean abs diff (×255) | top-1 agreement |",
            "|---|--:|--:|--:|--:|",
        ]
        for r in block["rows"]:
            lines.append(
                f"| {r['name']} | {r['per_core']['best']:.0f} | {r['max_abs_diff_x255']:.1f} "
                f"| {r['mean_abs_diff_x255']:.2f} | {fmt(r.get('top1_agreement'), '.3f')} |"
            )
        lines += [f"| {name}: skipped ({why}) | | | | |" for name, why in block["skipped"].items()]
    if results.get("startup"):
        lines += ["", "Start-up: `inception-hub classify` one image, fresh process, caches warm (inception_v1)", ""]
        lines += ["| backend | precision | seconds | peak RSS MiB |", "|---|---|--:|--:|"]
        lines += [
            f"| {r['backend']} | {r['precision']} | "
            + (f"{r['best_s']:.2f} | {r['peak_rss_mib']:.0f} |" if "error" not in r else f"{r['error']} | |")
            for r in results["startup"]
        ]
    if results.get("install"):
        i = results["install"]
        largest = ", ".join(f"{k} {v:.0f}" for k, v in i["largest_mb"].items())
        lines += ["", f"Install: `pip install inception-hub` (the core) adds {i['site_packages_mb']:.0f} MB of "
                  f"site-packages to a fresh venv; largest (MB): {largest}."]  # fmt: skip
    return "\n".join(lines)


def pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def plot(results: dict, path: Path) -> None:
    """One panel per model: horizontal bars of end-to-end and model-only batch-32 images/s per engine."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install matplotlib): no plot")
        return
    models = {k: v for k, v in results["models"].items() if v["engines"]}
    if not models:
        return
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 1.2 + 0.75 * sum(len(m["engines"]) for m in models.values())))
    for ax, (arch, model) in zip(np.atleast_1d(axes), models.items(), strict=True):
        names = [e["name"] for e in model["engines"]]
        y = np.arange(len(names))
        for offset, metric, label in (
            (-0.2, "e2e", "end-to-end (files → top-5)"),
            (0.2, "b32", "model only, batch 32"),
        ):
            bars = ax.barh(y + offset, [e[metric]["best"] for e in model["engines"]], 0.4, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{arch} ({model['image_size']}×{model['image_size']})")
        ax.set_xlabel("images / s")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{results['machine']['cpu']}, {results['machine']['cpus']} CPUs", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    log(f"wrote {path}")


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        text = Path("/proc/cpuinfo").read_text()
        cpu = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
    versions = {}
    for dist in DISTRIBUTIONS:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[dist] = importlib.metadata.version(dist)
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu, "cpus": cpus, "python": platform.python_version(), "versions": versions}


# -------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="inception_v1,inception_resnet_v2", help="comma-separated")
    p.add_argument("--image-dir", type=Path, default=SHARED / "images" / "imagenet-sample")
    p.add_argument("--images", type=int, default=None, help="the first N sorted images (default: all)")
    p.add_argument("--repeat", type=int, default=3, help="model-only, decode and start-up runs (best is reported)")
    p.add_argument("--e2e-repeat", type=int, default=1, help="end-to-end passes over all images")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per model-only run")
    p.add_argument("--checkpoint-dir", type=Path, default=CACHE / "checkpoints", help="synthetic checkpoints")
    p.add_argument("--reference-dir", type=Path, default=SHARED / "reference", help="has synth_checkpoint.py")
    p.add_argument("--official", action="store_true", help="use the cached official weights, no checkpoint")
    p.add_argument("--torch-workers", default="0,2", help="DataLoader num_workers to try; the best one is reported")
    p.add_argument("--probe-images", type=int, default=64, help="images to pick the faster DataLoader setting on")
    p.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--peak-size", type=int, default=4096, help="matmul size for the measured peak")
    p.add_argument(
        "--skip", default="", help="comma-separated sections to leave out: project,tfhub,peers,decoders,startup,install"
    )
    p.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.json")
    p.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "results" / "throughput.png")
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in SIZES]:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(SIZES)}")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.torch_workers = [int(w) for w in args.torch_workers.split(",")]
    return args


def config(args: argparse.Namespace, images: int) -> dict:
    out = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    return {**out, "skip": sorted(args.skip), "images": images, "weights": "official" if args.official else "synthetic"}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("INCEPTION_HUB_OFFLINE", "1")  # never download weights: --official uses the cache
    from inception_hub.quiet import import_tensorflow

    import_tensorflow()  # first, so that its start-up chatter is silenced
    from inception_hub.pipeline import find_images

    paths = sorted(find_images([args.image_dir])[0])[: args.images]
    if not paths:
        raise SystemExit(f"no images in {args.image_dir}")
    own_cache()
    if args.official:
        from inception_hub.weights import cached_path

        if missing := [arch for arch in args.models if not cached_path(arch).is_file()]:
            raise SystemExit(f"--official: no cached weights for {missing}; `inception-hub fetch MODEL --from TARBALL`")
    checkpoints = {
        arch: None if args.official else ensure_checkpoint(arch, args.checkpoint_dir, args.reference_dir)
        for arch in args.models
    }
    results: dict[str, Any] = {
        "machine": machine_info(),
        "config": config(args, len(paths)),
        "load_average_start": os.getloadavg(),
    }
    if results["load_average_start"][0] > 0.5:
        log(f"warning: load average {results['load_average_start'][0]:.2f}: other work will skew the numbers")
    results["peak"] = measure_peak(args.peak_size, args.repeat)
    args.peak_gflops = results["peak"]["measured_gflops"]
    results["models"] = {arch: benchmark_model(arch, checkpoints[arch], paths, args) for arch in args.models}
    if "decoders" not in args.skip:
        sizes = {arch: SIZES[arch] for arch in args.models}
        results["decoders"] = benchmark_decoders(sizes, paths, checkpoints.get("inception_v1"), args)
    if "startup" not in args.skip and "inception_v1" in args.models:
        results["startup"] = measure_startup(paths[0], checkpoints["inception_v1"], args.repeat)
    if "install" not in args.skip:
        from footprint import measure_install

        log("== lean install")
        results["install"] = measure_install()
    results["load_average_end"] = os.getloadavg()
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    log(f"wrote {args.json}")
    plot(results, args.plot)
    print(markdown(results))


if __name__ == "__main__":
    main()
