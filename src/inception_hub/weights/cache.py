"""What the cache holds, and removing it: `inception-hub cache`.

The cache (`$INCEPTION_HUB_CACHE`, default `~/.cache/inception_hub`) has the converted weights
with their provenance, the release downloads, the engine models and the hub modules built from
weights (named by the weights' digest), and scratch space. Everything derived from weights that
are no longer cached is an orphan, which `clean` removes along with what killed runs left."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ..catalog import CARDS
from ..errors import InceptionHubError
from .store import (
    CHECKPOINTS_FILE,
    cache_dir,
    cached_path,
    clean_stale,
    provenance,
    provenance_path,
    recorded_checkpoints,
)

KINDS = ("weights", "downloads", "engines", "hub", "tmp")


@dataclass(frozen=True)
class Entry:
    kind: str  # one of KINDS
    path: Path
    bytes: int
    note: str = ""


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
    root, live = cache_dir(), _digests()
    out = []
    for arch in CARDS:
        path = cached_path(arch)
        if path.is_file():
            p = provenance(arch) or {}
            note = {"release": "official release", "imported": f"imported from {p.get('source')}"}.get(
                p.get("origin", ""), "origin not recorded"
            )
            out.append(Entry("weights", path, _size(path), f"{arch}: {note}"))
    for path in sorted((root / "downloads").glob("*")) if (root / "downloads").is_dir() else []:
        out.append(Entry("downloads", path, _size(path)))
    for path in sorted((root / "engines").glob("*/*.onnx")) if (root / "engines").is_dir() else []:
        orphan = not any(d in path.name for d in live)
        out.append(Entry("engines", path, _size(path), "orphan: its weights are gone" if orphan else ""))
    for path in sorted((root / "hub").rglob("*.tar.gz")) if (root / "hub").is_dir() else []:
        orphan = path.name[:16] not in live
        out.append(Entry("hub", path, _size(path), "orphan: its weights are gone" if orphan else ""))
    if (root / "tmp").is_dir():
        out.extend(Entry("tmp", p, _size(p)) for p in sorted((root / "tmp").iterdir()))
    return out


def remove(what: str) -> list[Path]:
    """Remove an architecture's weights (with its download), one kind of entry, or "all"."""
    root = cache_dir()
    if what == "all":
        targets = [root / k for k in KINDS] + [root / "weights", root / CHECKPOINTS_FILE]
    elif what in CARDS:
        weights = cached_path(what)
        targets = [weights, provenance_path(weights), root / "downloads" / CARDS[what].checkpoint.tarball]
    elif what in KINDS:
        targets = [root / what]
    else:
        raise InceptionHubError(f"nothing called {what!r} to remove; use an architecture, {', '.join(KINDS)} or all")
    return [_delete(p) for p in targets if p.exists()]


def clean() -> list[Path]:
    """Remove orphans (engine models and hub modules of weights no longer cached), downloads
    already converted, and what killed runs left behind."""
    removed = clean_stale()
    for e in entries():
        converted = e.kind == "downloads" and any(
            e.path.name == c.checkpoint.tarball and cached_path(a).is_file() for a, c in CARDS.items()
        )
        if e.note.startswith("orphan") or converted:
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
