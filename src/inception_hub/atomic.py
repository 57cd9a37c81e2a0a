"""Write files and folders so that readers see the old version or the whole new one, never half.

Everything is staged beside its destination (same file system) and renamed into place; a failure
leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from .errors import InceptionHubError


def umask() -> int:
    """The process's umask, read without changing it where the system allows (changing it is
    process-wide, so another thread could create a file under the wrong mask meanwhile)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike) -> Iterator[BinaryIO]:
    """A binary file to write; on success it is flushed to disk and renamed over `dest`."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())  # mkstemp's 0600 would hide a shared cache from its other users
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_dir(
    dest: str | os.PathLike, *, overwrite: bool = False, ours: Callable[[Path], bool] | None = None
) -> Iterator[Path]:
    """A staging folder (not yet created) to fill; on success it replaces `dest` whole.

    An existing `dest` that is not an empty folder is refused up front, before any work is done,
    unless `overwrite` and `ours(dest)` says it is something this package wrote (an export, an
    index): nothing else a user names is ever removed. The old folder is moved aside before the
    new one takes its place and deleted only then, so a failure leaves one of the two whole."""
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        what = "a file" if not dest.is_dir() or dest.is_symlink() else "a folder that is not empty"
        if not overwrite:
            # Only where something of ours may be replaced is there an --overwrite to offer.
            offer = ", or --overwrite to replace it" if ours is not None else ""
            raise InceptionHubError(f"{dest} already exists ({what}); choose another path{offer}")
        if ours is None or dest.is_symlink() or not dest.is_dir() or not ours(dest):
            raise InceptionHubError(
                f"{dest} already exists and was not written by inception-hub ({what}); it is left as it is: "
                "choose another path"
            )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        staging = tmp / dest.name
        yield staging
        if dest.exists():
            os.replace(dest, tmp / "replaced")
        os.replace(staging, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
