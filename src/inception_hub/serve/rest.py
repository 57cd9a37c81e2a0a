"""TensorFlow Serving's REST API (api_rest.md) on aiohttp, plus /healthz, /metrics, /openapi.json.

- `GET /v1/models/{name}[/versions/{v}]`: model status.
- `GET /v1/models/{name}[/versions/{v}]/metadata`: signatures.
- `POST /v1/models/{name}[/versions/{v}]:predict`: `{"signature_name": ..., "instances": [...]}`
  (row format, answered with `predictions`) or `{"inputs": ...}` (columnar, answered with
  `outputs`). An image is a `[H][W][3]` float list in [0, 1], `{"b64": "<JPEG or PNG>"}`, or either
  under the input name: `{"images": ...}`.
- `POST /v1/models/{name}[/versions/{v}]:classify`: TF Serving's Classify API for classification
  models: `{"examples": [{"image": {"b64": ...}}, ...], "context": {...}}` (the image under
  `image`, `images` or `image/encoded`), answered with `{"result": [[[label, score], ...], ...]}`:
  the top 5 labels (or `"top_k"`) by softmax probability, best first.
Errors are `{"error": "..."}` with a 4xx status; a 5xx would be a bug.
"""

from __future__ import annotations

from functools import partial
from importlib import resources
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .core import InvalidArgument, ServingCore, TooLarge, has_bool
from .http import CORE, expect_continue, handle, json_object, parsed_body, requested_model
from .models import LOGITS, ServedModel

INPUT = "images"
NAME = r"{name:[^/:]+}"
VERSION = r"{version:[^/:]+}"


def add_routes(app: web.Application) -> None:
    """TF Serving's routes, both with and without a version, and /healthz, /metrics, /openapi.json."""
    r = app.router
    for prefix in (f"/v1/models/{NAME}", f"/v1/models/{NAME}/versions/{VERSION}"):
        r.add_get(prefix, status)
        r.add_get(prefix + "/metadata", metadata)
        r.add_post(prefix + ":predict", predict, expect_handler=expect_continue)
        r.add_post(prefix + ":classify", classify, expect_handler=expect_continue)
    r.add_get("/healthz", healthz)
    r.add_get("/metrics", metrics)
    r.add_get("/openapi.json", openapi)


async def status(request: web.Request) -> web.Response:
    model = requested_model(request)
    state = "UNLOADING" if request.app[CORE].draining else "AVAILABLE"
    return web.json_response(
        {
            "model_version_status": [
                {"version": str(model.version), "state": state, "status": {"error_code": "OK", "error_message": ""}}
            ]
        }
    )


def signature_def_json(model: ServedModel) -> dict[str, Any]:
    """The signatures as TF Serving's metadata JSON renders SignatureDefs."""
    h, w = model.fixed_size or (-1, -1)
    out = {}
    for name, sig in model.signatures.items():
        dim = model.output_dim(sig.output)
        out[name] = {
            "inputs": {
                INPUT: {
                    "dtype": "DT_FLOAT",
                    "tensor_shape": {
                        "dim": [
                            {"size": "-1", "name": ""},
                            {"size": str(h), "name": ""},
                            {"size": str(w), "name": ""},
                            {"size": "3", "name": ""},
                        ],
                        "unknown_rank": False,
                    },
                    "name": f"{INPUT}:0",
                }
            },
            "outputs": {
                sig.output_key: {
                    "dtype": "DT_FLOAT",
                    "tensor_shape": {
                        "dim": [{"size": "-1", "name": ""}, {"size": str(dim), "name": ""}],
                        "unknown_rank": False,
                    },
                    "name": f"{sig.output_key}:0",
                }
            },
            "method_name": "tensorflow/serving/predict",
            "defaults": {},
        }
    return out


async def metadata(request: web.Request) -> web.Response:
    model = requested_model(request)
    return web.json_response(
        {
            "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
            "metadata": {"signature_def": {"signature_def": signature_def_json(model)}},
        }
    )


async def predict(request: web.Request) -> web.Response:
    return await handle(request, _predict)


async def classify(request: web.Request) -> web.Response:
    return await handle(request, _classify)


#: A body's images once parsed: a float32 array, or the bytes of each encoded photo.
Images = np.ndarray | list[bytes]


async def _predict(request: web.Request, core: ServingCore, model: ServedModel) -> dict:
    """Read, parse (off the event loop), decode and run one :predict request."""
    parse = partial(parse_predict, max_images=core.limits.max_images)
    columnar, sig_name, images = await parsed_body(request, core, parse)
    sig = core.signature(model, sig_name)
    out = await core.run(model, sig, len(images), decoded(core, model, images))
    return {("outputs" if columnar else "predictions"): out.tolist()}


async def _classify(request: web.Request, core: ServingCore, model: ServedModel) -> dict:
    """One :classify request: label/score pairs from the logits and the model's labels."""
    parse = partial(parse_classify, max_images=core.limits.max_images)
    sig_name, images, top_k = await parsed_body(request, core, parse)
    sig = core.signature(model, sig_name)
    labels = model.module.labels
    if sig.output != LOGITS or not labels:
        raise InvalidArgument(
            f"signature {sig.name!r} of model {model.name} does not classify (it gives feature vectors); use :predict"
        )
    logits = await core.run(model, sig, len(images), decoded(core, model, images))
    z = np.exp(logits - logits.max(axis=1, keepdims=True))
    scores = z / z.sum(axis=1, keepdims=True)
    best = np.argsort(-scores, axis=1, kind="stable")[:, : min(top_k, scores.shape[1])]
    return {"result": [[[labels[i], float(row[i])] for i in order] for row, order in zip(scores, best, strict=True)]}


async def decoded(core: ServingCore, model: ServedModel, images: Images) -> np.ndarray:
    """The model input: encoded photos decoded and preprocessed (off the event loop), floats as they are."""
    return await core.decode(model, images) if isinstance(images, list) else images


#: Feature names a :classify example may hold its image under.
IMAGE_FEATURES = ("image", "images", "image/encoded")


def parse_classify(raw: bytes, max_images: int) -> tuple[str | None, Images, int]:
    """(signature_name, the examples' images, top_k) from a Classify request body."""
    body = json_object(raw, '"examples"')
    examples, context = body.get("examples"), body.get("context", {})
    if not isinstance(examples, list) or not isinstance(context, dict):
        raise InvalidArgument('"examples" must be a list of objects and "context" an object')
    top_k = body.get("top_k", 5)
    if not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1:
        raise InvalidArgument('"top_k" must be a positive integer')
    items = []
    for example in examples:
        features = {**context, **example} if isinstance(example, dict) else {}
        found = [k for k in IMAGE_FEATURES if k in features]
        if len(found) != 1:
            raise InvalidArgument(
                f"each example needs its image under exactly one of {', '.join(IMAGE_FEATURES)}: "
                '{"image": {"b64": "<JPEG or PNG, base64>"}}'
            )
        value = features[found[0]]
        items.append(value[0] if isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict) else value)
    return body.get("signature_name"), images_of(items, max_images, _may_hold_bools(raw)), top_k


def parse_predict(raw: bytes, max_images: int) -> tuple[bool, str | None, Images]:
    """(columnar?, signature_name, the images) from either request format."""
    body = json_object(raw, '"instances" or "inputs"')
    if ("instances" in body) == ("inputs" in body):
        raise InvalidArgument('the body must have exactly one of "instances" (row format) or "inputs" (columnar)')
    sig_name = body.get("signature_name")
    if "instances" in body:
        items = body["instances"]
        if not isinstance(items, list):
            raise InvalidArgument('"instances" must be a list')
        return False, sig_name, images_of([_unwrap(i) for i in items], max_images, _may_hold_bools(raw))
    inputs = body["inputs"]
    if isinstance(inputs, dict) and set(inputs) == {INPUT}:
        inputs = inputs[INPUT]
    if isinstance(inputs, dict) and set(inputs) == {"b64"}:
        inputs = [inputs]
    if not isinstance(inputs, list):
        raise InvalidArgument(f'"inputs" must be a list of images or {{"{INPUT}": [...]}}')
    return True, sig_name, images_of(inputs, max_images, _may_hold_bools(raw))


def _may_hold_bools(raw: bytes) -> bool:
    return b"true" in raw or b"false" in raw


def _unwrap(instance: Any) -> Any:
    if isinstance(instance, dict) and set(instance) == {INPUT}:
        return instance[INPUT]
    return instance


def images_of(items: list, max_images: int, bools: bool = True) -> Images:
    """The images of a request's entries: all `{"b64": ...}` (their bytes) or all float lists
    (`bools`: whether the body may hold true or false anywhere, which then are looked for)."""
    if not items:
        raise InvalidArgument("no images in the request")
    if _nesting(items) == 3 and len(items[0][0]) == 3:  # [H][W][3] where [N][H][W][3] belongs, not H images
        raise InvalidArgument(
            "the input is one image ([height][width][3]) without a batch dimension; send a list of images: "
            '{"inputs": [image]} or {"instances": [image]}'
        )
    if len(items) > max_images:
        raise TooLarge(f"a request holds at most {max_images} images, got {len(items)}")
    encoded = [isinstance(i, dict) and set(i) == {"b64"} and isinstance(i["b64"], str) for i in items]
    if all(encoded):
        return [ServingCore.b64(i["b64"]) for i in items]
    if any(encoded) or any(isinstance(i, dict) for i in items):
        raise InvalidArgument(f'each image must be a [H][W][3] list of floats, {{"b64": "..."}} or {{"{INPUT}": ...}}')
    return _floats(items, bools)


def _nesting(x: Any, most: int = 5) -> int:
    """How deeply lists nest, following first elements (cheap: never walks a whole image)."""
    depth = 0
    while isinstance(x, list) and x and depth < most:
        x, depth = x[0], depth + 1
    return depth if isinstance(x, (int, float)) else -1


def _floats(items: list, bools: bool) -> np.ndarray:
    try:
        x = np.asarray(items)
    except (ValueError, TypeError, OverflowError):
        x = np.empty(0, object)
    # numpy reads true/false among numbers as 1/0: images holding any of them are refused too.
    if x.dtype.kind not in "iuf" or bools and has_bool(items):
        raise InvalidArgument("images must be equally sized [H][W][3] lists of numbers")
    with np.errstate(over="ignore"):  # out-of-range numbers become inf and are refused as such
        return x.astype(np.float32, copy=False)


async def healthz(request: web.Request) -> web.Response:
    """200 while the server takes work; 503 while it drains, or while it would refuse any request
    (the bodies held fill the in-flight budget, or every model's queue is full)."""
    core: ServingCore = request.app[CORE]
    if core.draining:
        return web.json_response({"status": "draining"}, status=503)
    reason = core.busy()
    if reason is not None:
        return web.json_response({"status": "busy", "reason": reason, "models": sorted(core.models)}, status=503)
    return web.json_response({"status": "ok", "models": sorted(core.models)})


async def metrics(request: web.Request) -> web.Response:
    core: ServingCore = request.app[CORE]
    body = generate_latest(core.metrics.registry)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def openapi(request: web.Request) -> web.Response:
    text = resources.files("inception_hub").joinpath("serve/openapi.json").read_text()
    return web.Response(text=text, content_type="application/json")
