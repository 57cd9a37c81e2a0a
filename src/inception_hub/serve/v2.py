"""The Open Inference Protocol (KServe's "v2", Triton's API) on the serving core, for both of its
transports: requests parsed into `Infer`, run by `infer` under the same admission, limits, queue
and deadlines as TF Serving's API, and answered as `Tensor`s.

A model takes one input, `images`: FP32 `[N, H, W, 3]` in [0, 1], or BYTES `[N]` of encoded
JPEG/PNG files, decoded and preprocessed on the server as `classify` does. Its outputs are named
as its signatures name them: `logits` and `feature_vector` for a classifier, `feature_vector`
for a feature-vector model. A request that names no outputs gets the main one (the
serving_default signature's). An output asked for with the `classification` parameter (k) is
BYTES `[N, k]` of Triton's "score:index:label" strings, best first.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._version import __version__
from .core import InvalidArgument, NotFound, ServingCore, TooLarge, has_bool
from .models import LOGITS, ServedModel

INPUT = "images"
SERVER = "inception-hub"
PLATFORM = "inception_hub"
EXTENSIONS = ("binary_tensor_data", "classification")
_LENGTH = struct.Struct("<I")  # a BYTES element's length, before its bytes


@dataclass(frozen=True)
class Wanted:
    """An output a request asks for: `binary` None means the request's default; `classes` > 0
    asks for that many top classes instead of the tensor."""

    name: str
    binary: bool | None = None
    classes: int = 0


@dataclass
class Infer:
    """An inference request once parsed: its images (floats, or each photo's bytes)."""

    images: np.ndarray | list[bytes]
    dims: list[int]
    outputs: list[Wanted] = field(default_factory=list)
    id: str = ""
    binary_output: bool = False


@dataclass
class Tensor:
    """An output of an answer: float32 values, or an array of bytes objects (BYTES)."""

    name: str
    datatype: str
    values: np.ndarray
    binary: bool = False

    @property
    def shape(self) -> list[int]:
        return list(self.values.shape)

    def raw(self) -> bytes:
        """The tensor in the binary data extension's (and gRPC's raw contents') layout."""
        if self.datatype == "BYTES":
            return b"".join(_LENGTH.pack(len(b)) + b for b in self.values.ravel())
        return self.values.astype("<f4", copy=False).tobytes()

    def data(self) -> list:
        """The values as JSON's flat row-major list."""
        if self.datatype == "BYTES":
            return [b.decode() for b in self.values.ravel()]
        return self.values.ravel().tolist()


# Models and the server -------------------------------------------------------------------------


def lookup(core: ServingCore, name: str, version: str | None = None) -> ServedModel:
    """The model named (any version when `version` is empty); NotFound in the protocol's words."""
    try:
        return core.model(name, version or None)
    except NotFound:
        which = f"'{name}'" + (f" version {version}" if version else "")
        raise NotFound(f"Request for unknown model: {which} is not found") from None


def outputs(model: ServedModel) -> list[str]:
    """The model's output names, the main one (serving_default's) first."""
    names = [s.output for s in model.signatures.values()]
    return list(dict.fromkeys(names))


def server_metadata() -> dict[str, Any]:
    return {"name": SERVER, "version": __version__, "extensions": list(EXTENSIONS)}


def model_metadata(model: ServedModel) -> dict[str, Any]:
    h, w = model.fixed_size or (-1, -1)
    return {
        "name": model.name,
        "versions": [str(model.version)],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT, "datatype": "FP32", "shape": [-1, h, w, 3]}],
        "outputs": [
            {"name": name, "datatype": "FP32", "shape": [-1, model.output_dim(name)]} for name in outputs(model)
        ],
    }


# Inputs ------------------------------------------------------------------------------------------


def check_tensor(name: Any, datatype: Any, dims: Any, max_images: int) -> list[int]:
    """The input's declared name, type and shape, before any of its data is read."""
    if name != INPUT:
        raise InvalidArgument(f"unexpected input {name!r}: the model's one input is {INPUT!r}")
    if not isinstance(dims, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in dims):
        raise InvalidArgument('"shape" must be a list of integers')
    if datatype == "BYTES":
        if len(dims) != 1 or dims[0] < 1:
            raise InvalidArgument(f"encoded images must be BYTES of shape [N], got {dims}")
        if dims[0] > max_images:
            raise TooLarge(f"a request holds at most {max_images} images, got {dims[0]}")
    elif datatype == "FP32":
        if len(dims) != 4 or dims[3] != 3 or min(dims) < 1:
            raise InvalidArgument(f"images must have shape [N, H, W, 3] (RGB, channels last), got {dims}")
        if dims[0] > max_images:
            raise TooLarge(f"a request holds at most {max_images} images, got {dims[0]}")
    else:
        raise InvalidArgument(
            f"images must be FP32 [N, H, W, 3] in [0, 1] or BYTES [N] of encoded JPEG/PNG, not {datatype!r}"
        )
    return dims


def floats(raw: bytes | memoryview, dims: list[int]) -> np.ndarray:
    """FP32 values in the binary layout: exactly as many as the shape declares."""
    count = math.prod(dims)
    if len(raw) != 4 * count:
        raise InvalidArgument(f"the input holds {len(raw)} bytes, but FP32 {dims} takes {4 * count}")
    return np.frombuffer(raw, "<f4").reshape(dims)


def float_list(data: Any, dims: list[int], bools: bool = True) -> np.ndarray:
    """FP32 values from JSON (flat or nested, row-major) or gRPC's fp32_contents: numbers only
    (`bools`: whether true or false may be among them, which are then looked for)."""
    count = math.prod(dims)
    if not isinstance(data, list) or bools and has_bool(data):
        raise InvalidArgument("FP32 data must be a list of numbers")
    try:
        x = np.asarray(data)
    except (ValueError, TypeError, OverflowError):
        x = np.empty(0, object)
    if x.dtype.kind not in "iuf" or x.size != count:
        raise InvalidArgument(f"FP32 data must be {count} numbers for shape {dims}")
    with np.errstate(over="ignore"):  # out-of-range numbers become inf and are refused as such
        return x.astype(np.float32, copy=False).reshape(dims)


def encoded(raw: bytes | memoryview, count: int) -> list[bytes]:
    """BYTES elements in the binary layout (each a 4-byte little-endian length, then its bytes):
    exactly `count` of them, filling `raw`."""
    view, at, items = memoryview(raw), 0, []
    while at < len(view) and len(items) < count:
        if at + 4 > len(view):
            break
        (n,) = _LENGTH.unpack_from(view, at)
        if at + 4 + n > len(view):
            break
        items.append(bytes(view[at + 4 : at + 4 + n]))
        at += 4 + n
    if len(items) != count or at != len(view):
        raise InvalidArgument(
            f"the BYTES input does not hold {count} length-prefixed elements exactly (4-byte little-endian lengths)"
        )
    return items


def encoded_list(data: Any, count: int) -> list[bytes]:
    """BYTES elements from JSON: base64 strings, or {"b64": "..."} objects."""
    if not isinstance(data, list) or len(data) != count:
        raise InvalidArgument(f"BYTES data must be a list of {count} base64 strings")
    items = [d["b64"] if isinstance(d, dict) and set(d) == {"b64"} else d for d in data]
    if not all(isinstance(i, str) for i in items):
        raise InvalidArgument('BYTES data in JSON must be base64 strings or {"b64": "..."} objects')
    return [ServingCore.b64(i) for i in items]


# The JSON (and binary) request of the HTTP transport -----------------------------------------------


def parse_rest(raw: bytes, header_length: int | None, max_images: int) -> Infer:
    """An HTTP infer request: a JSON object, followed (with `Inference-Header-Content-Length`) by
    the binary data of the inputs that give their `binary_data_size`."""
    if header_length is None:
        header_length = len(raw)
    elif not 0 < header_length <= len(raw):
        raise InvalidArgument(f"Inference-Header-Content-Length {header_length} is not within the body's length")
    view = memoryview(raw)
    try:
        body = json.loads(bytes(view[:header_length]))
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise InvalidArgument(f"the inference header is not valid JSON: {e}") from None
    if not isinstance(body, dict):
        raise InvalidArgument('the inference header must be a JSON object with "inputs"')
    inputs, params = body.get("inputs"), _params(body)
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise InvalidArgument(f'"inputs" must be a list of one tensor, {INPUT!r}')
    tensor = inputs[0]
    datatype = tensor.get("datatype")
    dims = check_tensor(tensor.get("name"), datatype, tensor.get("shape"), max_images)
    size = _params(tensor).get("binary_data_size")
    binary = view[header_length:]
    if size is not None:
        if not isinstance(size, int) or isinstance(size, bool) or size != len(binary):
            raise InvalidArgument(f"binary_data_size {size!r} is not the {len(binary)} bytes after the header")
        images = encoded(binary, dims[0]) if datatype == "BYTES" else floats(binary, dims)
    elif len(binary):
        raise InvalidArgument(f"{len(binary)} bytes follow the header, but no input gives its binary_data_size")
    elif "data" not in tensor:
        raise InvalidArgument(f'input {INPUT!r} has neither "data" nor binary_data_size')
    elif datatype == "BYTES":
        images = encoded_list(tensor["data"], dims[0])
    else:
        images = float_list(tensor["data"], dims, b"true" in raw or b"false" in raw)
    wanted = body.get("outputs", [])
    if not isinstance(wanted, list) or not all(isinstance(w, dict) for w in wanted):
        raise InvalidArgument('"outputs" must be a list of objects')
    request_id = body.get("id", "")
    if not isinstance(request_id, str):
        raise InvalidArgument('"id" must be a string')
    binary_output = params.get("binary_data_output", False)
    if not isinstance(binary_output, bool):
        raise InvalidArgument("binary_data_output must be true or false")
    return Infer(images, dims, [_wanted(w.get("name"), _params(w)) for w in wanted], request_id, binary_output)


def _params(obj: dict) -> dict:
    params = obj.get("parameters", {})
    if not isinstance(params, dict):
        raise InvalidArgument('"parameters" must be an object')
    return params


def _wanted(name: Any, params: dict) -> Wanted:
    binary, classes = params.get("binary_data"), params.get("classification", 0)
    if not isinstance(name, str):
        raise InvalidArgument("an output's name must be a string")
    if binary is not None and not isinstance(binary, bool):
        raise InvalidArgument("binary_data must be true or false")
    if not isinstance(classes, int) or isinstance(classes, bool) or classes < 0:
        raise InvalidArgument("classification must be a non-negative integer (the number of top classes)")
    return Wanted(name, binary, classes)


def wanted(name: str, classes: int) -> Wanted:
    """An output as gRPC asks for it (its answers are always raw)."""
    return _wanted(name, {"classification": classes})


# Running -----------------------------------------------------------------------------------------


async def infer(core: ServingCore, model: ServedModel, request: Infer) -> list[Tensor]:
    """Run one parsed request within its admission: decode, queue, batch; one run per output."""
    names = outputs(model)
    wanted = request.outputs or [Wanted(names[0])]
    for w in wanted:
        if w.name not in names:
            raise InvalidArgument(f"unexpected output {w.name!r}: model {model.name} outputs {', '.join(names)}")
    if len({w.name for w in wanted}) != len(wanted):
        raise InvalidArgument("an output is asked for twice")
    if isinstance(request.images, np.ndarray):
        core.check_declared(model, request.dims)
    sigs = {s.output: s for s in reversed(model.signatures.values())}  # the first signature of each output
    decoded: list[np.ndarray] = []

    async def images() -> np.ndarray:
        x = await core.decode(model, request.images) if isinstance(request.images, list) else request.images
        decoded.append(x)
        return x

    # The first output holds queue room before the photos decode (as :predict does); the others
    # reuse the decoded images.
    results = [await core.run(model, sigs[wanted[0].name], len(request.images), images())]
    for w in wanted[1:]:
        results.append(await core.predict(model, sigs[w.name], decoded[0]))
    answer = []
    for w, values in zip(wanted, results, strict=True):
        binary = request.binary_output if w.binary is None else w.binary
        if w.classes:
            labels = model.module.labels if w.name == LOGITS else None
            answer.append(Tensor(w.name, "BYTES", classification(values, w.classes, labels), binary))
        else:
            answer.append(Tensor(w.name, "FP32", np.asarray(values, np.float32), binary))
    return answer


def classification(values: np.ndarray, k: int, labels: tuple[str, ...] | None = None) -> np.ndarray:
    """Triton's classification output: per row, the `k` largest values as "value:index[:label]"
    (the value as C's %f writes it), best first."""
    k = min(k, values.shape[1])
    best = np.argsort(-values, axis=1, kind="stable")[:, :k]
    rows = [
        [f"{row[i]:f}:{i}" + (f":{labels[i]}" if labels else "") for i in order]
        for row, order in zip(values, best, strict=True)
    ]
    return np.array([[s.encode() for s in row] for row in rows], dtype=object).reshape(len(rows), k)


def response(model: ServedModel, request_id: str, tensors: list[Tensor]) -> tuple[dict[str, Any], list[bytes]]:
    """The JSON answer and the binary data that follows it: a binary output gives its
    `binary_data_size` instead of its data."""
    out, blobs = [], []
    for t in tensors:
        entry = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        if t.binary:
            blobs.append(t.raw())
            entry["parameters"] = {"binary_data_size": len(blobs[-1])}
        else:
            entry["data"] = t.data()
        out.append(entry)
    answer = {"model_name": model.name, "model_version": str(model.version), "outputs": out}
    if request_id:
        answer["id"] = request_id
    return answer, blobs
