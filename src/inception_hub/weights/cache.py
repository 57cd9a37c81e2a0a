"""The cache's layout, what it holds, and removing it (`inception-hub cache`): the one place
that names its folders.

The cache (`$INCEPTION_HUB_CACHE`, default `~/.cache/inception_hub`) has the converted weights
with their provenance (`weights/`), the release downloads (`downloads/`), the engine models
(`engines/`, with ONNX Runtime's optimised graphs and OpenVINO's compiled models) and the hub
modules and TF.js models (`hub/`) built from weights (named by the weights' digest),
scratch space (`tmp/`) and cross-process locks (`locks/`). Everything derived from weights that
are no longer cached is an orphan, which `clean` removes along with what killed runs left."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_file
from ..catalog import CARDS
from ..errors import InceptionHubError

#: The folders `inception-hub cache` lists, in its order.
KINDS = ("weights", "downloads", "engines", "hub", "tmp")
LOCKS = "locks"
#: Beside each architecture's engine models: ONNX Runtime's optimised graphs and OpenVINO's
#: compiled models. Under hub/: serve-hub's TF.js models.
ORT_GRAPHS, OPENVINO_COMPILED, TFJS = "onnxruntime_cache", "openvino_cache", "tfjs"


def folder(kind: str) -> Path:
    """The cache's folder for one kind of entry (one of KINDS, or LOCKS)."""
    if kind not in (*KINDS, LOCKS):
        raise ValueError(f"no cache folder {kind!r}")
    return cache_dir() / kind


def cache_dir() -> Path:
    """`$INCEPTION_HUB_CACHE`, else `~/.cache/inception_hub`."""
    return Path(os.environ.get("INCEPTION_HUB_CACHE") or Path.home() / ".cache" / "inception_hub")


def cached_path(arch: str) -> Path:
    return folder("weights") / arch / (CARDS[arch].checkpoint.stem + ".npz")


def download_path(arch: str) -> Path:
    return folder("downloads") / CARDS[arch].checkpoint.tarball


def is_cached(arch: str) -> bool:
    return cached_path(arch).is_file()


#: A temporary file or folder untouched this long belongs to a run that died (kill -9, power loss).
STALE_SECONDS = 3600


@functools.cache
def clean_once(root: str) -> None:
    """`clean_stale`, once per process and cache: not a walk of the cache on every load."""
    clean_stale(Path(root))


def clean_stale(root: Path | None = None, now: float | None = None) -> list[Path]:
    """Remove what killed runs left in the cache: atomic writes' `.*.tmp` files and staging
    folders, and extraction scratch folders, untouched for STALE_SECONDS. Returns them."""
    root = root or cache_dir()
    now = now if now is not None else time.time()
    removed = []
    if not root.is_dir():
        return removed
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        stale = [here / f for f in filenames if f.startswith(".") and f.endswith(".tmp")]
        stale += [here / d for d in dirnames if (d.startswith(".") and "." in d[1:]) or here.name == "tmp"]
        for p in stale:
            try:
                if now - p.lstat().st_mtime < STALE_SECONDS:
                    continue
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
                removed.append(p)
            except OSError:  # gone already, or another process's: leave it
                continue
    return removed


@contextlib.contextmanager
def cache_lock(arch: str) -> Iterator[None]:
    """Serialize downloads and conversions of one model across processes."""
    lock = folder(LOCKS) / f"{arch}.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


CHECKPOINTS_FILE = "checkpoints.json"


def record_checkpoint(digest: str, checkpoint: str) -> None:
    """Note that files in the cache were derived from the weights of `checkpoint` (a file
    outside it), so `cache --clean` keeps them while that file exists."""
    known = recorded_checkpoints()
    if known.get(digest[:16]) == checkpoint:
        return
    known[digest[:16]] = checkpoint
    try:
        with atomic_file(cache_dir() / CHECKPOINTS_FILE) as f:
            f.write((json.dumps(known, indent=1) + "\n").encode())
    except OSError:
        pass  # a read-only cache keeps nothing derived either


def recorded_checkpoints() -> dict[str, str]:
    """Digest prefix -> the checkpoint file outside the cache that derived files came from."""
    try:
        known = json.loads((cache_dir() / CHECKPOINTS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {k: v for k, v in known.items() if isinstance(k, str) and isinstance(v, str)}


def provenance_path(weights_file: Path) -> Path:
    return weights_file.with_suffix(".json")


def provenance(arch: str) -> dict | None:
    """Where the cached weights of `arch` came from: `origin` ("release": the official tarball,
    downloaded or placed in the downloads folder; "imported": `fetch --from`), `source`,
    `file_sha256` and `weights_digest`; None when nothing is cached or nothing was recorded."""
    path = provenance_path(cached_path(arch))
    try:
        return json.loads(path.read_text()) if cached_path(arch).is_file() else None
    except (OSError, ValueError):
        return None


#: What `cache` says of entries derived from weights that are no longer cached (`clean` removes them).
ORPHAN = "orphan: its weights are gone"


@dataclass(frozen=True)
class Entry:
    kind: str  # one of KINDS
    path: Path
    bytes: int
    what: str = ""  # where the kind alone does not say
    orphan: bool = False

    @property
    def note(self) -> str:
        return "; ".join(n for n in (self.what, ORPHAN if self.orphan else "") if n)


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def _digests() -> set[str]:
    """Digest prefixes of the weights derived files may still come from, as they are named: the
    cached weights, and checkpoints outside the cache (`--checkpoint`) that still exist."""
    cached = {p["weights_digest"][:16] for arch in CARDS if (p := provenance(arch)) and p.get("weights_digest")}
    return cached | {d for d, path in recorded_checkpoints().items() if Path(path).exists()}


def entries() -> list[Entry]:
    """Everything in the cache, with its size and what it is."""
    live = _digests()
    out = []
    for arch in CARDS:
        path = cached_path(arch)
        if path.is_file():
            p = provenance(arch) or {}
            note = {"release": "official release", "imported": f"imported from {p.get('source')}"}.get(
                p.get("origin", ""), "origin not recorded"
            )
            out.append(Entry("weights", path, _size(path), f"{arch}: {note}"))
    for path in _listing("downloads", "*"):
        out.append(Entry("downloads", path, _size(path)))
    for path in _listing("engines", "*/*.onnx"):
        out.append(Entry("engines", path, _size(path), orphan=not _named_by(path.name, live)))
    for path in _listing("engines", f"*/{ORT_GRAPHS}/*.onnx"):
        what = "ONNX Runtime's optimised graph"
        out.append(Entry("engines", path, _size(path), what, orphan=not _named_by(path.name, live)))
    for path in _listing("engines", f"*/{OPENVINO_COMPILED}"):
        out.append(Entry("engines", path, _size(path), "OpenVINO's compiled models, rebuilt when needed"))
    for path in _listing("hub", "**/*.tar.gz"):
        out.append(Entry("hub", path, _size(path), orphan=path.name[:16] not in live))
    for path in (m.parent for m in _listing("hub", f"{TFJS}/**/model.json")):
        out.append(Entry("hub", path, _size(path), "TF.js model", orphan=path.name not in live))
    out.extend(Entry("tmp", p, _size(p)) for p in _listing("tmp", "*"))
    return out


def _named_by(name: str, digests: set[str]) -> bool:
    return any(d in name for d in digests)


def _listing(kind: str, pattern: str) -> list[Path]:
    root = folder(kind)
    return sorted(root.glob(pattern)) if root.is_dir() else []


def remove(what: str) -> list[Path]:
    """Remove an architecture's weights (with its download), one kind of entry, or "all"."""
    root = cache_dir()
    if what == "all":
        targets = [folder(k) for k in KINDS] + [root / CHECKPOINTS_FILE]
    elif what in CARDS:
        weights = cached_path(what)
        targets = [weights, provenance_path(weights), download_path(what)]
    elif what in KINDS:
        targets = [folder(what)]
    else:
        raise InceptionHubError(f"nothing called {what!r} to remove; use an architecture, {', '.join(KINDS)} or all")
    return [_delete(p) for p in targets if p.exists()]


def clean() -> list[Path]:
    """Remove orphans (engine models and hub modules of weights no longer cached), downloads
    already converted, and what killed runs left behind."""
    removed = clean_stale()
    for e in entries():
        converted = e.kind == "downloads" and any(e.path == download_path(a) and is_cached(a) for a in CARDS)
        if e.orphan or converted:
            removed.append(_delete(e.path))
    return removed


def _delete(path: Path) -> Path:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
    return path


def human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)
