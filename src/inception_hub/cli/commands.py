"""What each command does. A command returns its exit status; results are written through
`outputs`, and a `Tally` counts what could not be read."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..catalog import all_specs, resolve
from ..errors import InceptionHubError
from .parser import PROG


@dataclass
class Tally:
    """Inputs seen and inputs that could not be read: exit status 1 when any failed."""

    inputs: int = 0
    failures: int = 0

    def exit_status(self) -> int:
        if self.failures:
            print(f"{PROG}: {self.failures} of {self.inputs} inputs could not be read", file=sys.stderr)
            return 1
        return 0


def _find(images: list[str]) -> tuple[list[str], list[str]]:
    """The image paths, and the inputs that matched nothing or could not be read (each
    reported); no image at all is an error."""
    from ..files import find_images

    errors: list[tuple[str, str]] = []
    paths, unmatched = find_images(images, errors)
    for item in unmatched:
        print(f"{PROG}: no images found at {item}", file=sys.stderr)
    for folder, reason in errors:
        print(f"{PROG}: {folder}: {reason}", file=sys.stderr)
    unmatched += [folder for folder, _ in errors]
    if not paths:
        raise InceptionHubError("no images to process" + (f": {', '.join(unmatched)}" if unmatched else ""))
    return paths, unmatched


def _results(args: argparse.Namespace, task: str, tally: Tally):
    """Load the model once and stream pipeline results with a progress bar."""
    from tqdm.auto import tqdm

    from .. import pipeline
    from ..module import open_source
    from ..source import resolve_source

    source = resolve_source(
        args.model,
        args.checkpoint,
        backend=args.backend,
        precision=args.precision,
        task=task,
        calibration=args.calibration,
    )  # refuses a feature-vector model for classify before any work
    paths, unmatched = _find(args.images)
    tally.inputs, tally.failures = len(paths) + len(unmatched), len(unmatched)
    if source.backend == "tf":  # the engines run without it
        from ..quiet import import_tensorflow

        import_tensorflow()
    module = open_source(source, progress=args.progress)

    def stream() -> Iterator:
        bar = tqdm(total=len(paths), unit="img", disable=not args.progress or None, file=sys.stderr, leave=False)
        with bar:
            for r in pipeline.run(module, paths, batch_size=args.batch_size, workers=args.workers):
                bar.update(1)
                if r.error is not None:
                    tally.failures += 1
                    bar.write(f"{PROG}: cannot read {r.path}: {r.error}", file=sys.stderr)
                yield r

    return module, stream()


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
    from ..distributed import run_job

    paths, unmatched = _find(args.images)

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
        calibration=args.calibration,
    )
    done = f" ({s.skipped} were already there)" if s.skipped else ""
    rate = f" in {s.seconds:.1f}s, {s.images_per_second:.1f} images/s" if s.written else ""
    print(
        f"wrote {s.written} of {s.partitions} partitions{done} to {s.output}{rate}; "
        f"{s.images} images, {s.errors} could not be read",
        file=sys.stderr,
    )
    return Tally(len(paths) + len(unmatched), s.errors + len(unmatched)).exit_status()


def cmd_classify(args: argparse.Namespace) -> int:
    from ..labels import decode_predictions
    from ..outputs import ClassifyWriter

    _check_engine(args)
    if args.engine == "ray":
        return _run_ray(args, "classify")
    if args.output is not None:
        raise InceptionHubError("classify --output is for --engine ray; locally, choose --format and redirect stdout")
    from tqdm.auto import tqdm

    tally = Tally()
    module, results = _results(args, "classify", tally)
    writer = ClassifyWriter(sys.stdout, args.format)
    for r in results:
        preds = None if r.error else decode_predictions(r.output, top=args.top_k, labels=module.labels)[0]
        with tqdm.external_write_mode(file=sys.stderr):  # in a terminal, the bar steps aside for the row
            writer.write(r.path, preds, r.error)
    writer.close()
    return tally.exit_status()


def cmd_explain(args: argparse.Namespace) -> int:
    from ..cam import class_index_of, explain_files
    from ..labels import imagenet_labels
    from ..outputs import check_destination, folder_of

    spec = resolve(args.model)
    if spec.kind != "classification":
        raise InceptionHubError(f"{spec.handle} gives feature vectors; Grad-CAM needs a classification model")
    out = check_destination(args.output, "a folder of Grad-CAM overlays", folder=True, ours=folder_of(is_overlay))
    paths, unmatched = _find(args.images)
    tally = Tally(inputs=len(paths) + len(unmatched), failures=len(unmatched))
    class_index = class_index_of(args.class_, imagenet_labels()) if args.class_ is not None else None
    if args.layer is None:  # the final end point: Grad-CAM's map in closed form, on the engines
        from ..module import load

        explainer = load(spec.handle, args.checkpoint, progress=args.progress).explain
    else:  # any other end point needs the gradient: the Keras model
        from .. import keras as ihk
        from ..gradcam import GradCam

        explainer = GradCam(ihk.build_model(spec.arch, args.checkpoint or "imagenet"), args.layer)

    def failed(path: str, reason: str) -> None:
        tally.failures += 1
        print(f"{PROG}: {path}: {reason}", file=sys.stderr)

    for written in explain_files(paths, explainer, spec.image_size, out, class_index=class_index, on_error=failed):
        print(written)
    return tally.exit_status()


def is_overlay(path: Path) -> bool:
    """A file `explain` writes: `<name>.gradcam.png`, a PNG."""
    if not path.name.endswith(".gradcam.png"):
        return False
    try:
        with path.open("rb") as f:
            return f.read(8) == b"\x89PNG\r\n\x1a\n"
    except OSError:
        return False


def cmd_embed(args: argparse.Namespace) -> int:
    from ..outputs import check_features_path, write_features
    from ..similar.index import model_identity

    _check_engine(args)
    if args.engine == "ray":
        return _run_ray(args, "embed")
    output = check_features_path(args.output)
    tally = Tally()
    module, results = _results(args, "embed", tally)  # a classifier gives its own pooled features
    paths, rows = [], []
    for r in results:
        if r.error is None:
            paths.append(r.path)
            rows.append(r.output)
    features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, module.output_dim), np.float32)
    write_features(output, paths, features, model=model_identity(module))
    print(f"wrote {len(paths)} feature vectors of {features.shape[1]} floats to {output}", file=sys.stderr)
    return tally.exit_status()


def cmd_models(args: argparse.Namespace) -> int:
    from ..weights import folder, is_cached, provenance

    def weights(arch: str) -> str:
        if not is_cached(arch):
            return "not cached"
        origin = (provenance(arch) or {}).get("origin")
        return {"release": "cached (official release)", "imported": "cached (imported, not the release)"}.get(
            origin, "cached"
        )

    rows = [("HANDLE", "INPUT", "OUTPUT", "FORMAT", "WEIGHTS")]
    for s in all_specs():
        h, w = s.image_size
        size = f"{h}x{w}" + ("+" if s.variable_size else "")
        output = f"{s.output_dim} {'logits' if s.num_classes else 'features'}"
        rows.append((s.handle, size, output, s.hub_format, weights(s.arch)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\nShort names: inception_v1, inception_resnet_v2 (classification/5), and <name>/feature_vector.")
    print("INPUT '+' = any size accepted. Weights cache: " + str(folder("weights")))
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export

    spec = resolve(args.model)
    out = export(
        spec,
        args.outdir,
        args.checkpoint,
        format=args.format,
        precision=args.precision,
        calibration=args.calibration,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    fmt = args.format or ("tf1_hub" if spec.hub_format == "tf1_hub" else "saved_model")
    kind = {"tf1_hub": "TF1 Hub module", "saved_model": "TF2 SavedModel"}.get(fmt, f"{fmt} model ({args.precision})")
    print(f"exported {spec.handle} as a {kind} to {out}")
    return 0


#: `train` keyword arguments the command passes on when given (unset ones keep train's defaults).
FINETUNE_OPTIONS = (
    "fine_tune_backbone",
    "recalibrate_bn",
    "train_from",
    "checkpoint",
    "progress",
    "epochs",
    "batch_size",
    "learning_rate",
    "batch_norm_momentum",
    "validation_split",
    "image_size",
    "patience",
    "seed",
)


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..finetune import train
    from ..outputs import check_destination

    check_destination(args.output, "a fine-tuned model", folder=True)  # before training, not after
    given = {k: getattr(args, k) for k in FINETUNE_OPTIONS if getattr(args, k) is not None}
    result = train(args.data_dir, args.model, args.output, **given)
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
    from ..serve import Limits, serve

    limits = Limits(
        max_body_bytes=int(args.max_body_mb * (1 << 20)),
        max_inflight_bytes=int(args.max_inflight_mb * (1 << 20)),
        max_images=args.max_images,
        max_pixels=args.max_pixels,
        max_input_pixels=args.max_input_pixels,
        timeout_s=args.timeout,
        max_queue=args.max_queue,
    )
    serve(
        [m.strip() for m in args.models.split(",") if m.strip()],
        host=args.host,
        port=args.port,
        grpc_port=None if args.grpc_port < 0 else args.grpc_port,
        max_batch=args.max_batch,
        batch_timeout_ms=args.batch_timeout_ms,
        workers=args.workers,
        limits=limits,
        checkpoints=_arch_checkpoints(args.checkpoint),
        backend=args.backend,
        index=args.index,
    )
    return 0


def cmd_serve_hub(args: argparse.Namespace) -> int:
    from ..tfhub.server import ModuleStore, make_server

    store = ModuleStore(_arch_checkpoints(args.checkpoint), allow_download=args.allow_download)
    server = make_server(args.host, args.port, store, quiet=args.quiet)
    host, port = server.server_address[:2]
    print(f"serving modules on http://{host}:{port}/ (e.g. http://{host}:{port}/{all_specs()[0].handle})", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_install_hub_cache(args: argparse.Namespace) -> int:
    from ..tfhub import cache as hub_cache
    from ..weights import is_cached, load_weights

    cache = hub_cache.tfhub_cache_dir(args.tfhub_cache_dir)
    if args.list and args.remove:
        raise InceptionHubError("--list and --remove cannot be combined")
    if args.remove:
        specs = hub_cache.select(args.models, {}, lambda arch: True) if args.models else None
        print(f"removed {len(hub_cache.remove(cache, specs))} spellings from {cache}")
        return 0
    if args.list:
        shown = hub_cache.entries(cache)
        for e in shown:
            print(f"{e.spelling}  ->  {e.handle or '(missing: reinstall)'}" + ("" if e.is_link else f"  [{e.path}]"))
        print(f"{len(shown)} spellings of {len({e.handle for e in shown})} modules in {cache}")
        return 0
    from ..quiet import import_tensorflow

    checkpoints = _arch_checkpoints(args.checkpoint)
    specs = hub_cache.select(args.models, checkpoints, is_cached)
    import_tensorflow()
    from ..export import export

    weights = {}  # read once per network, for its digest and for every module built from it

    def read(arch: str):
        if arch not in weights:
            weights[arch] = load_weights(arch, checkpoints.get(arch), progress=args.progress)
        return weights[arch]

    def build(spec, folder: Path) -> None:
        export(spec, folder, overwrite=True, progress=False, weights=read(spec.arch))

    done = hub_cache.install(specs, cache, lambda arch: read(arch).digest, build, force=args.force)
    modules = f"{len(specs)} module" + ("s" if len(specs) != 1 else "")
    print(f"{len(done)} spellings of {modules} ready in {cache}; hub.load(url) finds them offline")
    if os.environ.get("TFHUB_CACHE_DIR") is None and args.tfhub_cache_dir is None:
        print("(tensorflow_hub's default cache; set TFHUB_CACHE_DIR to keep modules across reboots)")
    elif args.tfhub_cache_dir is not None and os.environ.get("TFHUB_CACHE_DIR") != str(cache):
        print(f"set TFHUB_CACHE_DIR={cache} where the hub code runs")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from ..weights import cache

    if args.remove or args.clean:
        removed = cache.remove(args.remove) if args.remove else cache.clean()
        for path in removed:
            print(f"removed {path}")
        print(f"{len(removed)} removed from {cache.cache_dir()}")
        return 0
    items = cache.entries()
    for e in items:
        print(f"{e.kind:<9} {cache.human(e.bytes):>10}  {e.path}" + (f"  ({e.note})" if e.note else ""))
    print(f"{cache.human(sum(e.bytes for e in items))} in {cache.cache_dir()}")
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..weights import fetch

    spec = resolve(args.model)
    path = fetch(spec.arch, args.source, progress=args.progress)
    print(f"{spec.arch} weights ready at {path}")
    return 0
