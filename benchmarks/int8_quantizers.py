"""int8 for the engines: ONNX Runtime's static quantizer (the recipe inception-hub ships) against
OpenVINO's NNCF, calibrated on the same inputs, measured in one process, interleaved.

Per network: quantizing time; model-only batch-32 images/s of fp32 and of each int8 model on the
engines that run it; and each int8 model's agreement with fp32 on N photos. Synthetic weights
(speed does not depend on the values; agreement is a lower bound, their logits being flat).

    pip install nncf "numpy==$(python -c 'import numpy; print(numpy.__version__)')"
    python benchmarks/int8_quantizers.py --images 128
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
from common import CACHE, RESULTS, SIZES, own_cache, photos, synth_module, write_json
from footprint import agreement
from measure import best_rate


def synthetic_weights(arch: str):
    """Synthetic weights for `arch` (official names and shapes, seed 0), validated as a checkpoint's would be."""
    from inception_hub.weights import validate

    return validate(arch, synth_module().synth_weights(arch, 0))


def ort_session(path: Path):
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"images": x})[0]


def ov_model(model, hint: str = "LATENCY"):
    """An OpenVINO model (path or ov.Model) compiled for exact f32 with `hint`, as a function."""
    import openvino as ov

    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": hint}
    request = ov.Core().compile_model(model, "CPU", config).create_infer_request()

    def run(x):
        request.infer({0: np.ascontiguousarray(x, np.float32)})
        return request.get_output_tensor(0).data.copy()

    return run


def nncf_quantize(fp32: Path, calibration) -> object:
    import nncf
    import openvino as ov

    data = nncf.Dataset(range(len(calibration)), lambda i: calibration.batch(i))
    return nncf.quantize(ov.Core().read_model(str(fp32)), data, subset_size=len(calibration))


def rate(run, x, repeat: int, min_time: float) -> float:
    """Best images/s of `run` on the batch `x` after one untimed call."""
    run(x)
    return best_rate(lambda: (run(x), len(x))[1], repeat, min_time)["best"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="inception_v1,inception_resnet_v2")
    p.add_argument("--images", type=int, default=128)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--min-time", type=float, default=2.0)
    p.add_argument("--json", type=Path, default=RESULTS / "int8_quantizers.json")
    args = p.parse_args()
    own_cache()
    os.environ.setdefault("INCEPTION_HUB_CACHE", str(CACHE / "hub"))
    from inception_hub.catalog import resolve
    from inception_hub.engine.onnx import onnx_path
    from inception_hub.engine.quantize import Calibration, calibration_files, quantize
    from inception_hub.images import load_image

    paths = photos(limit=args.images)
    results = {}
    for arch in args.models.split(","):
        size = SIZES[arch]
        spec, weights = resolve(f"{arch}/classification"), synthetic_weights(arch)
        fp32 = onnx_path(spec, weights)
        calibration = Calibration(calibration_files(None), (size, size))
        start = time.perf_counter()
        qdq = fp32.with_name("int8-quantizers-qdq.onnx")
        qdq.write_bytes(quantize(fp32, calibration))
        ort_s = time.perf_counter() - start
        start = time.perf_counter()
        nncf_model = nncf_quantize(fp32, calibration)
        nncf_s = time.perf_counter() - start
        runs = {
            "onnxruntime fp32": ort_session(fp32),
            "onnxruntime int8 (ORT quantizer)": ort_session(qdq),
            "openvino fp32": ov_model(str(fp32)),
            "openvino int8 (ORT quantizer)": ov_model(str(qdq)),
            "openvino int8 (NNCF)": ov_model(nncf_model),
        }
        x = np.stack([load_image(p, (size, size)) for p in paths])
        outputs = {
            name: np.concatenate([run(x[i : i + 32]) for i in range(0, len(x), 32)]) for name, run in runs.items()
        }
        rates: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):  # interleaved, so drift on the machine hits every model alike
            for name, run in runs.items():
                rates[name].append(rate(run, x[:32], 1, args.min_time))
        exact = {"onnxruntime": outputs["onnxruntime fp32"], "openvino": outputs["openvino fp32"]}
        rows = {}
        for name in runs:
            engine = name.split()[0]
            rows[name] = {"b32_img_s": max(rates[name]), "vs_fp32": max(rates[name]) / max(rates[f"{engine} fp32"])}
            if "int8" in name:
                rows[name].update(agreement(exact[engine], outputs[name]))
        results[arch] = {"quantize_s": {"onnxruntime": ort_s, "nncf": nncf_s}, "rows": rows}
        print(f"## {arch}: quantizing took {ort_s:.0f} s (ORT) and {nncf_s:.0f} s (NNCF)")
        print("| model | b32 img/s | ×fp32 | top-1 agreement | top-1 in fp32 top-5 |\n|---|--:|--:|--:|--:|")
        for name, r in rows.items():
            print(f"| {name} | {r['b32_img_s']:.1f} | {r['vs_fp32']:.2f} | {r.get('top1_agreement', 1):.3f} "
                  f"| {r.get('top1_in_fp32_top5', 1):.3f} |")  # fmt: skip
        qdq.unlink()
    write_json(args.json, {"images": len(paths), "models": results})


if __name__ == "__main__":
    main()
