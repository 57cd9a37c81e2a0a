"""Image decoding and TF-Slim evaluation preprocessing, without building a TensorFlow graph.

The network modules take float32 RGB in [0, 1]. To give the same numbers as the original TF-Slim
pipeline (``decode_jpeg -> convert_image_dtype -> central_crop(central_fraction) -> resize_bilinear`` with the TF1
``align_corners=False, half_pixel_centers=False`` semantics), this module re-implements the crop and
the resize in numpy, bit for bit, and decodes JPEGs as TensorFlow's decoder does (libjpeg-turbo's
fast integer IDCT; see :func:`decode_image` for why), without TensorFlow.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat

import numpy as np
import simplejpeg
from PIL import Image, UnidentifiedImageError

from .catalog import CENTRAL_FRACTION
from .errors import ImageDecodeError
from .files import IMAGE_EXTENSIONS

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageDecodeError",
    "central_crop_box",
    "decode_image",
    "load_image",
    "preprocess",
    "resize_bilinear_tf1",
]

#: Largest image (width * height) decoded by default: Pillow's own default ``MAX_IMAGE_PIXELS`` (~89.5 MP,
#: 256 MiB of RGB). Far more than a 224/299 network input needs, small enough that a decompression bomb
#: cannot exhaust memory, and equal to Pillow's threshold, so Pillow never warns below our limit.
DEFAULT_MAX_PIXELS: int = 89_478_485

#: Largest encoded file read: far above any photo, a bound on what one file can make us hold.
MAX_FILE_BYTES: int = 256 << 20

_EXIF_ORIENTATION = 0x0112
_U8_TO_UNIT = np.float32(1.0 / 255.0)  # what tf.image.convert_image_dtype multiplies by (not a division)
_JPEG_FORMATS = frozenset({"JPEG", "MPO"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})


# --------------------------------------------------------------------------------------------- decoding


def decode_image(
    source: str | os.PathLike[str] | bytes,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file (or its bytes) to a ``uint8`` RGB array ``[H, W, 3]``.

    Reads JPEG, PNG, GIF (first frame), BMP, WebP and TIFF. The EXIF orientation is applied, so the
    array is upright as a viewer shows it. Every mode becomes RGB: grey and 16-bit grey (scaled by
    ``>> 8`` like ``tf.image.convert_image_dtype``, not clipped), palette, CMYK, YCbCr. Transparent
    pixels (alpha channel, or a palette/colour-key transparency) are composited over **white**, since
    "transparent" in a photo-like input almost always means "background".

    RGB and grey JPEGs are decoded as ``tf.io.decode_jpeg`` decodes them by default: libjpeg-turbo's
    fast integer IDCT (``INTEGER_FAST``), which differs from Pillow's accurate IDCT by up to 25/255 on
    single pixels of real photos, and by more than 1/255 after the crop and resize on most of them.
    The TF-Slim checkpoints were evaluated, and the reference inputs were made, with that decoder, so
    only it reproduces them exactly; simplejpeg runs the same libjpeg-turbo code with the same
    settings. Pillow still reads the header (format, size, mode, EXIF), and decodes everything else
    (CMYK JPEGs included, which TF cannot convert).

    Args:
        source: a path, or the encoded bytes.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard); ``None``
            lifts our limit, though Pillow's own (``2 * PIL.Image.MAX_IMAGE_PIXELS``, and a
            ``DecompressionBombWarning`` above ``MAX_IMAGE_PIXELS``) stays.

    Raises:
        ImageDecodeError: the file is missing, empty, not an image, truncated, corrupt or too large;
            ``.path`` names it and ``.reason`` says what is wrong.
    """
    path, data = _read_source(source)
    if not data:
        raise ImageDecodeError(path, "empty file (0 bytes)")
    with _open(data, path, max_pixels) as image:
        orientation = _exif_orientation(image)
        fmt = image.format or "image"
        try:
            turbo = image.format in _JPEG_FORMATS and image.mode in ("RGB", "L")  # CMYK etc.: Pillow
            array = _decode_jpeg(data, path) if turbo else _pillow_to_rgb(image)
        except ImageDecodeError:
            raise
        except MemoryError as exc:
            width, height = image.size
            raise ImageDecodeError(path, f"not enough memory to decode {width}x{height}") from exc
        except Exception as exc:  # a plugin can fail in many ways; all mean "bad file"
            raise ImageDecodeError(path, _describe_load_error(fmt, exc)) from exc
    return _apply_orientation(array, orientation)


def _read_source(source: str | os.PathLike[str] | bytes) -> tuple[str | None, bytes]:
    """Return ``(path or None, encoded bytes)``; file-system errors become ImageDecodeError."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return None, bytes(source)
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"decode_image() needs a path or bytes, not {type(source).__name__}")
    path = os.fspath(source)
    try:
        # Non-blocking open, then fstat: a FIFO must not hang the reader, nor a device such as
        # /dev/zero (perhaps behind a symlink named *.jpg) be read until memory runs out.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with open(fd, "rb") as fh:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                raise ImageDecodeError(path, "not a regular file (a pipe, device or socket)")
            if info.st_size > MAX_FILE_BYTES:
                raise ImageDecodeError(path, f"file too large ({info.st_size} bytes > limit {MAX_FILE_BYTES})")
            return path, fh.read(MAX_FILE_BYTES + 1)[:MAX_FILE_BYTES]
    except FileNotFoundError as exc:
        raise ImageDecodeError(path, "file not found") from exc
    except IsADirectoryError as exc:
        raise ImageDecodeError(path, "is a directory, not an image file") from exc
    except PermissionError as exc:
        raise ImageDecodeError(path, "permission denied") from exc
    except OSError as exc:
        raise ImageDecodeError(path, f"cannot read file ({exc.strerror or exc})") from exc


def _open(data: bytes, path: str | None, max_pixels: int | None) -> Image.Image:
    """``Image.open`` (header only) on bytes; every failure, and the size limit, as ImageDecodeError.

    Warning filters are process-global and not thread-safe to change, so we leave them alone. With the
    default limit (= Pillow's ``MAX_IMAGE_PIXELS``) Pillow can only warn about an image we refuse anyway;
    if the caller's filters turn that warning into an exception, it is handled like Pillow's error.
    """
    try:
        image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        match = re.search(r"\((\d+) pixels\) exceeds limit of (\d+)", str(exc))
        pixels = int(match.group(1)) if match else None
        if pixels is not None and max_pixels is not None and pixels > max_pixels:
            reason = f"image too large ({pixels} pixels > limit {max_pixels})"
        else:
            hard = match.group(2) if match else "PIL.Image.MAX_IMAGE_PIXELS"
            reason = (
                f"image too large ({pixels or 'its size in'} pixels > Pillow's limit {hard}; "
                "raise PIL.Image.MAX_IMAGE_PIXELS to read it)"
            )
        raise ImageDecodeError(path, reason) from exc
    except UnidentifiedImageError as exc:
        raise ImageDecodeError(path, "not an image file (unrecognized format)") from exc
    except Exception as exc:  # header parsers raise assorted errors on garbage
        raise ImageDecodeError(path, f"corrupt image header ({exc})") from exc
    width, height = image.size
    if width <= 0 or height <= 0:
        image.close()
        raise ImageDecodeError(path, f"image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        image.close()
        raise ImageDecodeError(
            path, f"image too large ({width * height} pixels > limit {max_pixels}; {width}x{height})"
        )
    return image


def _describe_load_error(fmt: str, exc: BaseException) -> str:
    """Turn a decoder exception into a reason a person understands."""
    text = str(exc)
    if isinstance(exc, (OSError, SyntaxError, EOFError)) or "truncated" in text.lower():
        return f"truncated or corrupt {fmt} data"
    return f"cannot decode {fmt} data ({type(exc).__name__}: {text})"


def _exif_orientation(image: Image.Image) -> int:
    """EXIF orientation tag (1..8) as ``ImageOps.exif_transpose`` reads it; 1 when absent or unreadable."""
    try:
        value = int(image.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # broken metadata must not make a good picture unreadable
        return 1
    return value if 1 <= value <= 8 else 1


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Same transforms as ``ImageOps.exif_transpose`` (Pillow's ROTATE_* turn counter-clockwise)."""
    if orientation == 2:  # FLIP_LEFT_RIGHT
        array = array[:, ::-1]
    elif orientation == 3:  # ROTATE_180
        array = array[::-1, ::-1]
    elif orientation == 4:  # FLIP_TOP_BOTTOM
        array = array[::-1]
    elif orientation == 5:  # TRANSPOSE
        array = array.transpose(1, 0, 2)
    elif orientation == 6:  # ROTATE_270
        array = np.rot90(array, -1)
    elif orientation == 7:  # TRANSVERSE
        array = np.rot90(array, 2).transpose(1, 0, 2)
    elif orientation == 8:  # ROTATE_90
        array = np.rot90(array, 1)
    return np.ascontiguousarray(array)


def _decode_jpeg(data: bytes, path: str | None) -> np.ndarray:
    """libjpeg-turbo with the fast integer IDCT and smooth (not fast) upsampling: the pixels
    TensorFlow's ``decode_jpeg`` gives with its defaults, bit for bit (``tests/test_images.py``
    checks every sample photo and encoder variants), without importing TensorFlow."""
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=False, strict=True)
    except ValueError as exc:  # libjpeg's errors and (strict) warnings: a truncated or corrupt file
        raise ImageDecodeError(path, "truncated or corrupt JPEG data") from exc


def _pillow_to_rgb(image: Image.Image) -> np.ndarray:
    """Decode with Pillow and convert any mode to uint8 RGB (alpha over white, 16-bit scaled down)."""
    # load() runs inside decode_image's try, so a truncated file fails here rather than later. We do not
    # touch ImageFile.LOAD_TRUNCATED_IMAGES: it is Pillow-global, and a caller who set it opted in.
    image.load()
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        grey = np.asarray(image).astype(np.int64)
        grey = (np.clip(grey, 0, 65535) >> 8).astype(np.uint8)  # 16-bit -> 8-bit as TF does: x // 256
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode == "F":
        grey = np.clip(np.rint(np.asarray(image, dtype=np.float32)), 0, 255).astype(np.uint8)
        return np.repeat(grey[:, :, None], 3, axis=2)
    if mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = np.asarray(image.convert("RGBA"), dtype=np.uint32)
        alpha = rgba[:, :, 3:4]
        # Alpha-composite over white, rounded to nearest: (c * a + 255 * (255 - a)) / 255.
        return ((rgba[:, :, :3] * alpha + 255 * (255 - alpha) + 127) // 255).astype(np.uint8)
    if mode != "RGB":
        image = image.convert("RGB")
    return np.asarray(image, dtype=np.uint8)


# ------------------------------------------------------------------------------------------ geometry


def central_crop_box(height: int, width: int, fraction: float = CENTRAL_FRACTION) -> tuple[int, int, int, int]:
    """``(top, left, crop_height, crop_width)`` of ``tf.image.central_crop(image, fraction)``.

    TF computes the offset in float64 and truncates it, and the size as what remains after removing that
    offset on both sides; a naive ``round(size * fraction)`` is off by one pixel for many sizes.
    """
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"central fraction must be in (0, 1], got {fraction}")
    if height <= 0 or width <= 0:
        raise ValueError(f"image must have positive size, got {height}x{width}")
    if fraction == 1.0:
        return 0, 0, int(height), int(width)
    top = int((float(height) - float(height) * fraction) / 2)
    left = int((float(width) - float(width) * fraction) / 2)
    return top, left, int(height) - 2 * top, int(width) - 2 * left


@functools.lru_cache(maxsize=64)
def _interpolation(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of TF's legacy (``half_pixel_centers=False``) bilinear resize.

    Mirrors ``compute_interpolation_weights`` in TF's resize_bilinear_op.cc: all in float32,
    ``src = dst * (in / out)``, ``upper = min(ceil(src), in - 1)``.
    """
    scale = np.float32(in_size) / np.float32(out_size)
    src = np.arange(out_size, dtype=np.float32) * scale
    floor = np.floor(src)
    lower = np.maximum(floor.astype(np.int64), 0)
    upper = np.minimum(np.ceil(src).astype(np.int64), in_size - 1)
    lerp = (src - floor).astype(np.float32)
    for array in (lower, upper, lerp):
        array.flags.writeable = False
    return lower, upper, lerp


def _resize(image: np.ndarray, size: tuple[int, int], unit_scale: np.float32 | None) -> np.ndarray:
    """Bilinear resize over axes -3, -2; gathered pixels are cast to float32 (times ``unit_scale``)."""
    out_h, out_w = (int(s) for s in size)
    if out_h <= 0 or out_w <= 0:
        raise ValueError(f"output size must be positive, got {size}")
    if image.ndim < 3:
        raise ValueError(f"expected an image [H, W, C] (or [..., H, W, C]), got shape {image.shape}")
    in_h, in_w = image.shape[-3], image.shape[-2]
    if in_h <= 0 or in_w <= 0:
        raise ValueError(f"input image is empty: shape {image.shape}")
    channels = image.shape[-1]
    lead = image.shape[:-3]
    y_lo, y_hi, y_lerp = _interpolation(in_h, out_h)
    x_lo, x_hi, x_lerp = _interpolation(in_w, out_w)
    # Work on rows of W*C values: weights then broadcast along contiguous memory, which numpy does several
    # times faster than broadcasting [W, 1] against [W, C].
    cols_lo = (x_lo[:, None] * channels + np.arange(channels)).ravel()
    cols_hi = (x_hi[:, None] * channels + np.arange(channels)).ravel()
    x_weight = np.repeat(x_lerp, channels)
    y_weight = y_lerp[:, None]

    def horizontal(rows: np.ndarray) -> np.ndarray:
        """``left + (right - left) * x_lerp`` on the given source rows, in TF's operation order."""
        picked = np.take(image, rows, axis=-3).reshape((*lead, out_h, in_w * channels))
        left = np.take(picked, cols_lo, axis=-1)
        right = np.take(picked, cols_hi, axis=-1)
        if unit_scale is None:
            left, right = left.astype(np.float32), right.astype(np.float32)
        else:  # cast and scale in one pass; same float32 result as scaling the whole image first
            left = np.multiply(left, unit_scale, dtype=np.float32)
            right = np.multiply(right, unit_scale, dtype=np.float32)
        right -= left
        right *= x_weight
        left += right
        return left

    top = horizontal(y_lo)
    bottom = horizontal(y_hi)
    bottom -= top
    bottom *= y_weight
    top += bottom  # top + (bottom - top) * y_lerp
    return top.reshape((*lead, out_h, out_w, channels))


def resize_bilinear_tf1(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize ``[H, W, C]`` (or ``[..., H, W, C]``) to ``size = (height, width)``, float32 output.

    Reproduces ``tf.compat.v1.image.resize_bilinear(align_corners=False, half_pixel_centers=False)``
    (``tf.raw_ops.ResizeBilinear``) exactly: the TF-Slim checkpoints were trained and evaluated with this
    legacy sampling, which is *not* what ``tf.image.resize`` or Pillow do. Integer inputs are taken as
    float values (no scaling).
    """
    image = np.asarray(image)
    return _resize(image, size, None)


# ------------------------------------------------------------------------------------ preprocessing


def preprocess(
    image_u8: np.ndarray,
    size: tuple[int, int],
    *,
    central_fraction: float | None = CENTRAL_FRACTION,
) -> np.ndarray:
    """TF-Slim evaluation preprocessing: float32 ``[height, width, 3]`` in [0, 1], the module input.

    ``x / 255`` (as ``convert_image_dtype``: times float32(1/255)), ``central_crop(central_fraction)``
    (``None`` or 1.0: no crop), then :func:`resize_bilinear_tf1` to ``size = (height, width)`` and a
    clip to [0, 1]. The network maps to [-1, 1] itself. A float input is taken as already in [0, 1].
    The crop is taken on the uint8 pixels and only the pixels the resize reads are converted; both are
    element-wise, so the result is identical to converting the whole image first, only faster.
    """
    image = np.asarray(image_u8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an RGB image [H, W, 3], got shape {image.shape}")
    if image.dtype == np.uint8:
        unit_scale: np.float32 | None = _U8_TO_UNIT
    elif np.issubdtype(image.dtype, np.floating):
        unit_scale = None
    else:
        raise ValueError(f"expected uint8 (or float in [0, 1]) pixels, got {image.dtype}")
    if central_fraction is not None and central_fraction != 1.0:
        top, left, crop_h, crop_w = central_crop_box(image.shape[0], image.shape[1], central_fraction)
        image = image[top : top + crop_h, left : left + crop_w]
    out = _resize(image, size, unit_scale)
    np.clip(out, 0.0, 1.0, out=out)
    return out


def load_image(
    source: str | os.PathLike[str] | bytes,
    size: tuple[int, int],
    *,
    central_fraction: float | None = CENTRAL_FRACTION,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """:func:`decode_image` then :func:`preprocess`: a file to the float32 [0, 1] module input."""
    return preprocess(decode_image(source, max_pixels=max_pixels), size, central_fraction=central_fraction)
