"""Contact sheets: photos as labelled thumbnails in a grid, to look at search results and
near-duplicate groups. Each sheet carries a mark (a PNG text chunk, a JPEG comment) by which a
later run knows it may write over it."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageOps, PngImagePlugin

from ..atomic import atomic_file
from ..errors import ImageDecodeError
from ..images import DEFAULT_MAX_PIXELS, decode_image

THUMB = 160
CAPTION = 28
#: File names a sheet may have.
SUFFIXES = (".png", ".jpg", ".jpeg")
#: The mark: a PNG text chunk's key and value, or a JPEG's comment.
MARK = ("inception-hub", "contact sheet")
#: The names `dedupe --sheets` gives its sheets.
GROUP_SHEET = re.compile(r"group_\d{4,}\.png")


def thumbnail(path: str, size: int = THUMB) -> Image.Image:
    """The photo upright, fitted into a `size` square (grey where it cannot be read)."""
    try:
        image = Image.fromarray(decode_image(path, max_pixels=DEFAULT_MAX_PIXELS))
    except (ImageDecodeError, OSError, ValueError):
        return Image.new("RGB", (size, size), (128, 128, 128))
    return ImageOps.pad(image, (size, size), color=(255, 255, 255))


def contact_sheet(rows: Sequence[Sequence[tuple[str, str]]], output: str | os.PathLike, size: int = THUMB) -> None:
    """One row per sequence of (photo, caption), written atomically as PNG (or JPEG by suffix)."""
    columns = max((len(r) for r in rows), default=1)
    sheet = Image.new("RGB", (columns * (size + 8) + 8, len(rows) * (size + CAPTION + 8) + 8), "white")
    draw = ImageDraw.Draw(sheet)
    for y, row in enumerate(rows):
        for x, (path, caption) in enumerate(row):
            left, top = 8 + x * (size + 8), 8 + y * (size + CAPTION + 8)
            sheet.paste(thumbnail(path, size), (left, top))
            for i, line in enumerate(_lines(caption, size)):
                draw.text((left, top + size + 2 + 12 * i), line, fill="black")
    if str(output).lower().endswith((".jpg", ".jpeg")):
        options = {"format": "JPEG", "comment": " ".join(MARK).encode()}
    else:
        info = PngImagePlugin.PngInfo()
        info.add_text(*MARK)
        options = {"format": "PNG", "pnginfo": info}
    with atomic_file(output) as f:
        sheet.save(f, **options)


def is_sheet(path: str | os.PathLike) -> bool:
    """Whether `path` is a contact sheet written here (it carries the mark)."""
    try:
        with Image.open(path) as image:
            if image.format == "PNG":
                return image.info.get(MARK[0]) == MARK[1]
            return image.format == "JPEG" and image.info.get("comment") == " ".join(MARK).encode()
    except (OSError, ValueError):
        return False


def is_group_sheet(path: Path) -> bool:
    """A sheet named as `dedupe --sheets` names them."""
    return GROUP_SHEET.fullmatch(path.name) is not None and is_sheet(path)


def _lines(caption: str, size: int) -> list[str]:
    width = max(1, size // 6)  # the default bitmap font is about 6 pixels wide
    return [caption[i : i + width] for i in range(0, len(caption), width)][:2]
