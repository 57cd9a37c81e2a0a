"""TFLite model metadata, as MediaPipe's Tasks, ML Kit and the TFLite Task Library read it: the
input's normalization, size and colour space, the output's meaning and its labels (an associated
file), and the model's name, version, description, author and licence.

The metadata is a flatbuffer (schema `metadata_schema.fbs`, file identifier "M001") stored in one
of the model's buffers and named "TFLITE_METADATA" in `Model.metadata`; associated files are a
zip archive of uncompressed entries appended to the model file, which the readers open in place.

Written here from that published schema with `flatbuffers`, because no maintained writer installs
beside TensorFlow 2.21: tflite-support requires protobuf < 4 (TensorFlow needs >= 6.31), and
MediaPipe 1.2's copy of its writers does not import (its wheel lacks their native module). Only
fields of schema version 1.0.0 are written, so any reader accepts the result.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import flatbuffers
import numpy as np

METADATA_NAME = "TFLITE_METADATA"
FILE_IDENTIFIER = b"M001"
#: The newest schema version among the fields written (all are 1.0.0 fields).
MIN_PARSER_VERSION = "1.0.0"

# Enum and union values of the schema.
_RGB = 1
_TENSOR_AXIS_LABELS = 2
_FEATURE_PROPERTIES, _IMAGE_PROPERTIES = 1, 2
_NORMALIZATION_OPTIONS = 1


@dataclass(frozen=True)
class Labels:
    """An output's class names, embedded as a TENSOR_AXIS_LABELS file (one name a line)."""

    file_name: str
    names: Sequence[str]
    description: str = "Class names, one a line, in the order of the output's last axis."


@dataclass(frozen=True)
class ImageModel:
    """What the metadata of a one-input, one-output image model says."""

    name: str
    description: str
    version: str
    author: str
    license: str
    image_size: tuple[int, int]  # (height, width)
    mean: float  # the input is (pixel - mean) / std, pixels in [0, 255]
    std: float
    output_name: str
    output_description: str
    output_range: tuple[float, float] | None = None  # (min, max), e.g. (0, 1) for probabilities
    labels: Labels | None = None


def metadata_buffer(model: ImageModel) -> bytes:
    """The ModelMetadata flatbuffer of `model`."""
    b = flatbuffers.Builder(1024)
    h, w = model.image_size
    low, high = (0 - model.mean) / model.std, (255 - model.mean) / model.std

    # Input: an RGB image of the model's size, normalized as the model expects.
    b.StartObject(2)  # ImageSize
    b.PrependUint32Slot(0, w, 0)
    b.PrependUint32Slot(1, h, 0)
    size = b.EndObject()
    b.StartObject(2)  # ImageProperties
    b.PrependInt8Slot(0, _RGB, 0)
    b.PrependUOffsetTRelativeSlot(1, size, 0)
    image = b.EndObject()
    content_in = _content(b, _IMAGE_PROPERTIES, image)
    mean, std = (
        b.CreateNumpyVector(np.array([model.mean], np.float32)),
        b.CreateNumpyVector(np.array([model.std], np.float32)),
    )
    b.StartObject(2)  # NormalizationOptions
    b.PrependUOffsetTRelativeSlot(0, mean, 0)
    b.PrependUOffsetTRelativeSlot(1, std, 0)
    normalization = b.EndObject()
    b.StartObject(2)  # ProcessUnit
    b.PrependUint8Slot(0, _NORMALIZATION_OPTIONS, 0)
    b.PrependUOffsetTRelativeSlot(1, normalization, 0)
    units = _vector(b, [b.EndObject()])
    tensor_in = _tensor(
        b,
        "image",
        f"RGB image, {h}x{w}: float32 [1, {h}, {w}, 3], values (pixel - {model.mean:g}) / {model.std:g}",
        content_in,
        units=units,
        stats=_stats(b, (min(low, high), max(low, high))),
    )

    # Output: class scores with their labels, or a feature vector.
    b.StartObject(0)  # FeatureProperties
    content_out = _content(b, _FEATURE_PROPERTIES, b.EndObject())
    files = None
    if model.labels is not None:
        files = _vector(b, [_associated_file(b, model.labels.file_name, model.labels.description)])
    stats = _stats(b, model.output_range) if model.output_range else None
    tensor_out = _tensor(b, model.output_name, model.output_description, content_out, stats=stats, files=files)

    inputs, outputs = _vector(b, [tensor_in]), _vector(b, [tensor_out])
    b.StartObject(5)  # SubGraphMetadata
    b.PrependUOffsetTRelativeSlot(2, inputs, 0)
    b.PrependUOffsetTRelativeSlot(3, outputs, 0)
    subgraphs = _vector(b, [b.EndObject()])

    strings = [b.CreateString(s) for s in (model.name, model.description, model.version, model.author, model.license)]
    parser = b.CreateString(MIN_PARSER_VERSION)
    b.StartObject(8)  # ModelMetadata
    for slot, s in zip((0, 1, 2, 4, 5), strings, strict=True):
        b.PrependUOffsetTRelativeSlot(slot, s, 0)
    b.PrependUOffsetTRelativeSlot(3, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(7, parser, 0)
    b.Finish(b.EndObject(), file_identifier=FILE_IDENTIFIER)
    return bytes(b.Output())


def populate(model_bytes: bytes, model: ImageModel) -> bytes:
    """`model_bytes` (a TFLite flatbuffer) carrying the metadata of `model` and its labels file.
    Metadata the model already carries is replaced."""
    schema = tflite_schema()
    tflite = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    entries = [m for m in (tflite.metadata or []) if m.name.decode() != METADATA_NAME]
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(metadata_buffer(model), np.uint8)
    tflite.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name, entry.buffer = METADATA_NAME.encode(), len(tflite.buffers) - 1
    tflite.metadata = [*entries, entry]
    b = flatbuffers.Builder(len(model_bytes) + 4096)
    b.Finish(tflite.Pack(b), file_identifier=b"TFL3")
    files = {model.labels.file_name: "".join(f"{n}\n" for n in model.labels.names).encode()} if model.labels else {}
    return _append_zip(bytes(b.Output()), files)


def _append_zip(model_bytes: bytes, files: Mapping[str, bytes]) -> bytes:
    """The model with `files` appended as a zip archive of stored entries (which the readers use
    in place), its offsets counted from the start of the model file, so that the whole file is
    also a valid zip file."""
    if not files:
        return model_bytes
    out = io.BytesIO(model_bytes)
    with zipfile.ZipFile(out, "a", compression=zipfile.ZIP_STORED) as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return out.getvalue()


def tflite_schema():
    """The TFLite model schema's generated classes: LiteRT's, else TensorFlow's own copy."""
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError:
        from tensorflow.lite.python import schema_py_generated
    return schema_py_generated


def _vector(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for off in reversed(offsets):
        b.PrependUOffsetTRelative(off)
    return b.EndVector()


def _content(b: flatbuffers.Builder, kind: int, properties: int) -> int:
    b.StartObject(3)  # Content: the union's type, then its value
    b.PrependUint8Slot(0, kind, 0)
    b.PrependUOffsetTRelativeSlot(1, properties, 0)
    return b.EndObject()


def _stats(b: flatbuffers.Builder, value_range: tuple[float, float]) -> int:
    low, high = (b.CreateNumpyVector(np.array([v], np.float32)) for v in value_range)
    b.StartObject(2)  # Stats
    b.PrependUOffsetTRelativeSlot(0, high, 0)
    b.PrependUOffsetTRelativeSlot(1, low, 0)
    return b.EndObject()


def _associated_file(b: flatbuffers.Builder, name: str, description: str) -> int:
    name_off, description_off = b.CreateString(name), b.CreateString(description)
    b.StartObject(5)  # AssociatedFile
    b.PrependUOffsetTRelativeSlot(0, name_off, 0)
    b.PrependUOffsetTRelativeSlot(1, description_off, 0)
    b.PrependInt8Slot(2, _TENSOR_AXIS_LABELS, 0)
    return b.EndObject()


def _tensor(
    b: flatbuffers.Builder,
    name: str,
    description: str,
    content: int,
    *,
    units: int | None = None,
    stats: int | None = None,
    files: int | None = None,
) -> int:
    name_off, description_off = b.CreateString(name), b.CreateString(description)
    b.StartObject(7)  # TensorMetadata
    b.PrependUOffsetTRelativeSlot(0, name_off, 0)
    b.PrependUOffsetTRelativeSlot(1, description_off, 0)
    b.PrependUOffsetTRelativeSlot(3, content, 0)
    for slot, off in ((4, units), (5, stats), (6, files)):
        if off is not None:
            b.PrependUOffsetTRelativeSlot(slot, off, 0)
    return b.EndObject()
