"""A local tfhub.dev: serves the modules so that unchanged `hub.KerasLayer(url)` code works.

`GET /<handle>?tf-hub-format=compressed` answers with the module as a .tar.gz, which is what
tensorflow_hub's HTTP resolver asks for; `GET /<handle>` is the model's HTML page; `GET /` lists
the modules. A module is exported on its first request and kept in `$INCEPTION_HUB_CACHE/hub/`,
keyed by handle and the weights it was built from. The TF.js models are served at tfhub.dev's
paths too (`tfhub/tfjs_routes.py`).
"""

from __future__ import annotations

import html
import http.server
import os
import shutil
import socket
import tarfile
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from ..catalog import CHANGELOG, NUM_CLASSES, ModelSpec, all_specs, resolve_published, signatures
from ..errors import InceptionHubError, UnknownHandleError, WeightsUnavailableError
from ..export import export
from ..weights import cache_lock, fetch, folder, is_cached, load_weights, provenance, record_checkpoint
from . import tfjs_routes


class ModuleStore:
    """Builds each module once (per weights) and keeps its .tar.gz; safe across threads and processes."""

    def __init__(
        self, checkpoints: Mapping[str, str] | None = None, root: Path | None = None, allow_download: bool = False
    ) -> None:
        self.checkpoints = dict(checkpoints or {})
        self.allow_download = allow_download
        self.root = root or folder("hub")
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._digests: dict[tuple, str] = {}

    def official(self, arch: str) -> bool:
        """Whether `arch`'s modules come from the official release (as far as it is recorded)."""
        return arch not in self.checkpoints and (provenance(arch) or {}).get("origin", "release") == "release"

    def weights_digest(self, arch: str) -> str:
        """The digest of the weights `arch`'s modules are built from (an explicit checkpoint, or
        the cached release), read once per weights file while this store lives."""
        if arch not in self.checkpoints and not is_cached(arch) and not self.allow_download:
            # An anonymous request must not start a download of hundreds of megabytes.
            raise WeightsUnavailableError(
                f"the {arch} weights are not cached on this server; its operator can run "
                f"`inception-hub fetch {arch}`, or start serve-hub with --allow-download"
            )
        path = Path(self.checkpoints[arch]).resolve() if arch in self.checkpoints else fetch(arch, progress=False)
        stat = path.stat() if path.exists() else None
        key = (arch, str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None)
        if key not in self._digests:
            self._digests[key] = load_weights(arch, self.checkpoints.get(arch), progress=False).digest
        return self._digests[key]

    def tarball(self, spec: ModelSpec) -> Path:
        out = self.root / spec.handle / f"{self.weights_digest(spec.arch)[:16]}.tar.gz"
        if out.is_file():
            return out
        with self._guard:
            lock = self._locks.setdefault(spec.handle, threading.Lock())
        with lock, cache_lock(f"hub-{spec.arch}-{spec.kind}-{spec.version}"):
            if out.is_file():  # built by another thread or process meanwhile
                return out
            out.parent.mkdir(parents=True, exist_ok=True)
            # Built in the cache's scratch folder, whose leftovers `cache --clean` and start-up
            # cleaning remove once stale: a server killed mid-build leaves nothing for good.
            scratch = folder("tmp")
            scratch.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix="hub-module.", dir=scratch) as tmp:
                checkpoint = self.checkpoints.get(spec.arch)
                moddir = export(spec, Path(tmp) / "module", checkpoint, progress=False)
                part = Path(tmp) / "module.tar.gz"
                with tarfile.open(part, "w:gz") as tar:
                    for item in sorted(moddir.iterdir()):
                        tar.add(item, arcname=item.name)
                os.replace(part, out)
            if checkpoint is not None:
                record_checkpoint(self.weights_digest(spec.arch), str(Path(checkpoint).resolve()))
        return out


def model_page(spec: ModelSpec, base_url: str, official: bool = True) -> str:
    """The HTML page of one module: overview, contract, provenance, usage, changelog."""
    card = spec.card
    arch = card.architecture
    h, w = spec.image_size
    url = f"{base_url}/{spec.handle}"
    paper, paper_url = card.paper
    ckpt = card.checkpoint
    output = (
        f"logits <code>[batch, {NUM_CLASSES}]</code>: class 0 is \u201cbackground\u201d, then the 1000 ILSVRC-2012 "
        "classes in wnid order"
        if spec.kind == "classification"
        else f"feature vector <code>[batch, {arch.num_features}]</code>: the global average pool before the logits"
    )
    size = f"{h}x{w} exactly" if not spec.variable_size else f"any size; trained at {h}x{w}"
    if spec.hub_format == "tf1_hub":
        usage = (
            f'm = hub.load("{url}", tags=[])\n'
            # The signature after "default": image_classification, or image_feature_vector.
            f'out = m.signatures["{list(signatures(spec.kind, tf1=True))[1]}"](images=images)["default"]'
        )
    else:
        usage = (
            f'layer = hub.KerasLayer("{url}", trainable=False)\n'
            "model = tf_keras.Sequential([layer])\n"
            f"model.build([None, {h}, {w}, 3])\n"
            "out = model(images)"
        )
    changes = "".join(
        f"<li><b>{v}</b>: {html.escape(text)}{' (this version)' if v == spec.version else ''}</li>"
        for v, text in CHANGELOG.items()
        if v <= spec.version
    )
    title = html.escape(spec.handle)
    weights = (
        f'the TF-Slim checkpoint <a href="{ckpt.url}">{ckpt.tarball}</a>'
        if official
        else f"weights this server was given, <b>not</b> the official release {ckpt.tarball}"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;max-width:50em;margin:2em auto;line-height:1.4}}
code,pre{{background:#f4f4f4;padding:.1em .3em}}pre{{padding:.8em}}</style></head>
<body>
<h1>{title}</h1>
<h2>Overview</h2>
<p>{"Image classification" if spec.num_classes else "Image feature vector"} with {arch.name}
(TF-Slim <code>{arch.scope}</code>), trained on ImageNet (ILSVRC-2012). Format:
{"TF1 Hub module" if spec.hub_format == "tf1_hub" else "TF2 reusable SavedModel"}.</p>
<h2>Inputs and outputs</h2>
<ul><li>Input: float32 RGB <code>[batch, height, width, 3]</code> with values in [0, 1]
({size}); the module maps them to [-1, 1] itself.</li>
<li>Output: {output}.</li></ul>
<h2>Provenance</h2>
<p>Rebuilt by inception-hub from {weights}, the network defined as in TF-Slim and checked against the
TF-Slim graphs' outputs. Paper: <a href="{paper_url}">{html.escape(paper)}</a>.</p>
<h2>Usage</h2>
<pre>import tensorflow_hub as hub
import tf_keras
{html.escape(usage)}</pre>
<p>Download: <a href="{html.escape(url)}?tf-hub-format=compressed">{title}.tar.gz</a></p>
<h2>Changelog</h2>
<ul>{changes}</ul>
</body></html>
"""


def index_page(base_url: str) -> str:
    rows = "".join(f'<li><a href="/{s.handle}">{html.escape(s.handle)}</a></li>' for s in all_specs())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>inception-hub</title></head>'
        f"<body><h1>inception-hub modules</h1><ul>{rows}</ul></body></html>"
    )


def base_url(host: str, port: int) -> str:
    """The address links point at: the one the server listens on (this machine's name where it
    listens on every address), never the Host a client sent, which is the client's to choose."""
    if host in ("", "0.0.0.0", "::"):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _public(e: WeightsUnavailableError) -> str:
    """What a client may read: the first sentence of the message, without local paths."""
    return str(e).split("\n", 1)[0]


class HubRequestHandler(http.server.BaseHTTPRequestHandler):
    store: ModuleStore
    server_version = "inception-hub"
    #: Seconds a connection may sit idle before its thread lets it go.
    timeout = 30

    def do_GET(self) -> None:  # noqa: N802
        parsed = urllib.parse.urlsplit(self.path)
        handle = parsed.path.strip("/")
        query = urllib.parse.parse_qs(parsed.query)
        base = self.server.public_url or base_url(*self.server.server_address[:2])
        if handle == "":
            return self._send(200, "text/html; charset=utf-8", index_page(base).encode())
        tfjs = tfjs_routes.split(urllib.parse.unquote(handle))
        if tfjs is not None:  # a TF.js model: its page, model.json or a weight shard
            return tfjs_routes.answer(self, self.store, *tfjs, base)
        try:  # any published spelling: feature-vector, a trailing slash, a Kaggle Models path
            spec = resolve_published(urllib.parse.unquote(handle))
        except UnknownHandleError as e:
            return self._send(404, "text/plain; charset=utf-8", f"{e}\n".encode())
        if spec is None:
            return self._send(404, "text/plain; charset=utf-8", f"no module {handle!r} here; see /\n".encode())
        if query.get("tf-hub-format") == ["compressed"]:
            try:
                path = self.store.tarball(spec)
            except WeightsUnavailableError as e:
                self.log_error("%s", e)
                return self._send(503, "text/plain; charset=utf-8", f"{_public(e)}\n".encode())
            except InceptionHubError as e:
                self.log_error("%s", e)  # the details, paths included, are for the operator's log
                return self._send(
                    503, "text/plain; charset=utf-8", b"this module cannot be built; see the server log\n"
                )
            return self._send_file(path)
        page = model_page(spec, base, official=self.store.official(spec.arch))
        return self._send(200, "text/html; charset=utf-8", page.encode())

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_file(self, path: Path) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        self.send_header("Content-Length", str(path.stat().st_size))
        self.end_headers()
        with open(path, "rb") as f:
            shutil.copyfileobj(f, self.wfile)

    def log_message(self, fmt: str, *args) -> None:
        if not getattr(self.server, "quiet", False):
            super().log_message(fmt, *args)


class _Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128  # the listen backlog (socketserver's default is 5)


def make_server(
    host: str,
    port: int,
    store: ModuleStore,
    quiet: bool = False,
    idle_timeout: float = 30.0,
    public_url: str | None = None,
) -> http.server.ThreadingHTTPServer:
    """A server of the modules on `host:port`. Its pages link to `public_url` (e.g. the address
    of a proxy in front of it) when given, else to the address it listens on."""
    handler = type("Handler", (HubRequestHandler,), {"store": store, "timeout": idle_timeout})
    server = _Server((host, port), handler)
    server.daemon_threads = True
    server.quiet = quiet
    server.public_url = public_url.rstrip("/") if public_url else None
    return server
