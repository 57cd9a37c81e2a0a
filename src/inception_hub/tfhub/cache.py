"""Put the modules into tensorflow_hub's own cache under every spelling of their handles, so that
unmodified `hub.load("https://tfhub.dev/...")` and `hub.KerasLayer(...)` code finds them there
and makes no request.

tensorflow_hub keeps a downloaded module in `$TFHUB_CACHE_DIR/<SHA-1 of the handle string>/`
(`<temp dir>/tfhub_modules` when the variable is unset), with `<SHA-1>.descriptor.txt` beside it
naming the handle, and uses a folder that holds files without asking the network. Each module is
written once, under the hash of its https tfhub.dev URL; every other spelling is a symbolic link
to it (the library follows links) with a descriptor of its own. The descriptors carry a mark, so
`--list` and `--remove` touch only what this command installed.
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
from ..catalog import KINDS, VERSIONS, ModelSpec, resolve, spellings
from ..errors import InceptionHubError
from ..metadata import METADATA
from ..nets import ARCHITECTURES

MARK = "Installed by: inception-hub"


def tfhub_cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where tensorflow_hub looks: `explicit`, else `$TFHUB_CACHE_DIR`, else its default."""
    return Path(explicit or os.environ.get("TFHUB_CACHE_DIR") or Path(tempfile.gettempdir()) / "tfhub_modules")


def folder_name(handle: str) -> str:
    """The cache folder tensorflow_hub uses for `handle`, written exactly as in the user's code."""
    return hashlib.sha1(handle.encode("utf8")).hexdigest()


@dataclass(frozen=True)
class Entry:
    """One installed spelling: the cache folder its hash names, and the module behind it."""

    spelling: str
    path: Path
    handle: str | None  # the module's handle; None when the module behind the link is gone
    weights_digest: str | None

    @property
    def is_link(self) -> bool:
        return self.path.is_symlink()


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


def _write_descriptor(cache: Path, spelling: str, digest: str) -> None:
    # tensorflow_hub's descriptor lines, plus the mark.
    text = (
        f"Module: {spelling}\nDownload Time: {datetime.datetime.today()}\n"
        f"Downloader Hostname: {socket.gethostname()} (PID:{os.getpid()})\n{MARK} (weights {digest[:16]})\n"
    )
    with atomic_file(cache / f"{folder_name(spelling)}.descriptor.txt") as f:
        f.write(text.encode())


def _place_link(cache: Path, spelling: str, target: str, force: bool) -> bool:
    """Point the folder of `spelling` at `target` (a sibling's name), replacing a link or a module
    of ours; a module that came from elsewhere stays unless `force`. Whether it was placed."""
    dest = cache / folder_name(spelling)
    if dest.is_symlink() and os.readlink(dest) == target:
        return True
    if dest.is_dir() and not dest.is_symlink():
        if _module_meta(dest) is None and not force:
            return False
        shutil.rmtree(dest)
    tmp = cache / f".{dest.name}.{uuid.uuid4().hex}.link"
    os.symlink(target, tmp)
    os.replace(tmp, dest)  # atomic: a reader sees the old folder or the new link
    return True


def install(
    specs: Iterable[ModelSpec],
    cache: Path,
    weights_digest: Callable[[str], str],
    build: Callable[[ModelSpec, Path], None],
    *,
    force: bool = False,
    report: Callable[[str], None] = print,
) -> list[Entry]:
    """Install each module under all its spellings. `weights_digest(arch)` names the weights the
    modules are to hold; `build(spec, folder)` writes a module (atomically, replacing `folder`).
    A module already installed from the same weights is not built again."""
    cache.mkdir(parents=True, exist_ok=True)
    installed = []
    for spec in specs:
        digest = weights_digest(spec.arch)
        names = spellings(spec)
        main = cache / folder_name(names[0])
        meta = _module_meta(main) if main.is_dir() and not main.is_symlink() else None
        if main.is_dir() and not main.is_symlink() and meta is None and not force:
            report(f"skipped {spec.url}: {main} holds a module inception-hub did not install (--force replaces it)")
            continue
        if meta is None or meta.get("handle") != spec.handle or meta.get("weights_digest") != digest:
            if main.is_symlink():
                main.unlink()
            build(spec, main)
        placed = [names[0]]
        for spelling in names[1:]:
            if _place_link(cache, spelling, main.name, force):
                placed.append(spelling)
            else:
                report(f"skipped {spelling}: its folder holds a module inception-hub did not install (--force)")
        for spelling in placed:
            _write_descriptor(cache, spelling, digest)
        report(f"installed {spec.handle} under {len(placed)} spellings ({main})")
        installed += [Entry(s, cache / folder_name(s), spec.handle, digest) for s in placed]
    return installed


def entries(cache: Path) -> list[Entry]:
    """What this command installed in `cache`: one entry per spelling, modules first."""
    found = []
    for descriptor in sorted(cache.glob("*.descriptor.txt")) if cache.is_dir() else []:
        try:
            text = descriptor.read_text()
        except OSError:
            continue
        if MARK not in text or not text.startswith("Module: "):
            continue
        spelling = text.split("\n", 1)[0].removeprefix("Module: ")
        folder = cache / descriptor.name.removesuffix(".descriptor.txt")
        meta = _module_meta(folder) or {}
        found.append(Entry(spelling, folder, meta.get("handle"), meta.get("weights_digest")))
    return sorted(found, key=lambda e: (e.handle or "", e.is_link, e.spelling))


def remove(cache: Path, specs: Iterable[ModelSpec] | None = None) -> list[Entry]:
    """Take out the spellings this command installed (of `specs`, or all): links and their
    descriptors first, then the modules they pointed at."""
    wanted = None if specs is None else {s.handle for s in specs}
    chosen = [e for e in entries(cache) if wanted is None or _spelled(e.spelling) in wanted]
    for e in sorted(chosen, key=lambda e: not e.is_link):
        if e.is_link or not e.path.exists():
            e.path.unlink(missing_ok=True)
        else:
            shutil.rmtree(e.path)
        (cache / f"{e.path.name}.descriptor.txt").unlink(missing_ok=True)
    return chosen


def _spelled(spelling: str) -> str | None:
    try:
        return resolve(spelling).handle
    except InceptionHubError:
        return None
