"""Which weights a checkpoint holds, known without reading it: so a cached engine model is found
(it is named by the weights' digest) with no checkpoint read or hashed.

The cached weights' digest is in their provenance record. For a checkpoint file outside the
cache (`--checkpoint`), `remember` notes in `engines/sources.json` its files' names, sizes and
modification times with the digest, when an engine model is found or built from it; `known_digest`
gives the digest back while those files are unchanged.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_file
from ..weights import folder, provenance

FILE = "sources.json"
#: A checkpoint folder with more files than this is not fingerprinted (it is read each time).
MAX_FILES = 64


def fingerprint(checkpoint: str | os.PathLike) -> list[list] | None:
    """(name, size, mtime_ns) of the files a checkpoint is made of: the file, a folder's files, or a
    V2 prefix's `.index` and `.data-*`; None where there is nothing to stat."""
    p = Path(checkpoint)
    try:
        if p.is_file():
            files = [p]
        elif p.is_dir():
            files = sorted(f for f in p.iterdir() if f.is_file())
        else:
            files = sorted(f for f in p.parent.iterdir() if f.name.startswith(p.name + ".") and f.is_file())
        if not files or len(files) > MAX_FILES:
            return None
        return [[f.name, (s := f.stat()).st_size, s.st_mtime_ns] for f in files]
    except OSError:
        return None


def _path() -> Path:
    return folder("engines") / FILE


def _read() -> dict[str, Any]:
    try:
        known = json.loads(_path().read_text())
    except (OSError, ValueError):
        return {}
    return known if isinstance(known, dict) else {}


def known_digest(arch: str, checkpoint: str | os.PathLike | None) -> str | None:
    """The digest of the weights `checkpoint` holds (None: the cached weights of `arch`), when
    recorded and unchanged since; else None, and the weights must be read."""
    if checkpoint is None:
        digest = (provenance(arch) or {}).get("weights_digest")
        return digest if isinstance(digest, str) else None
    path = os.path.abspath(checkpoint)
    entry = _read().get(path)
    if not isinstance(entry, dict) or entry.get("arch") != arch or entry.get("files") != fingerprint(path):
        return None
    digest = entry.get("digest")
    return digest if isinstance(digest, str) else None


def remember(arch: str, digest: str, checkpoint: str | None) -> None:
    """Note that `checkpoint` (a file outside the cache) holds the weights `digest`."""
    if checkpoint is None or known_digest(arch, checkpoint) == digest:
        return
    files = fingerprint(checkpoint)
    if files is None:
        return
    known = _read()
    known[os.path.abspath(checkpoint)] = {"arch": arch, "digest": digest, "files": files}
    try:
        with atomic_file(_path()) as f:
            f.write((json.dumps(known, indent=1) + "\n").encode())
    except OSError:
        pass  # a read-only cache: the checkpoint is read again next time
