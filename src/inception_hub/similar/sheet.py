"""Contact sheets: photos as labelled thumbnails in a grid, to look at search results and
near-duplicate groups."""

from __future__ import annotations

import os
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageOps

from ..atomic import atomic_file
from ..errors import ImageDecodeError
from ..images import DEFAULT_MAX_PIXELS, decode_image

THUMB = 160
CAPTION = 28


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
    fmt = "JPEG" if str(output).lower().endswith((".jpg", ".jpeg")) else "PNG"
    with atomic_file(output) as f:
        sheet.save(f, fmt)


def _lines(caption: str, size: int) -> list[str]:
    width = max(1, size // 6)  # the default bitmap font is about 6 pixels wide
    return [caption[i : i + width] for i in range(0, len(caption), width)][:2]
