"""What the commands share: the program's name, the `Tally` of unreadable inputs, finding the
input images, the model and its stream of results, and the Ray job glue. Every command module
imports this one; it imports none of them."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InceptionHubError

if TYPE_CHECKING:
    from ..distributed import JobSummary
    from ..module import Module
    from ..pipeline import Result
    from ..source import Source

PROG = "inception-hub"


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


def find_inputs(images: list[str]) -> tuple[list[str], list[str]]:
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


def resolve_model(args: argparse.Namespace, task: str) -> Source:
    """The model the image options name (--model, --checkpoint, --backend, --precision,
    --calibration), resolved for `task`: refuses a feature-vector model for classify before any
    work."""
    from ..source import resolve_source

    return resolve_source(
        args.model,
        args.checkpoint,
        backend=args.backend,
        precision=args.precision,
        task=task,
        calibration=args.calibration,
    )


def model_results(
    args: argparse.Namespace, source: Source, paths: list[str], tally: Tally
) -> tuple[Module, Iterator[Result]]:
    """Load the model once and stream its results for `paths` with a progress bar; each
    unreadable file is reported and counted in `tally`."""
    from tqdm.auto import tqdm

    from .. import pipeline
    from ..module import open_source

    if source.backend == "tf":  # the engines run without it
        from ..quiet import import_tensorflow

        import_tensorflow()
    module = open_source(source, progress=args.progress)

    def stream() -> Iterator[Result]:
        bar = tqdm(total=len(paths), unit="img", disable=not args.progress or None, file=sys.stderr, leave=False)
        with bar:
            for r in pipeline.run(module, paths, batch_size=args.batch_size, workers=args.workers):
                bar.update(1)
                if r.error is not None:
                    tally.failures += 1
                    bar.write(f"{PROG}: cannot read {r.path}: {r.error}", file=sys.stderr)
                yield r

    return module, stream()


def check_engine(args: argparse.Namespace) -> None:
    """Refuse --engine ray without an output folder, and the Ray-only flags without it."""
    if args.engine == "ray":
        if args.output is None:
            raise InceptionHubError("--engine ray writes partitioned Parquet: give an output folder with --output")
        if Path(args.output).suffix.lower() in (".npy", ".npz"):
            raise InceptionHubError(f"--engine ray writes a folder of Parquet partitions, not {args.output}")
        return
    used = [flag for flag, on in (("--address", args.address), ("--resume", args.resume)) if on]
    if used:
        raise InceptionHubError(f"{' and '.join(used)} apply to --engine ray")


def run_ray(args: argparse.Namespace, task: str, paths: list[str], output: str | Path, *, top_k: int = 5) -> JobSummary:
    """The Ray Data job over `paths`: partitioned Parquet in `output`, resumable. The model is
    resolved here, once, and travels to the job whole; the summary goes to stderr."""
    from ..distributed import run_job

    source = resolve_model(args, task)

    def on_error(path: str, reason: str) -> None:
        print(f"{PROG}: cannot read {path}: {reason}", file=sys.stderr)

    # SIGTERM unwinds like Ctrl-C, so a local cluster is shut down rather than left running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    s = run_job(
        task,
        paths,
        output,
        source,
        top_k=top_k,
        resume=args.resume,
        partition_size=args.partition_size,
        on_error=on_error,
        progress=args.progress,
        address=args.address,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        cpus_per_worker=args.cpus_per_worker,
    )
    done = f" ({s.skipped} were already there)" if s.skipped else ""
    rate = f" in {s.seconds:.1f}s, {s.images_per_second:.1f} images/s" if s.written else ""
    print(
        f"wrote {s.written} of {s.partitions} partitions{done} to {s.output}{rate}; "
        f"{s.images} images, {s.errors} could not be read",
        file=sys.stderr,
    )
    return s


def arch_checkpoints(items: list[str]) -> dict[str, str]:
    """`--checkpoint ARCH=PATH` options as {architecture: path}."""
    from ..catalog import resolve

    checkpoints = {}
    for item in items:
        arch, sep, path = item.partition("=")
        if not sep or not path:
            raise InceptionHubError(f"--checkpoint takes ARCH=PATH, e.g. inception_v1=/data/v1.ckpt: {item!r}")
        checkpoints[resolve(arch).arch] = path
    return checkpoints
