"""Engine settings, measured in one process and interleaved: ONNX Runtime's thread spinning,
OpenVINO's LATENCY and THROUGHPUT hints, and the decode threads beside the engine's.

Each variant runs files in, outputs out through inception-hub's own pipeline (`pipeline.run`),
plus model-only batch-32 images/s. Synthetic weights; the fp32 models of the engine cache.

    python benchmarks/engine_settings.py --images 96
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import CACHE, RESULTS, SIZES, cpu_count, own_cache, photos, write_json
from int8_quantizers import ov_model, synthetic_weights


def ort(path: Path, spinning: bool) -> Callable:
    import onnxruntime as rt

    options = rt.SessionOptions()
    options.intra_op_num_threads = cpu_count()
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    session = rt.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": np.ascontiguousarray(x, np.float32)})[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="inception_v1,inception_resnet_v2")
    p.add_argument("--images", type=int, default=96)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--json", type=Path, default=RESULTS / "engine_settings.json")
    args = p.parse_args()
    own_cache()
    os.environ.setdefault("INCEPTION_HUB_CACHE", str(CACHE / "hub"))
    from inception_hub import pipeline
    from inception_hub.engine import Runner
    from inception_hub.engine.onnx import onnx_path
    from inception_hub.images import load_image
    from inception_hub.module import Module
    from inception_hub.source import resolve_source

    paths = photos(limit=args.images)
    results = {}
    for arch in args.models.split(","):
        size = SIZES[arch]
        source = resolve_source(arch, backend="onnxruntime")
        path = onnx_path(source.spec, synthetic_weights(arch))
        engines = {
            "onnxruntime spinning (default)": ort(path, True),
            "onnxruntime no spinning": ort(path, False),
            "openvino LATENCY (default)": ov_model(str(path), "LATENCY"),
            "openvino THROUGHPUT": ov_model(str(path), "THROUGHPUT"),
        }
        variants = [(name, run, None) for name, run in engines.items()]
        variants += [(f"onnxruntime spinning, {w} decode threads", engines["onnxruntime spinning (default)"], w)
                     for w in (1, 4)]  # fmt: skip
        x = np.stack([load_image(p, (size, size)) for p in paths[:32]])
        best: dict[str, dict[str, float]] = {name: {"b32": 0.0, "e2e": 0.0} for name, _, _ in variants}
        for _ in range(args.repeat):  # interleaved
            for name, run, workers in variants:
                run(x)
                start = time.perf_counter()
                for _ in range(3):
                    run(x)
                best[name]["b32"] = max(best[name]["b32"], 96 / (time.perf_counter() - start))
                module = Module.from_runner(source, Runner(run, None, "onnxruntime"))
                start = time.perf_counter()
                done = sum(r.output is not None for r in pipeline.run(module, paths, workers=workers))
                best[name]["e2e"] = max(best[name]["e2e"], done / (time.perf_counter() - start))
        results[arch] = best
        print(f"## {arch}\n| variant | b32 img/s | end-to-end img/s |\n|---|--:|--:|")
        for name, r in best.items():
            print(f"| {name} | {r['b32']:.1f} | {r['e2e']:.1f} |")
    write_json(args.json, {"images": len(paths), "models": results})


if __name__ == "__main__":
    main()
