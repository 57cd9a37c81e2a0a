"""Class activation maps on the server, for the model page.

`POST /models/{name}/explain` `{"b64": "<JPEG or PNG>", "class": 285}` ("class" optional: the
top class by default): where in the photo the model finds the class, as `inception_hub.cam`
computes it from the final end point (Grad-CAM's map, no gradient needed). The answer holds the
map (rows of values in [0, 1] over the central crop the network sees, `central_fraction` of
each side), the class and its label, and the top 5. Only classifiers served from their
checkpoint answer; the request goes through the same admission, limits, queue and deadline as
`:classify`.
"""

from __future__ import annotations

import asyncio
from functools import partial

from aiohttp import web

from ..cam import from_feature_map
from ..errors import InputError
from .core import InvalidArgument, ServingCore
from .http import expect_continue, handle, json_object, parsed_body
from .models import FEATURE_MAP, ServedModel, Signature

MAPS = Signature("feature_map", FEATURE_MAP, FEATURE_MAP)  # internal: no published signature


def add_routes(app: web.Application) -> None:
    """POST /models/{name}/explain."""

    async def answer(request: web.Request, core: ServingCore, model: ServedModel) -> dict:
        if FEATURE_MAP not in model.compute:
            raise InvalidArgument(
                f"model {model.name} has no class activation map: only ImageNet classifiers served from "
                "their checkpoint have one (not feature vectors or exported files)"
            )
        labels = model.module.labels
        photo, class_index = await parsed_body(request, core, partial(parse_explain, classes=len(labels)))
        feature_map = await core.run(model, MAPS, 1, core.decode(model, [photo]))
        weights, biases = model.module.head()
        loop = asyncio.get_running_loop()
        try:
            e = await loop.run_in_executor(
                core.decoding, from_feature_map, feature_map[0], weights, biases, class_index, labels
            )
        except InputError as err:  # a class out of range
            raise InvalidArgument(str(err)) from None
        return {
            "class": e.class_index,
            "label": labels[e.class_index],
            "heatmap": e.heatmap.round(4).tolist(),
            "central_fraction": model.module.spec.card.central_fraction,  # what the decoder applied
            "predictions": [{"class": p.index, "label": p.label, "score": p.score} for p in e.predictions],
        }

    async def explain(request: web.Request) -> web.Response:
        return await handle(request, answer)

    app.router.add_post("/models/{name:[^/:]+}/explain", explain, expect_handler=expect_continue)


def parse_explain(raw: bytes, classes: int) -> tuple[bytes, int | None]:
    """(the photo's bytes, the class asked for or None) from an explain request body."""
    body = json_object(raw, '"b64"')
    b64, class_index = body.get("b64"), body.get("class")
    if not isinstance(b64, str):
        raise InvalidArgument('the body must hold the photo as {"b64": "<JPEG or PNG, base64>"}')
    if class_index is not None and (not isinstance(class_index, int) or isinstance(class_index, bool)):
        raise InvalidArgument(f'"class" must be a class index from 0 to {classes - 1}')
    return ServingCore.b64(b64), class_index
