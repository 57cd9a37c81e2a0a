"""What an image file is, and which files of a folder are images: the one walker every reader
uses (`classify`, `embed`, `index`, `evaluate`, `finetune`, calibration sets, Ray jobs).

A folder is walked in sorted order; hidden files and folders (names starting with ".") are left
out, as operating systems hide them: they hold thumbnails, resource forks (`._photo.jpg`) and
version control, not photos. A file named explicitly is always taken."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path

#: File suffixes (lower case) that :func:`decode_image` is meant for; used to pick files from folders.
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp", ".tif", ".tiff"}
)


def find_images(
    inputs: Iterable[str | os.PathLike], errors: list[tuple[str, str]] | None = None
) -> tuple[list[str], list[str]]:
    """Expand files, directories (recursively, image extensions only) and glob patterns.

    Returns (image paths in a stable order, inputs that matched nothing). A file named
    explicitly is kept whatever its extension, so a mislabelled image still gets its say.
    Folders that cannot be read are added to `errors` as (path, reason) when it is given."""
    found: list[str] = []
    unmatched: list[str] = []
    for item in inputs:
        text = os.fspath(item)
        p = Path(text)
        if p.is_dir():
            found.extend(walk(p, errors))
        elif p.is_file():
            found.append(text)
        elif glob.has_magic(text):
            hits = sorted(glob.glob(text, recursive=True))
            files = [h for h in hits if Path(h).is_file() and is_image_name(h)]
            for h in hits:
                if Path(h).is_dir():
                    files.extend(walk(h, errors))
            if files:
                found.extend(files)
            else:
                unmatched.append(text)
        else:
            unmatched.append(text)
    seen: set[str] = set()
    unique = [f for f in found if not (f in seen or seen.add(f))]
    return unique, unmatched


def is_hidden(name: str | os.PathLike) -> bool:
    """Whether a file or folder is hidden (its name starts with "."): the walker leaves it out."""
    return Path(name).name.startswith(".")


def is_image_name(name: str | os.PathLike) -> bool:
    """Whether a file name has an image suffix (any case)."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def walk(
    root: str | os.PathLike, errors: list[tuple[str, str]] | None = None, *, images_only: bool = True
) -> list[str]:
    """The files under `root`, in sorted order, hidden ones left out; only image names unless
    `images_only` is False (fine-tuning reports the others as skipped). Folders that cannot be
    read are added to `errors` as (path, reason) when it is given."""

    def unreadable(e: OSError) -> None:
        if errors is not None:
            errors.append((e.filename or str(root), f"cannot read the folder ({e.strerror or e})"))

    out = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = sorted(d for d in dirnames if not is_hidden(d))
        out.extend(
            os.path.join(dirpath, f)
            for f in sorted(filenames)
            if not is_hidden(f) and (not images_only or is_image_name(f))
        )
    return out
