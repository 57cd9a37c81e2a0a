"""Read, validate, convert, cache and fetch the TF-Slim checkpoints.

A checkpoint is accepted as a V1 single file (the 2016 releases), a V2 prefix (`.index` +
`.data-*`), a directory holding one, the official `.tar.gz`, or our converted `.npz`. Whatever
the source, the variables must be exactly the network's: names and shapes come from the one
network definition. Downloaded or imported weights are converted once into
`$INCEPTION_HUB_CACHE/weights/<arch>/<release>.npz`, written atomically under a file lock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tarfile
import tempfile
import time
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from ..catalog import CARDS, CheckpointSource
from ..errors import CheckpointError, CheckpointMismatchError, WeightsUnavailableError
from ..nets import ARCHITECTURES, variable_specs
from . import tf_checkpoint
from .cache import (
    cache_dir,
    cache_lock,
    cached_path,
    clean_once,
    download_path,
    folder,
    provenance_path,
)
from .download import DownloadError, download


class Weights(dict):
    """A network's variables by TF-Slim name (float32 arrays), and `digest`: which weights these
    are, wherever they came from. The digest keys every cache derived from them (engine models,
    hub modules, job manifests), so the same weights reached by two paths are converted once."""

    #: The checkpoint file these weights were read from (None: the cache's own copy).
    checkpoint: str | None = None

    @functools.cached_property
    def digest(self) -> str:
        return digest(self)


#: Bookkeeping variables a training checkpoint may carry besides the network.
IGNORED_VARIABLES = frozenset({"global_step"})


def digest(weights: Mapping[str, np.ndarray]) -> str:
    """sha256 over the variable names and values: which weights these are, wherever they came from."""
    h = hashlib.sha256()
    for name in sorted(weights):
        h.update(name.encode())
        h.update(np.ascontiguousarray(weights[name]).tobytes())
    return h.hexdigest()


def offline() -> bool:
    return os.environ.get("INCEPTION_HUB_OFFLINE", "").lower() in ("1", "true", "yes")


def checkpoint_url(source: CheckpointSource) -> str:
    """The release URL, or the same file under `$INCEPTION_HUB_MIRROR` when that is set."""
    mirror = os.environ.get("INCEPTION_HUB_MIRROR")
    return mirror.rstrip("/") + "/" + source.tarball if mirror else source.url


# Reading ---------------------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike, arch: str | None = None) -> dict[str, np.ndarray]:
    """All variables of a checkpoint as float32 arrays, whatever form it comes in."""
    p = Path(path).expanduser()
    name = p.name.lower()
    if name.endswith((".tar.gz", ".tgz", ".tar")) and p.is_file():
        return _read_tarball(p, arch)
    if name.endswith(".npz") and p.is_file():
        return _read_npz(p)
    return _read_tf_checkpoint(_checkpoint_prefix(p))


def _checkpoint_prefix(p: Path) -> str:
    """The path TF's reader wants: a V1 file, or a V2 prefix (with or without the suffixes)."""
    text = str(p)
    for suffix in (".index", ".meta"):
        if text.endswith(suffix):
            return text.removesuffix(suffix)
    if ".data-" in p.name:
        return text.split(".data-")[0]
    if p.is_dir():
        latest = _latest_checkpoint(p)
        if latest:
            return latest
        found = sorted(p.glob("*.ckpt")) + sorted(q.with_suffix("") for q in p.glob("*.index"))
        if len(found) == 1:
            return str(found[0])
        raise CheckpointError(
            f"{p}: directory holds {len(found) or 'no'} checkpoints; pass the checkpoint file or prefix itself"
        )
    if p.is_file() or Path(text + ".index").is_file():
        return text
    raise CheckpointError(f"{p}: no such checkpoint file (nor a V2 checkpoint prefix with {p.name}.index)")


def _latest_checkpoint(folder: Path) -> str | None:
    """What the folder's `checkpoint` state file names (as tf.train.latest_checkpoint reads it)."""
    try:
        lines = (folder / "checkpoint").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    for line in lines:
        key, _, value = line.partition(":")
        if key.strip() == "model_checkpoint_path":
            path = folder / value.strip().strip('"')  # an absolute path stays absolute
            if path.is_file() or path.with_name(path.name + ".index").is_file():
                return str(path)
    return None


def _read_tf_checkpoint(prefix: str) -> dict[str, np.ndarray]:
    """A V1 file or V2 prefix, read without TensorFlow (`tf_checkpoint`), as float32 arrays."""
    try:
        return {n: np.asarray(v, dtype=np.float32) for n, v in tf_checkpoint.read(prefix).items()}
    except CheckpointError as e:
        raise CheckpointError(
            f"not a readable TensorFlow checkpoint: {e}. Pass a TF-Slim checkpoint "
            "(the .ckpt file from the release tarball), a V2 prefix, or the .tar.gz itself."
        ) from None


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k].astype(np.float32, copy=False) for k in z.files}
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt weights file ({e}); delete it and fetch again") from None


def _read_tarball(path: Path, arch: str | None) -> dict[str, np.ndarray]:
    # Extracted inside the cache, where a run killed meanwhile leaves nothing for long (clean_stale).
    scratch = folder("tmp")
    scratch.mkdir(parents=True, exist_ok=True)
    clean_once(str(cache_dir()))
    with tempfile.TemporaryDirectory(prefix="extract.", dir=scratch) as tmp:
        return _read_tf_checkpoint(str(extract_checkpoint(path, Path(tmp), arch)))


def max_checkpoint_bytes(arch: str) -> int:
    """An upper bound on a checkpoint file of `arch`: its float32 values, twice over for the
    format's own bookkeeping and a margin."""
    values = sum(int(np.prod(s.shape)) for s in variable_specs(arch, include_top=True, include_aux=True))
    return 2 * 4 * values + (16 << 20)


def extract_checkpoint(tarball: Path, dest_dir: Path, arch: str | None = None) -> Path:
    """Extract only the checkpoint file from a release tarball, refusing links and unsafe paths."""
    wanted = {CARDS[arch].checkpoint.member} if arch else {c.checkpoint.member for c in CARDS.values()}
    try:
        with tarfile.open(tarball, "r:*") as tar:
            names = []
            for m in tar:
                clean = m.name.removeprefix("./")
                names.append(clean)
                if clean not in wanted:
                    continue
                if not m.isfile() or Path(clean).is_absolute() or ".." in Path(clean).parts or "/" in clean:
                    raise CheckpointError(f"{tarball}: refusing unsafe archive member {m.name!r}")
                limit = max_checkpoint_bytes(arch) if arch else max(map(max_checkpoint_bytes, CARDS))
                if m.size > limit:  # checked before a byte is written: a small .tar.gz can expand to GBs
                    raise CheckpointError(
                        f"{tarball}: {clean} is {m.size} bytes, more than a checkpoint of this network can be "
                        f"({limit}); this is not the official release"
                    )
                out = dest_dir / clean
                src = tar.extractfile(m)
                assert src is not None
                with src, open(out, "wb") as f:
                    while chunk := src.read(1 << 20):
                        f.write(chunk)
                return out
    except (tarfile.TarError, EOFError, OSError) as e:
        raise CheckpointError(f"{tarball}: not a readable .tar.gz ({e}); download it again") from None
    shown = ", ".join(names[:10]) or "nothing"
    raise CheckpointError(f"{tarball}: no {' or '.join(sorted(wanted))} in the archive (it holds {shown})")


# Validation ------------------------------------------------------------------------------------


def validate(arch: str, weights: Mapping[str, np.ndarray], source: str = "checkpoint") -> Weights:
    """Check names and shapes against the network definition; return its variables as float32.

    The IRv2 AuxLogits head is part of the release, so it is expected (and kept) too."""
    expected = {s.name: s.shape for s in variable_specs(arch, include_top=True, include_aux=True)}
    present = {n: tuple(np.shape(v)) for n, v in weights.items() if n not in IGNORED_VARIABLES}
    missing = sorted(set(expected) - set(present))
    unexpected = sorted(set(present) - set(expected))
    mismatched = sorted(
        f"{n}: checkpoint {present[n]}, network {expected[n]}"
        for n in set(expected) & set(present)
        if present[n] != expected[n]
    )
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            _mismatch_message(arch, source, present, missing, unexpected, mismatched),
            missing,
            unexpected,
            mismatched,
        )
    return Weights((n, np.asarray(weights[n], np.float32)) for n in expected)


def _mismatch_message(arch, source, present, missing, unexpected, mismatched) -> str:
    scopes = {n.split("/", 1)[0] for n in present}
    other = [a.name for a in ARCHITECTURES.values() if a.scope in scopes and a.name != arch]
    lines = [f"{source} does not match {arch}"]
    if other and ARCHITECTURES[arch].scope not in scopes:
        lines[0] += f": it looks like a {other[0]} checkpoint"
    lines[0] += "."

    def show(title: str, items: list[str]) -> None:
        if items:
            lines.append(f"  {title} ({len(items)}): " + ", ".join(items[:8]) + (" ..." if len(items) > 8 else ""))

    show("missing", missing)
    show("unexpected", unexpected)
    show("wrong shape", mismatched)
    lines.append(f"Use the official TF-Slim release ({CARDS[arch].checkpoint.tarball}) or a checkpoint with its names.")
    return "\n".join(lines)


# Cache -----------------------------------------------------------------------------------------


def save_npz(weights: Mapping[str, np.ndarray], dest: Path) -> Path:
    """Write weights to `dest` atomically: a reader sees the old file, or the whole new one."""
    with atomic_file(dest) as f:
        np.savez(f, **weights)
    return dest


def fetch(arch: str, source: str | os.PathLike | None = None, *, progress: bool = True) -> Path:
    """Put validated weights for `arch` in the cache and return their path.

    With `source`, import a local checkpoint or release tarball (for machines without internet);
    otherwise use the cached file, a tarball already placed in the downloads folder, or download
    the official release."""
    dest = cached_path(arch)
    with cache_lock(arch):
        if source is not None:
            weights = validate(arch, read_checkpoint(source, arch), str(source))
            origin = {"origin": "imported", "source": str(Path(source).resolve()), "file_sha256": _sha256(source)}
            return _save(weights, dest, origin)
        if dest.is_file():
            return dest
        tarball = download_path(arch)
        if not tarball.is_file():
            _download_release(arch, tarball, progress)
        try:
            sha = _check_release_digest(arch, tarball)
            weights = validate(arch, read_checkpoint(tarball, arch), str(tarball))
        except CheckpointError:
            tarball.unlink(missing_ok=True)  # a bad download must not stick in the cache
            raise
        origin = {"origin": "release", "source": CARDS[arch].checkpoint.tarball, "file_sha256": sha}
        return _save(weights, dest, origin)


def _save(weights: Weights, dest: Path, origin: dict) -> Path:
    """The weights and, beside them, where they came from (`provenance`)."""
    save_npz(weights, dest)
    record = {**origin, "weights_digest": weights.digest, "cached": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with atomic_file(provenance_path(dest)) as f:
        f.write(json.dumps(record, indent=1).encode())
    return dest


def _sha256(path: str | os.PathLike) -> str | None:
    p = Path(path)
    if not p.is_file():
        return None  # a V2 prefix or a folder: no single file to name
    h = hashlib.sha256()
    with open(p, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _check_release_digest(arch: str, tarball: Path) -> str | None:
    """The tarball's sha256, checked against the release's where the card records it."""
    sha = _sha256(tarball)
    expected = CARDS[arch].checkpoint.sha256
    if expected and sha != expected:
        raise CheckpointError(
            f"{tarball}: sha256 {sha} is not the official release's ({expected}); it was removed, fetch it again"
        )
    return sha


def _download_release(arch: str, tarball: Path, progress: bool) -> None:
    url = checkpoint_url(CARDS[arch].checkpoint)
    if offline():
        raise WeightsUnavailableError(
            f"weights for {arch} are not cached and INCEPTION_HUB_OFFLINE is set.{_offline_help(arch, url)}"
        )
    try:
        download(url, tarball, progress=progress)
    except DownloadError as e:
        raise WeightsUnavailableError(
            f"could not download the {arch} weights: {e}.{_offline_help(arch, url)}"
        ) from None


def _offline_help(arch: str, url: str) -> str:
    return (
        f"\nOn a machine with internet, fetch {url}\n"
        f"then either put it at {download_path(arch)}\n"
        f"or run: inception-hub fetch {arch} --from /path/to/{CARDS[arch].checkpoint.tarball}\n"
        f"(an existing checkpoint also works: load(..., checkpoint=PATH) or --checkpoint PATH)."
    )


def load_weights(arch: str, checkpoint: str | os.PathLike | None = None, *, progress: bool = True) -> Weights:
    """The network's variables for `arch`: from `checkpoint` if given, else from the cache,
    downloading and converting the official release the first time."""
    clean_once(str(cache_dir()))
    if checkpoint is not None:
        weights = validate(arch, read_checkpoint(checkpoint, arch), str(checkpoint))
        weights.checkpoint = os.path.abspath(checkpoint)
        return weights
    path = cached_path(arch)
    if not path.is_file():
        path = fetch(arch, progress=progress)
    return validate(arch, _read_npz(path), str(path))
