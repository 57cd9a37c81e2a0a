"""Top-1 agreement of the opt-in OpenVINO bf16 mode with exact fp32, on every image in a folder.

    python benchmarks/bf16_agreement.py                     # ../shared/images, synthetic weights
    python benchmarks/bf16_agreement.py --official          # the cached official weights

Prints, per model, the fraction of images whose top-1 class is the same in bf16 as in fp32, the
top-5 overlap, and the logit error. With synthetic weights the logits are far less peaked than a
trained network's, so this is a pessimistic stand-in for agreement on real predictions.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from common import RESULTS, SHARED, ensure_checkpoint, own_cache, photos, write_json

import inception_hub
from inception_hub.pipeline import run


def outputs(module, paths: list[str]) -> np.ndarray:
    return np.stack([r.output for r in run(module, paths) if r.error is None])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", default=str(SHARED / "images"))
    p.add_argument("--models", default="inception_v1,inception_resnet_v2")
    p.add_argument("--official", action="store_true")
    p.add_argument("--json", default=str(RESULTS / "bf16_agreement.json"))
    args = p.parse_args()
    paths = photos(args.images)
    own_cache()
    results = {}
    for arch in args.models.split(","):
        ckpt = None if args.official else ensure_checkpoint(arch)
        exact = outputs(inception_hub.load(arch, ckpt, backend="openvino", progress=False), paths)
        fast = outputs(inception_hub.load(arch, ckpt, precision="bf16", progress=False), paths)
        top5 = np.argsort(-exact, 1)[:, :5], np.argsort(-fast, 1)[:, :5]
        results[arch] = {
            "images": len(exact),
            "top1_agreement": float((exact.argmax(1) == fast.argmax(1)).mean()),
            "top5_overlap": float(np.mean([len(set(a) & set(b)) / 5 for a, b in zip(*top5, strict=True)])),
            "max_abs_logit_diff": float(np.abs(exact - fast).max()),
            "mean_abs_logit_diff": float(np.abs(exact - fast).mean()),
            "weights": "official" if args.official else "synthetic",
        }
        print(arch, json.dumps(results[arch]), flush=True)
    write_json(args.json, results, indent=1)


if __name__ == "__main__":
    main()
