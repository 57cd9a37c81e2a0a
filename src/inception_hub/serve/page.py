"""The model page: `GET /` and `GET /models/{name}` on the REST port.

Drop or choose a photo and see what a served model says: the top-5 labels with bars for a
classifier, the vector's size and first values for a feature-vector model. The page is plain
HTML, CSS and JavaScript shipped in the package (`serve/web/`), with no build step and nothing
fetched from elsewhere, so it works offline. It calls the server's own REST API (`:classify`,
`:predict`, and `/models/{name}/similar` when the server has an index), so every request from it
meets the same body, pixel and time limits as any other.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

from aiohttp import web

from ..similar.index import Index
from .core import NotFound, ServingCore
from .http import CORE, INDEX, MATCHING
from .models import FEATURE_MAP, ServedModel

#: Files under /static/ (nothing else is served from the package).
STATIC = {"page.js": "text/javascript", "page.css": "text/css"}
#: The page loads only its own files; the photo preview is a data: URL.
CSP = "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"


def add_routes(app: web.Application) -> None:
    """The page at / and /models/{name}, and its files under /static/."""

    async def page(request: web.Request) -> web.Response:
        core: ServingCore = request.app[CORE]
        name = request.match_info.get("name")
        if name is not None and name not in core.models:
            known = ", ".join(sorted(core.models))
            raise NotFound(f"no model named {name!r} on this server; it serves {known}")
        page = render(core, name, request.app.get(INDEX), request.app.get(MATCHING, frozenset()))
        return web.Response(text=page, content_type="text/html", headers={"Content-Security-Policy": CSP})

    async def static(request: web.Request) -> web.Response:
        file = request.match_info["file"]
        if file not in STATIC:
            raise NotFound(f"no file {file!r} under /static/")
        return web.Response(body=_read(file).encode(), content_type=STATIC[file], headers={"Cache-Control": "no-cache"})

    app.router.add_get("/", page)
    app.router.add_get("/models/{name:[^/:]+}", page)
    app.router.add_get("/static/{file}", static)


@cache
def _read(file: str) -> str:
    return resources.files("inception_hub").joinpath("serve/web", file).read_text(encoding="utf-8")


def describe(model: ServedModel) -> dict:
    """What the page shows about a model and how it asks it (classify or predict)."""
    labels = model.module.labels
    return {
        "name": model.name,
        "handle": model.module.handle,
        "classifies": bool(labels),
        "explains": FEATURE_MAP in model.compute,
        "classes": len(labels) if labels else 0,
        "dim": model.output_dim("feature_vector"),
        "size": list(model.image_size),
        "any_size": model.fixed_size is None,
        "weights": model.weights,
    }


def render(core: ServingCore, selected: str | None, index: Index | None = None, matching=frozenset()) -> str:
    names = sorted(core.models)
    similar = None
    if index is not None:
        similar = {"count": len(index), "handle": index.model.get("handle"), "models": sorted(matching)}
    config = {
        "index": similar,
        "models": [describe(core.model(n)) for n in names],
        "selected": selected or (names[0] if names else None),
        "max_body_bytes": core.limits.max_body_bytes,
        "max_pixels": core.limits.max_pixels,
    }
    # "<" escaped: the JSON sits in a <script> element, which a "</script>" in a name would end.
    blob = json.dumps(config).replace("<", "\\u003c")
    return _read("index.html").replace("{{CONFIG}}", blob)
