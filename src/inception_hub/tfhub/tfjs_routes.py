"""serve-hub's TF.js models, at tfhub.dev's own paths and Kaggle's `TfJs` spelling.

`tf.loadGraphModel(URL, {fromTFHub: true})` asks for `URL/model.json?tfjs-format=file`, then for
each weight shard beside it with the same query; `URL` itself is the model's page. Each model is
exported (`export --format tfjs`, version 3: any input size) on its first request and kept beside
the modules' .tar.gz files (`$INCEPTION_HUB_CACHE/hub/tfjs/`), keyed by handle and the weights it
was built from. The files are
served with `Access-Control-Allow-Origin: *`, as tfhub.dev's storage did, so that a page from any
origin can load them.
"""

from __future__ import annotations

import html
import re
import shutil
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from ..catalog import ModelSpec, signatures, tfjs_spec
from ..errors import InceptionHubError, WeightsUnavailableError
from ..export import export
from ..export.tfjs import shard_names
from ..weights import cache_lock
from ..weights.cache import TFJS

#: The files of a TF.js graph model, as TF.js names them in its requests.
FILE = re.compile(r"^(model\.json|group\d+-shard\d+of\d+\.bin)$")
TYPES = {".json": "application/json", ".bin": "application/octet-stream"}

_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


class Weights(Protocol):
    """What the module store tells about the weights a model is built from."""

    checkpoints: Mapping[str, str]
    root: Path

    def weights_digest(self, arch: str) -> str: ...


def tfjs_path(spec: ModelSpec) -> str:
    """tfhub.dev's path of the module's TF.js model, e.g.
    `google/tfjs-model/imagenet/inception_v1/classification/3/default/1`."""
    return f"google/tfjs-model/imagenet/{spec.arch}/{spec.kind}/{spec.version}/default/1"


def split(path: str) -> tuple[ModelSpec, str | None] | None:
    """The TF.js model and file (None: the model's page) a request path names, or None when it
    names no TF.js model."""
    parts = [p for p in path.strip("/").split("/") if p]
    name = parts[-1] if parts and FILE.match(parts[-1]) else None
    spec = tfjs_spec("/".join(parts[:-1] if name else parts))
    return (spec, name) if spec is not None else None


def model_folder(store: Weights, spec: ModelSpec) -> Path:
    """The TF.js export of `spec` on the store's weights, built once (per process, and across
    processes through the cache's lock; the export lands whole or not at all)."""
    out = store.root / TFJS / spec.handle / store.weights_digest(spec.arch)[:16]
    if (out / "model.json").is_file():
        return out
    with _guard:
        lock = _locks.setdefault(spec.handle, threading.Lock())
    with lock, cache_lock(f"hub-tfjs-{spec.arch}-{spec.kind}-{spec.version}"):
        if not (out / "model.json").is_file():
            export(spec, out, store.checkpoints.get(spec.arch), format="tfjs", progress=False)
    return out


def answer(handler, store: Weights, spec: ModelSpec, name: str | None, base: str) -> None:
    """Answer `handler`'s request for file `name` of `spec`'s TF.js model (None: its page)."""
    if name is None:
        return _send(handler, 200, "text/html; charset=utf-8", model_page(spec, base).encode())
    try:
        out = model_folder(store, spec)
    except WeightsUnavailableError as e:
        handler.log_error("%s", e)
        return _send(handler, 503, "text/plain; charset=utf-8", f"{str(e).split(chr(10), 1)[0]}\n".encode())
    except InceptionHubError as e:
        handler.log_error("%s", e)  # the details, paths included, are for the operator's log
        return _send(handler, 503, "text/plain; charset=utf-8", b"this model cannot be built; see the server log\n")
    if name != "model.json" and name not in set(shard_names(out)):
        return _send(handler, 404, "text/plain; charset=utf-8", f"{tfjs_path(spec)} has no file {name}\n".encode())
    path = out / name
    handler.send_response(200)
    handler.send_header("Content-Type", TYPES[path.suffix])
    handler.send_header("Content-Length", str(path.stat().st_size))
    handler.send_header("Access-Control-Allow-Origin", "*")
    handler.end_headers()
    with open(path, "rb") as f:
        shutil.copyfileobj(f, handler.wfile)


def model_page(spec: ModelSpec, base: str) -> str:
    """The HTML page of a TF.js model: what it takes and gives, and the code that loads it."""
    url = f"{base}/{tfjs_path(spec)}"
    h, w = spec.image_size
    output = signatures(spec.kind)["serving_default"].output
    title = html.escape(tfjs_path(spec))
    usage = (
        'import * as tf from "@tensorflow/tfjs";\n'
        f'const model = await tf.loadGraphModel("{url}", {{fromTFHub: true}});\n'
        f"const images = tf.zeros([1, {h}, {w}, 3]);  // RGB in [0, 1]\n"
        f"const {'logits' if output == 'logits' else 'features'} = model.predict(images);"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body>
<h1>{title}</h1>
<p>The TF.js graph model of <a href="/{spec.handle}">{html.escape(spec.handle)}</a> ({spec.card.architecture.name}):
input <code>images</code>, float32 RGB <code>[batch, height, width, 3]</code> in [0, 1], any size (trained at
{h}x{w}); output <code>{output}</code>.</p>
<pre>{html.escape(usage)}</pre>
<p>Files: <a href="{html.escape(url)}/model.json?tfjs-format=file">model.json</a> and the weight shards it names.</p>
</body></html>
"""


def _send(handler, code: int, ctype: str, body: bytes) -> None:
    handler.send_response(code)
    handler.send_header("Content-Type", ctype)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
