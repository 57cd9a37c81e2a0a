"""The deployment formats besides TF-Hub's own: ONNX, OpenVINO IR, TFLite and TF.js, each a
folder holding the model file, `inception_hub.json` and `labels.txt`.

All come from the one definition: ONNX and OpenVINO from the graph the engines run (int8: the
engines' own quantized model, one recipe), TFLite (`export/tflite.py`) and TF.js
(`export/tfjs.py`) from the TF builder. Inputs are `images` float32 [N, H, W, 3] in [0, 1],
with a dynamic batch, and a dynamic height and width from version 3 on; outputs `logits` and `feature_vector` (a
classifier's pooled features), or `feature_vector`, as the SavedModel's signatures name them.

OpenVINO runs an fp32 model in bf16 on CPUs with AVX512_BF16 unless the compile call asks for
f32, and reads no such request from the model file: an ONNX or OpenVINO export's metadata says
how to compile it exactly (`compile_fields`), and `inception_hub.load` compiles it that way.
"""

from __future__ import annotations

import dataclasses
import json

from ..engine.onnx import openvino_compile_config
from ..metadata import FORMAT_RECORDS
from . import triton
from .job import Job
from .tfjs import export_tfjs
from .tflite import export_tflite

#: The metadata field holding the properties to compile an ONNX or OpenVINO export with.
COMPILE_FIELD = "openvino_compile_config"


def compile_fields(fmt: str, precision: str) -> dict:
    """What an export's metadata says about compiling it with OpenVINO: for ONNX and OpenVINO IR,
    the properties of `ov.Core().compile_model(model_file, "CPU", properties)` that run it as
    exported (without them an fp32 export runs in bf16 on CPUs with AVX512_BF16)."""
    return {COMPILE_FIELD: openvino_compile_config(precision)} if fmt in ("onnx", "openvino", "triton") else {}


def export_onnx(job: Job) -> None:
    """`model.onnx`, with the metadata and labels also in the model's own metadata_props."""
    import onnx

    model = _engine_model(job)
    if not job.spec.variable_size:
        _fix_size(model.graph.input[0], job.spec.image_size)
    props = {"inception_hub": json.dumps(job.meta), "labels": "\n".join(job.labels or ())}
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(job.out / FORMAT_RECORDS["onnx"].model_file))


def export_openvino(job: Job) -> None:
    """`model.xml` + `model.bin`, weights kept in fp32 (no fp16 compression). The precision it
    runs in is the compile call's (see `compile_fields`): OpenVINO's CPU plugin takes only
    KV-cache and dynamic-quantization options from an IR's `runtime_options`, never the
    inference precision, so the IR does not carry a request it would ignore."""
    import io

    import openvino as ov

    model = ov.convert_model(io.BytesIO(_engine_model(job).SerializeToString()))
    if not job.spec.variable_size:
        model.reshape({"images": ov.PartialShape([-1, *job.spec.image_size, 3])})
    model.set_rt_info(json.dumps(job.meta), ["inception_hub", "metadata"])
    model.set_rt_info("\n".join(job.labels or ()), ["inception_hub", "labels"])
    ov.save_model(model, str(job.out / FORMAT_RECORDS["openvino"].model_file), compress_to_fp16=False)


def _engine_model(job: Job):
    """The engines' model (int8: their quantized one) with the published outputs only."""
    import onnx

    from ..engine.onnx import int8_path, onnx_path
    from ..engine.quantize import PORTABLE
    from ..nets.onnx_builder import without_feature_map

    if job.meta["precision"] == "int8":  # the recipe every CPU runs: an export may go anywhere
        path = int8_path(job.spec, job.weights, job.calibration, PORTABLE)
    else:
        path = onnx_path(job.spec, job.weights)
    return without_feature_map(onnx.load(str(path)))


def _fix_size(value, size: tuple[int, int]) -> None:
    dims = value.type.tensor_type.shape.dim
    for dim, n in zip(dims[1:3], size, strict=True):
        dim.ClearField("dim_param")
        dim.dim_value = n


def export_triton(job: Job) -> None:
    """A Triton model folder (see `triton`): the ONNX export's model as `1/model.onnx`, and
    `config.pbtxt`; `labels.txt` and `inception_hub.json` are written beside them as for every export."""
    folder = job.out / triton.VERSION_FOLDER
    folder.mkdir()
    export_onnx(dataclasses.replace(job, out=folder))
    (job.out / "config.pbtxt").write_text(triton.config_pbtxt(job.spec), encoding="utf-8")


__all__ = ["COMPILE_FIELD", "EXPORTERS", "Job", "compile_fields", "export_onnx", "export_openvino"]

#: The writer of each format: it fills the job's folder and may return metadata fields to record.
EXPORTERS = {
    "onnx": export_onnx,
    "openvino": export_openvino,
    "tflite": export_tflite,
    "tfjs": export_tfjs,
    "triton": export_triton,
}
