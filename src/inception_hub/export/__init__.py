"""Export a handle in a deployment format: the module tfhub.dev served (TF2 SavedModel for
versions 4 and 5, TF1 Hub format for 1 and 3), or ONNX, OpenVINO IR, TFLite or a TF.js graph model. Every export is a
folder with the labels and `inception_hub.json`, written to a temporary folder and moved into
place whole; `inception_hub.load(folder)` loads each of them."""

from __future__ import annotations

import os
from pathlib import Path

from .._version import __version__
from ..atomic import atomic_dir
from ..catalog import ModelSpec, resolve
from ..errors import InceptionHubError, InputError
from ..metadata import (
    FORMAT_RECORDS,
    FORMATS,
    METADATA,
    describe,
    is_export,
    published_format,
    read_metadata,
    write_metadata,
)
from ..weights import Weights, load_weights
from . import proto

__all__ = ["FORMATS", "METADATA", "export", "get_expected_image_size", "read_metadata", "write_metadata"]


def default_format(spec: ModelSpec) -> str:
    """What tfhub.dev published for the handle's version."""
    return published_format(spec).name


def check_format(spec: ModelSpec, fmt: str | None, precision: str, calibration) -> str:
    """The format to write, with every refusal said before any work is done."""
    fmt = fmt or default_format(spec)
    if fmt not in FORMATS:
        raise InputError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    record = FORMAT_RECORDS[fmt]
    if record.saved_model and fmt != default_format(spec):
        want = "/5 (or /4)" if fmt == "saved_model" else "/3 (or /1)"
        raise InputError(f"{spec.handle} is published as {default_format(spec)}; for {fmt} export version {want}")
    allowed = record.precisions
    if precision not in allowed:
        raise InputError(f"{fmt} exports in {' or '.join(allowed)}, not {precision}")
    if calibration is not None and (precision != "int8" or fmt == "tfjs"):
        raise InputError("--calibration applies to int8 exports only (a TF.js export quantizes its weights alone)")
    return fmt


def export(
    handle: str | ModelSpec,
    outdir: str | os.PathLike,
    checkpoint: str | os.PathLike | None = None,
    *,
    format: str | None = None,  # noqa: A002 - the CLI's --format
    precision: str = "fp32",
    calibration: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    weights: Weights | None = None,
) -> Path:
    """Write `handle` to `outdir` in `format` (default: what tfhub.dev published for its
    version) and return the folder. `precision` "int8" (onnx, openvino, tflite) is calibrated on
    the photos in `calibration` (default: a bundled set); "bf16" is for openvino; for tfjs,
    "int8" and "fp16" store the weights as uint8 or float16. `weights`
    already read (for several modules of one network) stand for the checkpoint."""
    spec = handle if isinstance(handle, ModelSpec) else resolve(handle)
    fmt = check_format(spec, format, precision, calibration)
    calibration = os.fspath(calibration) if calibration is not None else None
    if calibration is not None and not os.path.isdir(calibration):
        raise InputError(f"calibration folder {calibration} does not exist")
    with atomic_dir(outdir, overwrite=overwrite, ours=is_export) as staging:
        if weights is None:
            weights = load_weights(spec.arch, checkpoint, progress=progress)
        extra = {
            "precision": precision,
            "weights_release": spec.checkpoint.url,
            "weights_digest": weights.digest,
            "exported_by": f"inception-hub {__version__}",
        }
        if precision == "int8" and fmt != "tfjs":
            extra["calibration"] = os.path.basename(os.path.abspath(calibration)) if calibration else "bundled"
        if fmt == "tf1_hub":
            from .tf1_hub import export_tf1_hub

            export_tf1_hub(spec, weights, staging)
        elif fmt == "saved_model":
            from .tf2 import export_tf2

            export_tf2(spec, weights, staging)
        else:
            from .formats import EXPORTERS, Job, compile_fields

            extra.update(compile_fields(fmt, precision))
            if precision == "int8" and fmt != "tfjs":
                extra["int8_weight_bits"] = 7  # the portable recipe: it runs on any CPU
            meta, labels = describe(spec, format=fmt, **extra)
            staging.mkdir(parents=True, exist_ok=True)
            extra.update(EXPORTERS[fmt](Job(spec, weights, staging, meta, labels, calibration)) or {})
        record = FORMAT_RECORDS[fmt]
        write_metadata(spec, staging, flat=not record.saved_model, **extra, format=record.recorded_as)
    return Path(outdir)


def get_expected_image_size(path_or_handle: str | os.PathLike) -> tuple[int, int]:
    """(height, width) a module was trained for: from a handle, a TF1 module's
    `image_module_info` attachment, or an exported model's metadata."""
    p = Path(path_or_handle)
    if not p.exists():
        return resolve(str(path_or_handle)).image_size
    if (p / "tfhub_module.pb").is_file():
        from tensorflow.core.protobuf import saved_model_pb2

        sm = saved_model_pb2.SavedModel.FromString((p / "saved_model.pb").read_bytes())
        for mg in sm.meta_graphs:
            for item in mg.collection_def["hub_module_attachments"].bytes_list.value:
                key, size = proto.read_image_size(item)
                if size:
                    return size
    try:
        return tuple(read_metadata(p)["default_image_size"])
    except InceptionHubError:
        raise InceptionHubError(f"{p} has no image size information (not a module exported by inception-hub)") from None
