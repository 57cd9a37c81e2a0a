"""`inception-hub embed --engine ray` against the single-process command, on the same images.

Each configuration runs as the user would run it, a fresh `inception-hub` process, timed from
start to exit. To separate the fixed cost (process, TensorFlow and Ray start-up, model load in
each actor) from the throughput, each is timed on a few images and on N images:

    start-up ~ time(few)        steady images/s = (N - few) / (time(N) - time(few))

A warm-up run of each fills the converted-model caches first. Ratios are against the local
command measured in this run. With one machine this measures overhead: on a real cluster the
steady rate grows with the actors (see the README).

    python benchmarks/distributed.py                      # 900 images, about 8 minutes on 2 cores
    python benchmarks/distributed.py --images 200 --json /tmp/distributed.json
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import CACHE, PHOTOS, REFERENCE, cpu_count, cpu_name, ensure_checkpoint, log, own_cache, photos, write_json

FEW = 8

CONFIGS = {
    "local": [],
    "ray (defaults)": ["--engine", "ray"],
    "ray 2 actors x 1 CPU": ["--engine", "ray", "--num-workers", "2", "--cpus-per-worker", "1"],
    "ray 1 actor x 2 CPUs": ["--engine", "ray", "--num-workers", "1", "--cpus-per-worker", "2"],
}


def images_folder(source: Path, count: int, dest: Path) -> Path:
    files = [Path(f) for f in photos(source, count)]
    if len(files) < count:
        raise SystemExit(f"only {len(files)} images in {source}")
    dest.mkdir(parents=True)
    for f in files:
        os.symlink(f.resolve(), dest / f.name)
    return dest


def run(exe: str, images: Path, extra: list[str], model: str, checkpoint: Path, out: Path, env: dict) -> float:
    output = out / "features.npy" if "ray" not in extra else out / "features"
    cmd = [exe, "embed", str(images), "-o", str(output), "--model", model, "--checkpoint", str(checkpoint)]
    start = time.perf_counter()
    proc = subprocess.run([*cmd, *extra, "--no-progress"], capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd + extra)} failed:\n{proc.stderr}")
    shutil.rmtree(out)
    out.mkdir()
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="inception_v1", help="inception_v1 or inception_resnet_v2")
    p.add_argument("--images", type=int, default=900, help="the first N sorted JPEGs of --image-dir")
    p.add_argument("--image-dir", type=Path, default=PHOTOS)
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated subset of: " + ", ".join(CONFIGS))
    p.add_argument("--checkpoint-dir", type=Path, default=CACHE / "checkpoints", help="synthetic checkpoints")
    p.add_argument("--reference-dir", type=Path, default=REFERENCE, help="has synth_checkpoint.py")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args()
    if args.images <= FEW:
        raise SystemExit(f"--images must be more than {FEW}")
    own_cache()
    arch = args.model.split("/")[0]
    checkpoint = ensure_checkpoint(arch, args.checkpoint_dir, args.reference_dir)
    exe = shutil.which("inception-hub", path=os.path.dirname(sys.executable)) or "inception-hub"
    names = [c.strip() for c in args.configs.split(",") if c.strip()]
    with tempfile.TemporaryDirectory(prefix="ih-bench-") as tmp:
        tmp = Path(tmp)
        few = images_folder(args.image_dir, FEW, tmp / "few")
        many = images_folder(args.image_dir, args.images, tmp / "many")
        out = tmp / "out"
        out.mkdir()
        env = {**os.environ, "INCEPTION_HUB_CACHE": str(tmp / "cache"), "INCEPTION_HUB_OFFLINE": "1"}
        results = {}
        for name in names:
            extra = CONFIGS[name]
            run(exe, few, extra, args.model, checkpoint, out, env)  # warm-up: converted-model caches
            t_few = run(exe, few, extra, args.model, checkpoint, out, env)
            t_many = run(exe, many, extra, args.model, checkpoint, out, env)
            steady = (args.images - FEW) / max(t_many - t_few, 1e-9)
            results[name] = {
                "startup_s": t_few,
                "total_s": t_many,
                "end_to_end_ips": args.images / t_many,
                "steady_ips": steady,
            }
            log(f"  {name}: {t_few:.1f}s for {FEW}, {t_many:.1f}s for {args.images}")
    base = results.get("local")
    print(f"embed {args.model}, {args.images} images, {cpu_count()} CPUs, {cpu_name()}")
    print(f"{'configuration':<22} {'start-up s':>10} {'total s':>8} {'img/s':>7} {'steady img/s':>13} {'vs local':>9}")
    for name, r in results.items():
        ratio = f"{r['steady_ips'] / base['steady_ips']:.2f}x" if base else "-"
        print(
            f"{name:<22} {r['startup_s']:>10.1f} {r['total_s']:>8.1f} {r['end_to_end_ips']:>7.1f} "
            f"{r['steady_ips']:>13.1f} {ratio:>9}"
        )
    if args.json:
        write_json(args.json, {"settings": {k: str(v) for k, v in vars(args).items()}, "results": results}, indent=1)


if __name__ == "__main__":
    main()
