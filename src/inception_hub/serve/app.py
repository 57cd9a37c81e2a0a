"""The REST port's aiohttp application: every route module's routes on one app.

This is the one module that knows all the routes; the route modules know only `http`.
"""

from __future__ import annotations

from aiohttp import web

from ..similar.index import Index
from . import explain, page, rest, similar, v2_rest
from .core import ServingCore
from .http import CORE, errors_as_json


def make_app(core: ServingCore, index: Index | None = None) -> web.Application:
    """TF Serving's API, the Open Inference Protocol's, the model page and class activation maps, and
    with `index` the similar-photo search."""
    app = web.Application(client_max_size=core.limits.max_body_bytes, middlewares=[errors_as_json])
    app[CORE] = core
    rest.add_routes(app)
    v2_rest.add_routes(app)
    page.add_routes(app)
    explain.add_routes(app)
    if index is not None:
        similar.add_routes(app, index)
    return app
