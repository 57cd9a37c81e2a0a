"""Similar photos on the server (`serve --index INDEX`), for the model page.

- `POST /models/{name}/similar` `{"b64": "<JPEG or PNG>", "k": 10}`: the k indexed photos most
  similar to the photo, by the model's feature vector, answered with their file names, cosine
  similarities and thumbnail addresses. Only models whose features the index holds (the same
  network and weights) answer; the request goes through the same admission, limits, queue and
  deadline as `:predict`.
- `GET /index/thumbnails/{i}`: a small JPEG of indexed photo i (by position, so nothing outside
  the index can be asked for).

Nothing heavy runs on the request path: the server prepares the index (`Index.prepare`, the
search graph of a large index) before it listens, and `Index.load` refuses vectors that are not
finite, so answers stay valid JSON.
"""

from __future__ import annotations

import asyncio
import io
import math
import os

from aiohttp import web
from PIL import Image

from ..errors import ImageDecodeError
from ..images import decode_image
from ..similar.index import Index
from .core import InvalidArgument, NotFound, ServingCore
from .http import CORE, INDEX, MATCHING, expect_continue, handle, json_object, parsed_body
from .models import FEATURES, ServedModel

MAX_K = 50
THUMB = 192


def matching_models(index: Index, core: ServingCore) -> frozenset[str]:
    """Names of the served models that compute the features the index holds."""
    want = (index.model.get("architecture"), index.model.get("weights"))
    return frozenset(name for name, m in core.models.items() if (m.module.spec.arch, m.module.identity()) == want)


def add_routes(app: web.Application, index: Index) -> None:
    """The similar-photo search and the thumbnails of `index` (after the app's core is set)."""
    app[INDEX] = index
    app[MATCHING] = matching_models(index, app[CORE])

    async def answer(request: web.Request, core: ServingCore, model: ServedModel) -> dict:
        if model.name not in request.app[MATCHING]:
            raise InvalidArgument(
                f"the index holds features of {index.model.get('handle')}; model {model.name} computes others: "
                f"ask one of {', '.join(sorted(request.app[MATCHING]))}"
            )
        photo, k = await parsed_body(request, core, parse_similar)
        sig = next(s for s in model.signatures.values() if s.output == FEATURES)
        vector = await core.run(model, sig, 1, core.decode(model, [photo]))
        loop = asyncio.get_running_loop()
        hits = (await loop.run_in_executor(core.decoding, index.query, vector, k))[0]
        return {
            "neighbours": [
                {
                    "rank": rank,
                    "name": os.path.basename(h.path),
                    "similarity": h.score,
                    "thumbnail": f"/index/thumbnails/{h.index}",
                }
                for rank, h in enumerate((h for h in hits if math.isfinite(h.score)), 1)
            ]
        }

    async def similar(request: web.Request) -> web.Response:
        return await handle(request, answer)

    async def thumbnail(request: web.Request) -> web.Response:
        i = int(request.match_info["i"])
        if i >= len(index):
            raise NotFound(f"the index holds {len(index)} photos; there is no photo {i}")
        core: ServingCore = request.app[CORE]
        data = await asyncio.get_running_loop().run_in_executor(core.decoding, _thumbnail, index.paths[i], core)
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    app.router.add_post("/models/{name:[^/:]+}/similar", similar, expect_handler=expect_continue)
    app.router.add_get("/index/thumbnails/{i:[0-9]{1,12}}", thumbnail)


def parse_similar(raw: bytes) -> tuple[bytes, int]:
    """(the photo's bytes, k) from a similar request body."""
    body = json_object(raw, '"b64"')
    b64, k = body.get("b64"), body.get("k", 10)
    if not isinstance(b64, str):
        raise InvalidArgument('the body must hold the photo as {"b64": "<JPEG or PNG, base64>"}')
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= MAX_K:
        raise InvalidArgument(f'"k" must be an integer from 1 to {MAX_K}')
    return ServingCore.b64(b64), k


def _thumbnail(path: str, core: ServingCore) -> bytes:
    name = os.path.basename(path)
    try:
        image = Image.fromarray(decode_image(path, max_pixels=core.limits.max_pixels))
    except ImageDecodeError as e:  # its reason only: the message names no folder of the server
        raise NotFound(f"indexed photo {name} cannot be read now: {e.reason.replace(path, name)}") from None
    except OSError as e:
        raise NotFound(f"indexed photo {name} cannot be read now: {e.strerror or type(e).__name__}") from None
    image.thumbnail((THUMB, THUMB))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()
