"""`inception-hub classify`, `embed` and `explain`: a model over image files, in this process
or (classify, embed) as a Ray job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from ..errors import InceptionHubError
from .common import PROG, Tally, check_engine, find_inputs, model_results, resolve_model, run_ray


def _on_ray(args: argparse.Namespace, task: str, top_k: int = 5) -> int:
    paths, unmatched = find_inputs(args.images)
    s = run_ray(args, task, paths, args.output, top_k=top_k)
    return Tally(len(paths) + len(unmatched), s.errors + len(unmatched)).exit_status()


def cmd_classify(args: argparse.Namespace) -> int:
    from ..labels import decode_predictions
    from ..outputs import ClassifyWriter

    check_engine(args)
    if args.engine == "ray":
        return _on_ray(args, "classify", args.top_k)
    if args.output is not None:
        raise InceptionHubError("classify --output is for --engine ray; locally, choose --format and redirect stdout")
    from tqdm.auto import tqdm

    source = resolve_model(args, "classify")
    paths, unmatched = find_inputs(args.images)
    tally = Tally(len(paths) + len(unmatched), len(unmatched))
    module, results = model_results(args, source, paths, tally)
    writer = ClassifyWriter(sys.stdout, args.format)
    for r in results:
        preds = None if r.error else decode_predictions(r.output, top=args.top_k, labels=module.labels)[0]
        with tqdm.external_write_mode(file=sys.stderr):  # in a terminal, the bar steps aside for the row
            writer.write(r.path, preds, r.error)
    writer.close()
    return tally.exit_status()


def cmd_embed(args: argparse.Namespace) -> int:
    from ..outputs import check_features_path, write_features
    from ..similar.index import model_identity

    check_engine(args)
    if args.engine == "ray":
        return _on_ray(args, "embed")
    output = check_features_path(args.output)
    source = resolve_model(args, "embed")  # a classifier gives its own pooled features
    paths, unmatched = find_inputs(args.images)
    tally = Tally(len(paths) + len(unmatched), len(unmatched))
    module, results = model_results(args, source, paths, tally)
    kept, rows = [], []
    for r in results:
        if r.error is None:
            kept.append(r.path)
            rows.append(r.output)
    features = np.stack(rows).astype(np.float32) if rows else np.zeros((0, module.output_dim), np.float32)
    write_features(output, kept, features, model=model_identity(module))
    print(f"wrote {len(kept)} feature vectors of {features.shape[1]} floats to {output}", file=sys.stderr)
    return tally.exit_status()


def cmd_explain(args: argparse.Namespace) -> int:
    from ..cam import class_index_of, explain_files
    from ..catalog import resolve
    from ..labels import imagenet_labels
    from ..outputs import check_destination, folder_of

    spec = resolve(args.model)
    if spec.kind != "classification":
        raise InceptionHubError(f"{spec.handle} gives feature vectors; Grad-CAM needs a classification model")
    out = check_destination(args.output, "a folder of Grad-CAM overlays", folder=True, ours=folder_of(is_overlay))
    paths, unmatched = find_inputs(args.images)
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
