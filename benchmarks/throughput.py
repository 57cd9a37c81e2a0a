"""CPU throughput of inception-hub against "the TF-Hub way" and PyTorch / Keras peers, on the same images.

Everything runs in one process, one engine at a time, on the first N sorted JPEGs of a folder:

1. inception-hub on each installed backend and precision (tf, onnxruntime, openvino fp32, openvino bf16);
2. the TF-Hub way: the exported TF2 SavedModel fed by a tf.data pipeline, top-5 by tf.math.top_k;
3. peers, each optional: torchvision googlenet and timm inception_resnet_v2 fed by a torch DataLoader
   (PIL + torchvision transforms), Keras applications' InceptionResNetV2 fed by the same tf.data pipeline.

For each engine: end-to-end images/s (files in, top-5 out) and model-only images/s at batch 1 and 32
(preprocessed arrays in memory, warmed up, best of --repeat runs). Then single-core decode rates of several
JPEG decoders with their accuracy cost against the exact TF-Slim preprocessing, a measured float32 matmul
peak (fractions of it are printed), and the cold start-up time of `inception-hub classify`. Before the
engines it records what inception-hub chooses on this CPU (the default fp32 engine and precision fast, with
the rates measured at first use). Every figure is printed with the CPU it ran on (`cpu().describe()`).
Results go to JSON and a PNG per CPU kind (`results/throughput-<CPU class>.json`), a Markdown table, and
the README's tables, one per CPU kind measured so far (`results/readme_tables.md`). Weights are synthetic
checkpoints with the official variable names and shapes (speed does not depend on the values) unless
--official uses the cached official weights.

This file parses the flags and wires the parts, each in its own module beside it: engines.py (the engines
and peers), measure.py (timing, ratios, peak), decoders.py (the decoder study), startup.py (start-up and
install size, via footprint.py) and report.py (Markdown tables and the plot); common.py holds what every
benchmark script shares.

Optional peers and decoders go into the project venv. Pin torch to the local CPU wheel (any other spec
pulls gigabytes of CUDA) and keep setuptools<81 (tensorflow-hub needs pkg_resources). PyPI's torchvision is
built for CUDA torch; engines.import_torchvision() explains how it still imports:

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
import json
import os
from pathlib import Path
from typing import Any

from common import (
    CACHE,
    INTERLEAVED,
    PHOTOS,
    REFERENCE,
    RESULTS,
    SIZES,
    ensure_checkpoint,
    log,
    machine_info,
    own_cache,
    photos,
    write_json,
)
from decoders import benchmark_decoders
from measure import benchmark_model, measure_peak
from report import markdown, plot, readme_tables
from startup import measure_lean_install, measure_startup

#: Packages whose versions the results record.
DISTRIBUTIONS = ("inception-hub", "tensorflow", "onnxruntime", "openvino", "numpy", "pillow", "torch", "torchvision")
DISTRIBUTIONS += ("timm", "keras", "opencv-python-headless", "simplejpeg", "matplotlib")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="inception_v1,inception_resnet_v2", help="comma-separated")
    p.add_argument("--image-dir", type=Path, default=PHOTOS)
    p.add_argument("--images", type=int, default=None, help="the first N sorted images (default: all)")
    p.add_argument("--repeat", type=int, default=3, help="model-only rounds; decode and start-up runs (best counts)")
    p.add_argument("--e2e-repeat", type=int, default=2, help="end-to-end passes over all images (rounds)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds per model-only run")
    p.add_argument("--checkpoint-dir", type=Path, default=CACHE / "checkpoints", help="synthetic checkpoints")
    p.add_argument("--reference-dir", type=Path, default=REFERENCE, help="has synth_checkpoint.py")
    p.add_argument("--official", action="store_true", help="use the cached official weights, no checkpoint")
    p.add_argument("--torch-workers", default="0,2", help="DataLoader num_workers to try; the best one is reported")
    p.add_argument("--probe-images", type=int, default=64, help="images to pick the faster DataLoader setting on")
    p.add_argument("--torch-threads", type=int, default=None, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--peak-size", type=int, default=4096, help="matmul size for the measured peak")
    p.add_argument(
        "--skip", default="", help="comma-separated sections to leave out: project,tfhub,peers,decoders,startup,install"
    )
    p.add_argument("--json", type=Path, default=None, help="default: results/throughput-<CPU class>.json")
    p.add_argument("--plot", type=Path, default=None, help="default: results/throughput-<CPU class>.png")
    p.add_argument(
        "--readme-tables",
        type=Path,
        default=RESULTS / "readme_tables.md",
        help="where the README's tables go: one per CPU kind, from every throughput-*.json beside --json",
    )
    args = p.parse_args(argv)
    args.models = [m.strip() for m in args.models.split(",") if m.strip()]
    if unknown := [m for m in args.models if m not in SIZES]:
        p.error(f"unknown model(s) {unknown}; choose from {', '.join(SIZES)}")
    args.skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    args.torch_workers = [int(w) for w in args.torch_workers.split(",")]
    from inception_hub.cpu import cpu

    args.json = args.json or RESULTS / f"throughput-{cpu().isa}.json"  # one file per CPU kind
    args.plot = args.plot or args.json.with_suffix(".png")
    return args


def config(args: argparse.Namespace, images: int) -> dict:
    out = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    weights = "official" if args.official else "synthetic"
    return {**out, "skip": sorted(args.skip), "images": images, "weights": weights, "timing": INTERLEAVED}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("INCEPTION_HUB_OFFLINE", "1")  # never download weights: --official uses the cache
    from inception_hub.quiet import import_tensorflow

    import_tensorflow()  # first, so that its start-up chatter is silenced
    from inception_hub.cpu import cpu

    log(f"== on {cpu().describe()}")
    paths = photos(args.image_dir, args.images)
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
        "machine": machine_info(DISTRIBUTIONS),
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
        results["install"] = measure_lean_install()
    results["load_average_end"] = os.getloadavg()
    write_json(args.json, results)
    log(f"wrote {args.json}")
    plot(results, args.plot)
    print(markdown(results))
    runs = [json.loads(p.read_text()) for p in sorted(args.json.parent.glob("throughput-*.json"))]
    args.readme_tables.write_text(readme_tables(runs))
    log(f"wrote {args.readme_tables}: the README's tables, one per CPU kind ({len(runs)})")


if __name__ == "__main__":
    main()
