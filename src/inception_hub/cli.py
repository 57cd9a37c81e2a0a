"""`inception-hub`: classify and embed images, list models, fetch weights.

Exit status: 0 on success, 1 when some images could not be read (the others are still
processed and written), 2 for a usage, model or weights error.
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_file
from .catalog import all_specs, resolve
from .errors import InceptionHubError

PROG = "inception-hub"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    if args.func in (cmd_classify, cmd_embed, cmd_fetch, cmd_export, cmd_serve_hub, cmd_finetune, cmd_serve):
        from .quiet import import_tensorflow

        import_tensorflow()  # TensorFlow's start-up banners are not for CLI users
    try:
        return args.func(args)
    except InceptionHubError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="TF-Hub Inception modules rebuilt from TF-Slim checkpoints.")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = p.add_subparsers(metavar="COMMAND")

    def model_args(sp: argparse.ArgumentParser, default: str) -> None:
        sp.add_argument("images", nargs="+", metavar="IMAGES", help="image files, directories (recursive) or globs")
        sp.add_argument("--model", "-m", default=default, help=f"model handle or short name (default {default})")
        sp.add_argument("--checkpoint", metavar="PATH", help="TF-Slim checkpoint file, V2 prefix or release .tar.gz")
        sp.add_argument("--batch-size", type=_positive, default=32)
        sp.add_argument("--workers", type=_positive, default=None, help="image decoding threads")
        sp.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
        backend_args(sp)
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
        g.add_argument("--partition-size", type=_positive, default=1000, help="images per Parquet file (default 1000)")
        g.add_argument(
            "--num-workers",
            type=_positive,
            default=None,
            help="model actors (default: as many as the cluster's CPUs allow)",
        )
        g.add_argument(
            "--cpus-per-worker",
            type=_positive,
            default=None,
            help="CPUs (engine and decoding threads) per model actor (default: 4, or a whole smaller node)",
        )

    def backend_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--backend",
            choices=("tf", "onnxruntime", "openvino"),
            default=None,
            help="inference engine (default: the fastest exact one installed)",
        )
        sp.add_argument(
            "--precision",
            choices=("fp32", "bf16"),
            default="fp32",
            help="bf16: faster on OpenVINO, not exact (see README)",
        )

    c = sub.add_parser("classify", help="top-k ImageNet classes for images")
    model_args(c, "inception_v1")
    c.add_argument("--top-k", "-k", type=_positive, default=5)
    c.add_argument("--format", "-f", choices=("table", "json", "csv"), default="table")
    c.add_argument("--output", "-o", metavar="FOLDER", help="with --engine ray: the Parquet output folder")
    c.set_defaults(func=cmd_classify)

    e = sub.add_parser("embed", help="feature vectors for images, written to .npy, .npz or .parquet")
    model_args(e, "inception_v1/feature_vector")
    e.add_argument(
        "--output",
        "-o",
        required=True,
        metavar="PATH",
        help="features.npy | features.npz | .parquet file; with --engine ray, a folder of Parquet partitions",
    )
    e.set_defaults(func=cmd_embed)

    m = sub.add_parser("models", help="list the model handles and whether their weights are cached")
    m.set_defaults(func=cmd_models)

    x = sub.add_parser("export", help="write a handle as a TF-Hub module (TF2 SavedModel for /4 /5, TF1 Hub for /1 /3)")
    x.add_argument("model", metavar="HANDLE", help="e.g. google/imagenet/inception_v1/classification/5")
    x.add_argument("outdir", metavar="OUTDIR")
    x.add_argument("--checkpoint", metavar="PATH", help="TF-Slim checkpoint file, V2 prefix or release .tar.gz")
    x.add_argument("--overwrite", action="store_true", help="replace OUTDIR if it exists")
    x.add_argument("--no-progress", dest="progress", action="store_false")
    x.set_defaults(func=cmd_export)

    t = sub.add_parser("finetune", help="train a classifier on your photos (one folder per class) and save it")
    t.add_argument("data_dir", metavar="DATA_DIR", help="one subfolder of images per class")
    t.add_argument("--model", "-m", default="inception_v1", help="backbone: inception_v1 or inception_resnet_v2")
    t.add_argument("--output", "-o", required=True, metavar="OUTDIR", help="where to save the trained model")
    t.add_argument("--epochs", type=_positive, default=10)
    t.add_argument("--batch-size", type=_positive, default=16)
    t.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="head rate (default 0.01); the network, if trained, moves at 1/10",
    )
    t.add_argument("--fine-tune-backbone", action="store_true", help="train the whole network, not just the head")
    t.add_argument("--batch-norm-momentum", type=float, default=0.997)
    t.add_argument("--validation-split", type=float, default=0.2)
    t.add_argument("--image-size", type=_positive, default=None, help="training size (default: the model's)")
    t.add_argument("--patience", type=_positive, default=3, help="epochs without a better val loss before stopping")
    t.add_argument(
        "--no-recalibrate-bn",
        dest="recalibrate_bn",
        action="store_false",
        help="with --fine-tune-backbone: keep the plain BatchNorm moving averages instead of recomputing them",
    )
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--checkpoint", metavar="PATH", help="TF-Slim checkpoint for the backbone")
    t.add_argument("--no-progress", dest="progress", action="store_false")
    t.set_defaults(func=cmd_finetune)

    v = sub.add_parser("serve", help="a TensorFlow-Serving-compatible REST and gRPC server with dynamic batching")
    v.add_argument(
        "--models",
        default="inception_v1",
        help="comma-separated handles, short names or exported/fine-tuned folders (default inception_v1)",
    )
    v.add_argument("--host", default="127.0.0.1")
    v.add_argument("--port", type=int, default=8501, help="REST port (0: any free port)")
    v.add_argument("--grpc-port", type=int, default=8500, help="gRPC port (0: any free port, -1: no gRPC)")
    v.add_argument("--max-batch", type=_positive, default=32, help="most images per model execution")
    v.add_argument("--batch-timeout-ms", type=float, default=5.0, help="how long a batch waits to fill")
    v.add_argument("--workers", type=_positive, default=1, help="model executions running at once")
    v.add_argument("--max-queue", type=_positive, default=512, help="images waiting per model before 429")
    v.add_argument("--max-images", type=_positive, default=64, help="images per request")
    v.add_argument("--max-body-mb", type=float, default=64.0, help="request body limit")
    v.add_argument("--max-pixels", type=_positive, default=40_000_000, help="decoded pixels per image")
    v.add_argument("--timeout", type=float, default=30.0, help="seconds a request may take, queueing included")
    v.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="weights for ARCH instead of the cached release (repeatable)",
    )
    v.add_argument(
        "--backend",
        choices=("tf", "onnxruntime", "openvino"),
        default=None,
        help="inference engine for handles (default: the fastest exact one installed)",
    )
    v.set_defaults(func=cmd_serve)

    h = sub.add_parser("serve-hub", help="serve the modules over HTTP the way tfhub.dev did, for hub.KerasLayer(url)")
    h.add_argument("--port", type=int, default=8008)
    h.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    h.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="ARCH=PATH",
        help="build ARCH's modules from this checkpoint instead of the cached release (repeatable)",
    )
    h.add_argument("--quiet", action="store_true", help="do not log requests")
    h.set_defaults(func=cmd_serve_hub)

    f = sub.add_parser("fetch", help="download a model's weights into the cache, or import them from a file")
    f.add_argument("model", help="model handle or short name")
    f.add_argument("--from", dest="source", metavar="PATH", help="local release .tar.gz, checkpoint file or prefix")
    f.add_argument("--no-progress", dest="progress", action="store_false")
    f.set_defaults(func=cmd_fetch)
    return p


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


# classify / embed ------------------------------------------------------------------------------


def _results(args: argparse.Namespace, kind: str | None) -> Iterator:
    """Load the model, find the images, and yield pipeline results with a progress bar."""
    from tqdm.auto import tqdm

    from . import pipeline
    from .module import is_saved_model, load

    if kind is None and not is_saved_model(args.model) and resolve(args.model).kind != "classification":
        raise InceptionHubError(f"{args.model} outputs feature vectors; use `{PROG} embed`, or a classification model")
    paths, unmatched = pipeline.find_images(args.images)
    for item in unmatched:
        print(f"{PROG}: no images found at {item}", file=sys.stderr)
    args.failures = len(unmatched)
    args.inputs = len(paths) + len(unmatched)
    if not paths:
        raise InceptionHubError("no images to process" + (f": {', '.join(unmatched)}" if unmatched else ""))
    module = load(
        args.model, args.checkpoint, kind=kind, backend=args.backend, precision=args.precision, progress=args.progress
    )
    if kind is None and not module.labels:
        raise InceptionHubError(f"{module.handle} outputs feature vectors; use `{PROG} embed`")
    args.module = module
    bar = tqdm(total=len(paths), unit="img", disable=not args.progress or None, file=sys.stderr, leave=False)
    with bar:
        for r in pipeline.run(module, paths, batch_size=args.batch_size, workers=args.workers):
            bar.update(1)
            if r.error is not None:
                args.failures += 1
                bar.write(f"{PROG}: cannot read {r.path}: {r.error}", file=sys.stderr)
            yield r


def _finish(args: argparse.Namespace) -> int:
    if args.failures:
        print(f"{PROG}: {args.failures} of {args.inputs} inputs could not be read", file=sys.stderr)
        return 1
    return 0


def _check_engine(args: argparse.Namespace) -> None:
    if args.engine == "ray":
        if args.output is None:
            raise InceptionHubError("--engine ray writes partitioned Parquet: give an output folder with --output")
        if Path(args.output).suffix.lower() in (".npy", ".npz"):
            raise InceptionHubError(f"--engine ray writes a folder of Parquet partitions, not {args.output}")
        return
    used = [flag for flag, on in (("--address", args.address), ("--resume", args.resume)) if on]
    if used:
        raise InceptionHubError(f"{' and '.join(used)} apply to --engine ray")


def _run_ray(args: argparse.Namespace, task: str) -> int:
    """The Ray Data job: partitioned Parquet in --output, resumable."""
    from . import pipeline
    from .distributed import run_job

    paths, unmatched = pipeline.find_images(args.images)
    for item in unmatched:
        print(f"{PROG}: no images found at {item}", file=sys.stderr)
    if not paths:
        raise InceptionHubError("no images to process" + (f": {', '.join(unmatched)}" if unmatched else ""))

    def on_error(path: str, reason: str) -> None:
        print(f"{PROG}: cannot read {path}: {reason}", file=sys.stderr)

    # SIGTERM unwinds like Ctrl-C, so a local cluster is shut down rather than left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    s = run_job(
        task,
        paths,
        args.output,
        args.model,
        checkpoint=args.checkpoint,
        top_k=getattr(args, "top_k", 5),
        resume=args.resume,
        partition_size=args.partition_size,
        on_error=on_error,
        progress=args.progress,
        address=args.address,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cpus_per_worker=args.cpus_per_worker,
        backend=args.backend,
        precision=args.precision,
    )
    done = f" ({s.skipped} were already there)" if s.skipped else ""
    rate = f" in {s.seconds:.1f}s, {s.images_per_second:.1f} images/s" if s.written else ""
    print(
        f"wrote {s.written} of {s.partitions} partitions{done} to {s.output}{rate}; "
        f"{s.images} images, {s.errors} could not be read",
        file=sys.stderr,
    )
    args.failures, args.inputs = s.errors + len(unmatched), len(paths) + len(unmatched)
    return _finish(args)


def cmd_classify(args: argparse.Namespace) -> int:
    from .labels import decode_predictions

    _check_engine(args)
    if args.engine == "ray":
        return _run_ray(args, "classify")
    if args.output is not None:
        raise InceptionHubError("classify --output is for --engine ray; locally, choose --format and redirect stdout")

    out = sys.stdout
    writer = csv.writer(out) if args.format == "csv" else None
    if writer:
        writer.writerow(["path", "rank", "index", "label", "score"])
    elif args.format == "json":
        out.write("[")
    for i, r in enumerate(_results(args, None)):
        preds = decode_predictions(r.output, top=args.top_k, labels=args.module.labels)[0] if r.error is None else []
        if args.format == "json":
            row = (
                {"path": r.path, "error": r.error}
                if r.error
                else {"path": r.path, "predictions": [p._asdict() for p in preds]}
            )
            out.write(("\n " if i == 0 else ",\n ") + json.dumps(row))
        elif writer:
            for rank, p in enumerate(preds, 1):
                writer.writerow([r.path, rank, p.index, p.label, f"{p.score:.6f}"])
        elif preds:
            out.write(f"{r.path}\n")
            for rank, p in enumerate(preds, 1):
                out.write(f"  {rank}. {p.label:<30} {p.score:8.4f}  (class {p.index})\n")
        out.flush()
    if args.format == "json":
        out.write("\n]\n")
    return _finish(args)


def cmd_embed(args: argparse.Namespace) -> int:
    _check_engine(args)
    if args.engine == "ray":
        return _run_ray(args, "embed")
    output = Path(args.output)
    suffix = output.suffix.lower()
    if suffix not in (".npy", ".npz", ".parquet"):
        raise InceptionHubError(f"unsupported output {output}: use a .npy, .npz or .parquet file name")
    paths, rows = [], []
    for r in _results(args, "feature_vector"):  # a classifier's own pooled features
        if r.error is None:
            paths.append(r.path)
            rows.append(r.output)
    features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, args.module.output_dim), np.float32)
    write_features(output, paths, features)
    print(f"wrote {len(paths)} feature vectors of {features.shape[1]} floats to {output}", file=sys.stderr)
    return _finish(args)


def write_features(output: Path, paths: list[str], features: np.ndarray) -> None:
    """Write atomically. `.npy` holds the matrix and `<name>.paths.txt` beside it the row paths;
    `.npz` holds arrays `paths` and `features`; `.parquet` has columns `path` and `features`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    suffix = output.suffix.lower()
    if suffix == ".npy":
        with atomic_file(output) as f:
            np.save(f, features)
        with atomic_file(output.with_suffix(".paths.txt")) as f:
            f.write("".join(p + "\n" for p in paths).encode())
    elif suffix == ".npz":
        with atomic_file(output) as f:
            np.savez(f, paths=np.array(paths, dtype=str), features=features)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        dim = features.shape[1]
        column = pa.FixedSizeListArray.from_arrays(pa.array(features.reshape(-1), pa.float32()), dim)
        table = pa.table({"path": pa.array(paths, pa.string()), "features": column})
        with atomic_file(output) as f:
            pq.write_table(table, f)


# models / fetch --------------------------------------------------------------------------------


def cmd_models(args: argparse.Namespace) -> int:
    from .weights import cached_path, is_cached

    rows = [("HANDLE", "INPUT", "OUTPUT", "FORMAT", "WEIGHTS")]
    for s in all_specs():
        h, w = s.image_size
        size = f"{h}x{w}" + ("+" if s.variable_size else "")
        output = f"{s.output_dim} {'logits' if s.num_classes else 'features'}"
        rows.append((s.handle, size, output, s.hub_format, "cached" if is_cached(s.arch) else "not cached"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\nShort names: inception_v1, inception_resnet_v2 (classification/5), and <name>/feature_vector.")
    print("INPUT '+' = any size accepted. Weights cache: " + str(cached_path("inception_v1").parents[1]))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from .export import export

    spec = resolve(args.model)
    out = export(spec, args.outdir, args.checkpoint, overwrite=args.overwrite, progress=args.progress)
    kind = "TF1 Hub module" if spec.hub_format == "tf1_hub" else "TF2 SavedModel"
    print(f"exported {spec.handle} as a {kind} to {out}")
    return 0


def cmd_finetune(args: argparse.Namespace) -> int:
    from .finetune import train

    result = train(
        args.data_dir,
        args.model,
        args.output,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        fine_tune_backbone=args.fine_tune_backbone,
        batch_norm_momentum=args.batch_norm_momentum,
        validation_split=args.validation_split,
        image_size=args.image_size,
        checkpoint=args.checkpoint,
        patience=args.patience,
        seed=args.seed,
        progress=args.progress,
    )
    best = result.history["val_accuracy"][result.best_epoch - 1] if result.history["loss"] else float("nan")
    print(
        f"saved {len(result.classes)}-class model to {args.output} (val_accuracy {best:.3f}); "
        f"try: {PROG} classify IMAGES --model {args.output}"
    )
    return 0


def _arch_checkpoints(items: list[str]) -> dict[str, str]:
    checkpoints = {}
    for item in items:
        arch, sep, path = item.partition("=")
        if not sep or not path:
            raise InceptionHubError(f"--checkpoint takes ARCH=PATH, e.g. inception_v1=/data/v1.ckpt: {item!r}")
        checkpoints[resolve(arch).arch] = path
    return checkpoints


def cmd_serve(args: argparse.Namespace) -> int:
    from .serve import Limits, serve

    limits = Limits(
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        timeout_s=args.timeout,
        max_queue=args.max_queue,
    )
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    serve(
        models,
        host=args.host,
        port=args.port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
        workers=args.workers,
        limits=limits,
        checkpoints=_arch_checkpoints(args.checkpoint),
    )
    return 0


def cmd_serve_hub(args: argparse.Namespace) -> int:
    from .hub_server import ModuleStore, make_server

    checkpoints = _arch_checkpoints(args.checkpoint)
    server = make_server(args.host, args.port, ModuleStore(checkpoints), quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"serving modules on http://{host}:{port}/ (e.g. http://{host}:{port}/{all_specs()[0].handle})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .weights import fetch

    spec = resolve(args.model)
    path = fetch(spec.arch, args.source, progress=args.progress)
    print(f"{spec.arch} weights ready at {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
