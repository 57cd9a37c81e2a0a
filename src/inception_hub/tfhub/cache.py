"""Put the modules into tensorflow_hub's own cache under every spelling of their handles, so that
unmodified `hub.load("https://tfhub.dev/...")` and `hub.KerasLayer(...)` code finds them there
and makes no request; and into kagglehub's, so that `kagglehub.model_download(handle)` does.

tensorflow_hub keeps a downloaded module in `$TFHUB_CACHE_DIR/<SHA-1 of the handle string>/`
(`<temp dir>/tfhub_modules` when the variable is unset), with `<SHA-1>.descriptor.txt` beside it
naming the handle, and uses a folder that holds files without asking the network. kagglehub keeps
a model version in `$KAGGLEHUB_CACHE/models/<owner>/<model>/<framework>/<variation>/<version>/`
(default `~/.cache/kagglehub`) and uses it when `<version>.complete` sits beside it.

Each module is written once, under its first spelling; every other spelling is a symbolic link
to it (both libraries follow links) with a descriptor or marker of its own. What was installed
is recorded in the cache (`RECORD`): the folders, the links' targets and a stamp of each module's
files. `--list` and `--remove` go by that record and touch only what still matches it, never a
folder that merely carries the mark in its descriptor. A cache folder owned by another user is
refused, as pip refuses such a cache.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..atomic import atomic_file
from ..catalog import KINDS, VERSIONS, ModelSpec, kagglehub_handles, resolve, spellings
from ..errors import InceptionHubError
from ..metadata import METADATA
from ..nets import ARCHITECTURES

MARK = "Installed by: inception-hub"
#: What this command installed in a cache, kept in that cache.
RECORD = ".inception-hub-installed.json"


def tfhub_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where tensorflow_hub looks: `explicit`, else `$TFHUB_CACHE_DIR`, else its default."""
    return Path(explicit or os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")


def kagglehub_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where kagglehub looks: `explicit`, else `$KAGGLEHUB_CACHE`, else its default."""
    return Path(explicit or os.environ.get("KAGGLEHUB_CACHE") or Path.home() / ".cache" / "kagglehub")


def folder_name(handle: str) -> str:
    """The cache folder tensorflow_hub uses for `handle`, written exactly as in the user's code."""
    return hashlib.sha1(handle.encode("utf8")).hexdigest()


@dataclass(frozen=True)
class Layout:
    """How a cache names a spelling's folder and the file beside it, and which spellings it has."""

    name: str
    folder: Callable[[str], str]  # spelling -> folder path relative to the cache
    sidecar: Callable[[str], str]  # spelling -> the descriptor / completion marker beside it
    spellings: Callable[[ModelSpec], list[str]]


def _kagglehub_spellings(spec: ModelSpec) -> list[str]:
    """kagglehub handles, the framework as Kaggle's snippets write it and as its URLs do."""
    handles = kagglehub_handles(spec)
    capitalized = [h.replace("/tensorFlow", "/TensorFlow", 1) for h in handles]
    return handles + capitalized


TFHUB = Layout("tensorflow_hub", folder_name, lambda s: f"{folder_name(s)}.descriptor.txt", spellings)
KAGGLEHUB = Layout("kagglehub", lambda h: f"models/{h}", lambda h: f"models/{h}.complete", _kagglehub_spellings)


@dataclass(frozen=True)
class Entry:
    """One installed spelling: the cache folder it names, and the module behind it."""

    spelling: str
    path: Path
    handle: str | None  # the module's handle; None when the module behind the link is gone
    weights_digest: str | None

    @property
    def is_link(self) -> bool:
        return self.path.is_symlink()


def check_owned(cache: Path) -> None:
    """Refuse a cache folder (or link to one) that belongs to another user: what is written there
    would be theirs to replace, and what is read there theirs to choose."""
    if not hasattr(os, "geteuid"):
        return
    me = os.geteuid()
    for stat in (os.lstat, os.stat):
        try:
            owner = stat(cache).st_uid
        except FileNotFoundError:
            return
        if owner != me:
            raise InceptionHubError(
                f"{cache} belongs to another user (uid {owner}); inception-hub writes only into a cache folder of "
                "its own: choose one with --tfhub-cache-dir or --kagglehub-cache-dir (TFHUB_CACHE_DIR, KAGGLEHUB_CACHE)"
            )


def select(
    models: Iterable[str], checkpoints: Mapping[str, str], has_weights: Callable[[str], bool]
) -> list[ModelSpec]:
    """The modules to install: a network name (`inception_v1`) stands for all eight of its modules,
    anything else for the one module it resolves to. None given: every module of each network
    whose weights are at hand (cached, or given with --checkpoint)."""
    models = list(models)
    if not models:
        models = [a for a in ARCHITECTURES if a in checkpoints or has_weights(a)]
        if not models:
            raise InceptionHubError(
                "no weights are cached: run `inception-hub fetch inception_v1` (or inception_resnet_v2) "
                "first, name the models to install, or pass --checkpoint ARCH=PATH"
            )
    specs: dict[ModelSpec, None] = {}
    for m in models:
        arch = m.strip().replace("-", "_").lower()
        if arch in ARCHITECTURES:
            specs.update(dict.fromkeys(ModelSpec(arch, k, v) for k in KINDS for v in VERSIONS))
        else:
            specs[resolve(m)] = None
    return list(specs)


def _module_meta(folder: Path) -> dict | None:
    """The inception-hub metadata of a module folder, or None when it is not one of ours."""
    try:
        return json.loads((folder / METADATA).read_text())
    except (OSError, ValueError):
        return None


def _stamp(folder: Path) -> str | None:
    """A digest of a module folder's files (names, sizes, modification times) as written."""
    if folder.is_symlink() or not folder.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(p for p in folder.rglob("*") if p.is_file() or p.is_symlink()):
        st = f.lstat()
        h.update(f"{f.relative_to(folder)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _read_record(cache: Path) -> dict[str, dict]:
    path = cache / RECORD
    try:
        st = path.lstat()
        if path.is_symlink() or (hasattr(os, "geteuid") and st.st_uid != os.geteuid()):
            return {}  # not a record this user wrote
        return dict(json.loads(path.read_text())["entries"])
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def _write_record(cache: Path, record: dict[str, dict]) -> None:
    if not record:
        (cache / RECORD).unlink(missing_ok=True)
        return
    with atomic_file(cache / RECORD) as f:
        f.write(json.dumps({"entries": record}, indent=1, sort_keys=True).encode())


def _matches(cache: Path, rel: str, item: dict) -> bool:
    """Whether a recorded folder is still what this command wrote there."""
    path = cache / rel
    if item.get("target") is not None:
        return path.is_symlink() and os.readlink(path) == item["target"]
    return item.get("stamp") is not None and _stamp(path) == item["stamp"]


def _write_sidecar(cache: Path, layout: Layout, spelling: str, digest: str) -> None:
    # tensorflow_hub's descriptor lines, plus the mark (kagglehub only asks that its marker exists).
    text = (
        f"Module: {spelling}\nDownload Time: {datetime.datetime.today()}\n"
        f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})\n{MARK} (weights {digest[:16]})\n"
    )
    with atomic_file(cache / layout.sidecar(spelling)) as f:
        f.write(text.encode())


def _place_link(cache: Path, rel: str, main: str, ours: bool, force: bool) -> str | None:
    """Point the folder `rel` at the module folder `main` (both relative to the cache), replacing
    a link or module of ours; something from elsewhere stays unless `force`. The link's target,
    or None when it was not placed."""
    dest = cache / rel
    target = os.path.relpath(cache / main, dest.parent)
    if dest.is_symlink() and os.readlink(dest) == target:
        return target
    if dest.is_dir() and not dest.is_symlink():
        if not ours and not force:
            return None
        shutil.rmtree(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex}.link"
    os.symlink(target, tmp)
    os.replace(tmp, dest)  # atomic: a reader sees the old folder or the new link
    return target


def install(
    specs: Iterable[ModelSpec],
    cache: Path,
    weights_digest: Callable[[str], str],
    build: Callable[[ModelSpec, Path], None],
    *,
    force: bool = False,
    report: Callable[[str], None] = print,
    layout: Layout = TFHUB,
) -> list[Entry]:
    """Install each module under all its spellings. `weights_digest(arch)` names the weights the
    modules are to hold; `build(spec, folder)` writes a module (atomically, replacing `folder`).
    A module already installed from the same weights is not built again."""
    check_owned(cache)
    cache.mkdir(parents=True, exist_ok=True)
    record = _read_record(cache)
    installed = []
    for spec in specs:
        digest = weights_digest(spec.arch)
        names = layout.spellings(spec)
        rel = layout.folder(names[0])
        main = cache / rel
        meta = _module_meta(main) if main.is_dir() and not main.is_symlink() else None
        ours = rel in record and _matches(cache, rel, record[rel])
        if main.is_dir() and not main.is_symlink() and meta is None and not force:
            report(f"skipped {names[0]}: {main} holds a module inception-hub did not install (--force replaces it)")
            continue
        if meta is None or meta.get("handle") != spec.handle or meta.get("weights_digest") != digest or not ours:
            if main.is_symlink():
                main.unlink()
            main.parent.mkdir(parents=True, exist_ok=True)
            build(spec, main)
        record[rel] = {"spelling": names[0], "target": None, "stamp": _stamp(main)}
        placed = [names[0]]
        for spelling in names[1:]:
            link = layout.folder(spelling)
            ours = link in record and _matches(cache, link, record[link])
            target = _place_link(cache, link, rel, ours or _module_meta(cache / link) is not None, force)
            if target is None:
                report(f"skipped {spelling}: its folder holds a module inception-hub did not install (--force)")
                continue
            record[link] = {"spelling": spelling, "target": target, "stamp": None}
            placed.append(spelling)
        for spelling in placed:
            _write_sidecar(cache, layout, spelling, digest)
        _write_record(cache, record)  # after each module: an interrupted run leaves a true record
        report(f"installed {spec.handle} under {len(placed)} spellings ({main})")
        installed += [Entry(s, cache / layout.folder(s), spec.handle, digest) for s in placed]
    return installed


def entries(cache: Path) -> list[Entry]:
    """What this command installed in `cache` and is still as it wrote it: one entry per
    spelling, modules first."""
    found = []
    for rel, item in _read_record(cache).items():
        if not _matches(cache, rel, item):
            continue
        meta = _module_meta(cache / rel) or {}
        found.append(Entry(item["spelling"], cache / rel, meta.get("handle"), meta.get("weights_digest")))
    return sorted(found, key=lambda e: (e.handle or "", e.is_link, e.spelling))


def remove(cache: Path, specs: Iterable[ModelSpec] | None = None, layout: Layout = TFHUB) -> list[Entry]:
    """Take out the spellings this command installed (of `specs`, or all), links and their
    descriptors first, then the modules they pointed at; what no longer matches the record (a
    module replaced since, a folder that only carries the mark) is left alone."""
    check_owned(cache)
    wanted = None if specs is None else {s.handle for s in specs}
    record = _read_record(cache)
    chosen = [e for e in entries(cache) if wanted is None or _spelled(e.spelling) in wanted]
    for e in sorted(chosen, key=lambda e: not e.is_link):
        if e.is_link:
            e.path.unlink()
        else:
            shutil.rmtree(e.path)
        (cache / layout.sidecar(e.spelling)).unlink(missing_ok=True)
    gone = {str(e.path.relative_to(cache)) for e in chosen}
    _write_record(cache, {rel: item for rel, item in record.items() if rel not in gone and _matches(cache, rel, item)})
    return chosen


def _spelled(spelling: str) -> str | None:
    try:
        return resolve(spelling).handle
    except InceptionHubError:
        return None
