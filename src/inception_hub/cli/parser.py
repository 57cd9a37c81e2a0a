"""The command line's arguments: one parser, one sub-parser per command. Each command is
registered here with its function (`func`) and whether it needs TensorFlow imported up front
(`needs_tf`: True, or a test of the arguments), so `main` need not know the commands."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from .._version import __version__
from ..engine import BACKENDS, FAST, PRECISIONS
from ..metadata import EXPORT_PRECISIONS, FORMATS
from ..outputs import CLASSIFY_FORMATS
from .common import PROG

#: Export formats written without TensorFlow.
LEAN_FORMATS = ("onnx", "openvino", "triton")


def _listed(choices: tuple[str, ...]):
    """One NAME or comma-separated NAMEs, each one of `choices`."""

    def parse(text: str) -> list[str]:
        names = [n for n in text.split(",") if n]
        for n in names:
            if n not in choices:
                raise argparse.ArgumentTypeError(f"{n!r} is not one of {', '.join(choices)}")
        return names

    return parse


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


#: Cosine similarity above which `dedupe` counts two photos as copies of each other (see README).
DEDUPE_THRESHOLD = 0.9


def command(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    """The function `name` of the command module `module`, imported when the command runs: parsing
    a command line imports none of them (`evaluate` and `similar` alone cost 20 ms of a start-up)."""

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(f"{__package__}.{module}"), name)(args)

    run.__name__ = run.__qualname__ = name
    return run


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="TF-Hub Inception modules rebuilt from TF-Slim checkpoints.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    cl = sub.add_parser("classify", help="top-k ImageNet classes for images")
    _images_args(cl, "inception_v1")
    cl.add_argument("--top-k", "-k", type=positive, default=5)
    cl.add_argument("--format", "-f", choices=CLASSIFY_FORMATS, default="table")
    cl.add_argument("--output", "-o", metavar="FOLDER", help="with --engine ray: the Parquet output folder")
    cl.set_defaults(func=command("images", "cmd_classify"))

    e = sub.add_parser("embed", help="feature vectors for images, written to .npy, .npz or .parquet")
    _images_args(e, "inception_v1/feature_vector")
    e.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="PATH",
        help="features.npy | features.npz | .parquet file; with --engine ray, a folder of Parquet partitions",
    )
    e.set_defaults(func=command("images", "cmd_embed"))

    ex = sub.add_parser("explain", help="Grad-CAM: where in each image the network sees a class (PNG per image)")
    ex.add_argument("images", nargs="+", metavar="IMAGES", help="image files, directories (recursive) or globs")
    ex.add_argument("--model", "-m", default="inception_v1", help="a classification handle or short name")
    ex.add_argument("--class", dest="class_", metavar="N|LABEL", help="the class to explain (default: the top one)")
    ex.add_argument(
        "--layer",
        default=None,
        help="end point to take the map at, with Keras (default: the final one, Mixed_5c or Conv2d_7b_1x1, "
        "computed on the engines without Keras)",
    )
    ex.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="where the PNGs go")
    _checkpoint_arg(ex)
    _progress_arg(ex)
    ex.set_defaults(func=command("images", "cmd_explain"))

    m = sub.add_parser(
        "models", help="list the model handles, whether their weights are cached, and the engine each runs on here"
    )
    m.set_defaults(func=command("models", "cmd_models"))

    x = sub.add_parser("export", help="write a handle as a TF-Hub module, or as ONNX, OpenVINO IR or TFLite")
    x.add_argument("model", metavar="HANDLE", help="e.g. google/imagenet/inception_v1/classification/5")
    x.add_argument("outdir", metavar="OUTDIR")
    x.add_argument(
        "--format",
        choices=FORMATS,
        default=None,
        help="default: what tfhub.dev published for the version (saved_model for /4 /5, tf1_hub for /1 /3)",
    )
    x.add_argument(
        "--precision",
        choices=EXPORT_PRECISIONS,
        default="fp32",
        help="int8 (onnx, openvino, tflite, triton): calibrated, smaller and faster, not exact; bf16: openvino; "
        "int8 or fp16 (tfjs): quantized weights",
    )
    x.add_argument("--calibration", metavar="DIR", help="photos to calibrate int8 on (default: a bundled set)")
    _checkpoint_arg(x)
    x.add_argument("--overwrite", action="store_true", help="replace OUTDIR if it exists")
    _progress_arg(x)
    x.set_defaults(func=command("models", "cmd_export"), needs_tf=lambda args: args.format not in LEAN_FORMATS)

    ev = sub.add_parser("evaluate", help="top-1/top-5 accuracy on labelled photos, comparing backends and formats")
    ev.add_argument("data", metavar="DATA", help="a folder per wnid, a folder with a CSV, or files named <wnid>_...")
    ev.add_argument("--model", "-m", default="inception_v1", help="a classification handle, short name or folder")
    ev.add_argument("--csv", metavar="FILE", help="file name and class per row (default: the one CSV in DATA)")
    for flag, choices, help_ in (
        ("--backend", BACKENDS, "backends to compare (default: the fastest exact one)"),
        ("--precision", PRECISIONS, "precisions to compare (default fp32)"),
        ("--format", FORMATS, "exported formats to compare, each run in its own runtime"),
    ):
        ev.add_argument(flag, nargs="+", action="extend", type=_listed(choices), metavar="NAME", help=help_)
    ev.add_argument("--calibration", metavar="DIR", help="photos int8 is calibrated on (default: a bundled set)")
    ev.add_argument("--limit", type=positive, help="evaluate N photos spread evenly over the sorted list")
    ev.add_argument("--batch-size", type=positive, default=32)
    ev.add_argument("--workers", type=positive, default=None, help="image decoding threads")
    ev.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    ev.add_argument("--output", "-o", metavar="FILE", help="also write the JSON report here")
    _checkpoint_arg(ev)
    _progress_arg(ev)
    ev.set_defaults(func=command("evaluate", "cmd_evaluate"))

    ix = sub.add_parser("index", help="embed photos into a nearest-neighbour index (re-runs add only new photos)")
    _images_args(ix, "inception_resnet_v2/feature_vector", nargs="*")
    ix.add_argument("--output", "-o", required=True, metavar="INDEX", help="the index folder (created or grown)")
    ix.add_argument("--overwrite", action="store_true", help="replace an existing index at INDEX instead of growing it")
    ix.add_argument(
        "--embeddings",
        action="append",
        metavar="PATH",
        help="also add the vectors of an `embed` output (.npz, .parquet, .npy, or a Ray job's folder); repeatable",
    )
    ix.set_defaults(func=command("similar", "cmd_index"))

    se = sub.add_parser("search", help="the photos of an index most similar to each query photo")
    se.add_argument("images", nargs="+", metavar="QUERY", help="query photos, directories or globs")
    se.add_argument("--index", required=True, metavar="INDEX", help="a folder written by `index`")
    se.add_argument("--top-k", "-k", type=positive, default=10)
    se.add_argument("--format", "-f", choices=("table", "json", "csv"), default="table")
    se.add_argument("--sheet", metavar="PNG", help="also draw each query and its neighbours with their scores")
    se.add_argument("--batch-size", type=positive, default=32)
    _checkpoint_arg(se)
    _progress_arg(se)
    se.set_defaults(func=command("similar", "cmd_search"))

    dd = sub.add_parser("dedupe", help="groups of near-duplicate photos (re-encoded, resized, cropped copies)")
    _images_args(dd, "inception_resnet_v2/feature_vector")
    dd.add_argument("--threshold", type=float, default=DEDUPE_THRESHOLD, help="cosine similarity that joins two photos")
    dd.add_argument("--output", "-o", metavar="JSON", help="write the groups here (default: print them)")
    dd.add_argument("--sheets", metavar="DIR", help="also draw a contact sheet per group into DIR")
    dd.set_defaults(func=command("similar", "cmd_dedupe"))

    t = sub.add_parser("finetune", help="train a classifier on your photos (one folder per class) and save it")
    t.add_argument("data_dir", metavar="DATA_DIR", help="one subfolder of images per class")
    t.add_argument("--model", "-m", default="inception_v1", help="backbone: inception_v1 or inception_resnet_v2")
    t.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="where to save the trained model")
    # Left unset, the training defaults apply (inception_hub.finetune.train).
    t.add_argument("--epochs", type=positive)
    t.add_argument("--batch-size", type=positive)
    t.add_argument("--learning-rate", type=float, help="the new head's rate; the network, if trained, moves at 1/10")
    t.add_argument("--fine-tune-backbone", action="store_true", help="train the whole network, not just the head")
    t.add_argument(
        "--train-from",
        metavar="END_POINT",
        help="train the network's blocks from this end point up (e.g. Mixed_5b) with the head; the rest stays",
    )
    t.add_argument("--batch-norm-momentum", type=float)
    t.add_argument("--validation-split", type=float)
    t.add_argument("--image-size", type=positive, help="training size (default: the model's)")
    t.add_argument("--patience", type=positive, help="epochs without a better val loss before stopping")
    t.add_argument(
        "--no-recalibrate-bn",
        dest="recalibrate_bn",
        action="store_false",
        help="with --fine-tune-backbone: keep the plain BatchNorm moving averages instead of recomputing them",
    )
    t.add_argument("--seed", type=int)
    _checkpoint_arg(t, "TF-Slim checkpoint for the backbone")
    _progress_arg(t)
    t.set_defaults(func=command("finetune", "cmd_finetune"), needs_tf=True)

    v = sub.add_parser("serve", help="a TensorFlow-Serving-compatible REST and gRPC server with dynamic batching")
    v.add_argument(
        "--models",
        default="inception_v1",
        help="comma-separated handles, short names or exported/fine-tuned folders (default inception_v1)",
    )
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8501, help="REST port (0: any free port)")
    v.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0: any free port, -1: no gRPC)")
    v.add_argument("--max-batch", type=positive, default=32, help="most images per model execution")
    v.add_argument("--batch-timeout-ms", type=float, default=5.0, help="how long a batch waits to fill")
    v.add_argument("--workers", type=positive, default=1, help="model executions running at once")
    v.add_argument("--max-queue", type=positive, default=512, help="images waiting per model before 429")
    v.add_argument("--max-images", type=positive, default=64, help="images per request")
    v.add_argument("--max-body-mb", type=float, default=64.0, help="request body limit")
    v.add_argument("--max-inflight-mb", type=float, default=64.0, help="request bodies in progress at once before 429")
    v.add_argument("--max-pixels", type=positive, default=40_000_000, help="decoded pixels per image")
    v.add_argument("--max-input-pixels", type=positive, default=1 << 20, help="pixels per image sent as a float array")
    v.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take, queueing included")
    v.add_argument("--index", metavar="INDEX", help="an `index` folder: the model page also shows similar photos")
    _arch_checkpoints_arg(v, "weights for ARCH instead of the cached release (repeatable)")
    _backend_args(v, precision=False)
    v.set_defaults(func=command("serving", "cmd_serve"))

    # TF Serving's flags (--model_name=m --port=9000 ...), passed whole to model_server: "+" is
    # its prefix so argparse leaves every "--flag" to it.
    ms = sub.add_parser(
        "model-server",
        prefix_chars="+",
        add_help=False,
        help="the server with TF Serving's command line (tensorflow_model_server's flags)",
    )
    ms.add_argument("flags", nargs="*", help=argparse.SUPPRESS)
    ms.set_defaults(func=command("model_server", "cmd_model_server"))

    h = sub.add_parser("serve-hub", help="serve the modules over HTTP the way tfhub.dev did, for hub.KerasLayer(url)")
    h.add_argument("--port", type=int, default=8008)
    h.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    _arch_checkpoints_arg(h, "build ARCH's modules from this checkpoint instead of the cached release (repeatable)")
    h.add_argument("--quiet", action="store_true", help="do not log requests")
    h.add_argument(
        "--public-url",
        metavar="URL",
        help="the address clients reach the hub at (e.g. behind a proxy), for the links in its pages; "
        "default: the address it listens on",
    )
    h.add_argument(
        "--allow-download",
        action="store_true",
        help="let a request for a module whose weights are not cached download them (default: 503)",
    )
    h.set_defaults(func=command("serving", "cmd_serve_hub"), needs_tf=True)

    ic = sub.add_parser(
        "install-hub-cache",
        help="put the modules into tensorflow_hub's (or kagglehub's) cache under every handle spelling: "
        "unchanged hub code runs offline",
    )
    ic.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="a network name (its 8 modules) or a handle; default: every network whose weights are cached",
    )
    ic.add_argument(
        "--tfhub-cache-dir", metavar="DIR", help="default: $TFHUB_CACHE_DIR, else tensorflow_hub's <temp>/tfhub_modules"
    )
    ic.add_argument(
        "--kagglehub",
        action="store_true",
        help="kagglehub's cache instead, so that kagglehub.model_download("
        "'google/inception-v1/tensorFlow2/classification/2') finds the modules offline",
    )
    ic.add_argument(
        "--kagglehub-cache-dir",
        metavar="DIR",
        help="with --kagglehub; default: $KAGGLEHUB_CACHE, else ~/.cache/kagglehub",
    )
    _arch_checkpoints_arg(ic, "build ARCH's modules from this checkpoint instead of the cached release (repeatable)")
    ic.add_argument("--list", action="store_true", help="show each installed spelling and the module behind it")
    ic.add_argument("--remove", action="store_true", help="take the installed spellings (of MODELs, or all) out again")
    ic.add_argument("--force", action="store_true", help="also replace modules in the cache that came from elsewhere")
    _progress_arg(ic)
    ic.set_defaults(func=command("models", "cmd_install_hub_cache"))  # imports TensorFlow itself, once it builds

    k = sub.add_parser("cache", help="list what the cache holds with sizes; remove or clean it")
    k.add_argument("--remove", metavar="WHAT", help="an architecture's weights, engines, hub, downloads, tmp or all")
    k.add_argument("--clean", action="store_true", help="remove orphans, converted downloads and leftovers")
    k.set_defaults(func=command("models", "cmd_cache"))

    f = sub.add_parser("fetch", help="download a model's weights into the cache, or import them from a file")
    f.add_argument("model", help="model handle or short name")
    f.add_argument("--from", dest="source", metavar="PATH", help="local release .tar.gz, checkpoint file or prefix")
    _progress_arg(f)
    f.set_defaults(func=command("models", "cmd_fetch"))
    return p


def _checkpoint_arg(sp: argparse.ArgumentParser, text: str = "TF-Slim checkpoint file, V2 prefix or release .tar.gz"):
    sp.add_argument("--checkpoint", metavar="PATH", help=text)


def _arch_checkpoints_arg(sp: argparse.ArgumentParser, text: str) -> None:
    sp.add_argument("--checkpoint", action="append", default=[], metavar="ARCH=PATH", help=text)


def _progress_arg(sp: argparse.ArgumentParser) -> None:
    sp.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def _backend_args(sp: argparse.ArgumentParser, precision: bool = True) -> None:
    sp.add_argument(
        "--backend",
        choices=BACKENDS,
        default=None,
        help="inference engine (default: the fastest exact one installed, measured on this CPU at first use; "
        "see `inception-hub models`)",
    )
    if precision:
        sp.add_argument(
            "--precision",
            choices=(*PRECISIONS, FAST),
            default="fp32",
            help="bf16 (OpenVINO) or int8 (either engine): faster, not exact (see README); fast: the faster of "
            "the two that this CPU runs natively, with its measured agreement with fp32",
        )
        sp.add_argument(
            "--calibration",
            metavar="DIR",
            default=None,
            help="photos to calibrate int8 on, once (default: a bundled set)",
        )


def _images_args(sp: argparse.ArgumentParser, default: str, nargs: str = "+") -> None:
    sp.add_argument("images", nargs=nargs, metavar="IMAGES", help="image files, directories (recursive) or globs")
    sp.add_argument("--model", "-m", default=default, help=f"model handle or short name (default {default})")
    _checkpoint_arg(sp)
    sp.add_argument("--batch-size", type=positive, default=32)
    sp.add_argument("--workers", type=positive, default=None, help="image decoding threads")
    _progress_arg(sp)
    _backend_args(sp)
    g = sp.add_argument_group("distributed (--engine ray)")
    g.add_argument(
        "--engine",
        choices=("local", "ray"),
        default="local",
        help="local: this process; ray: a Ray Data job writing partitioned Parquet to --output",
    )
    g.add_argument(
        "--address",
        metavar="ADDR",
        help="Ray cluster to join (auto, HOST:PORT); default: a local one started for the job",
    )
    g.add_argument("--resume", action="store_true", help="finish an interrupted job: skip partitions written")
    g.add_argument("--partition-size", type=positive, default=1000, help="images per Parquet file (default 1000)")
    g.add_argument(
        "--num-workers", type=positive, default=None, help="model actors (default: as many as the cluster's CPUs allow)"
    )
    g.add_argument(
        "--cpus-per-worker",
        type=positive,
        default=None,
        help="CPUs (engine and decoding threads) per model actor (default: 4, or a whole smaller node)",
    )
