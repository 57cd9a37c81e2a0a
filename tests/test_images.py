"""Tests for inception_hub.images: TF-exact preprocessing, every input format, and clear decode errors."""

from __future__ import annotations

import io
import json
import os
import struct
import warnings
import zlib
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image, ImageOps

from conftest import IMAGES, SHARED
from inception_hub.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    ImageDecodeError,
    central_crop_box,
    decode_image,
    load_image,
    preprocess,
    resize_bilinear_tf1,
)

SAMPLE = IMAGES / "imagenet-sample"
GRACE_HOPPER = IMAGES / "grace_hopper.jpg"
ROTATED_JPEG = SAMPLE / "n02951585_can_opener.JPEG"  # the one sample photo with EXIF orientation 6


def _tf_pipeline(data: bytes, size: tuple[int, int], dct_method: str = "") -> np.ndarray:
    """The TF-Slim eval preprocessing, built from TensorFlow's own ops."""
    image = tf.io.decode_jpeg(data, channels=3, dct_method=dct_method)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.central_crop(image, 0.875)
    return tf.compat.v1.image.resize_bilinear(image[None], size, align_corners=False)[0].numpy()


def _subset() -> list[Path]:
    """Deterministic 40 photos: every greyscale one, then every n-th of the rest, and Grace Hopper."""
    files = sorted(SAMPLE.glob("*.JPEG"))
    assert len(files) == 900, f"expected 900 sample photos in {SAMPLE}"
    files.remove(ROTATED_JPEG)  # TF's decode_jpeg ignores EXIF orientation; tested on its own below
    grey = [f for f in files if Image.open(f).mode == "L"]
    assert grey, "the sample should contain greyscale JPEGs"
    colour = [f for f in files if f not in grey]
    picked = grey + colour[:: max(1, len(colour) // (39 - len(grey)))]
    return [*picked[:39], GRACE_HOPPER]


SUBSET = _subset()


# --------------------------------------------------------------------------------------------- resize


@pytest.mark.parametrize(
    ("shape", "size"),
    [
        ((375, 500, 3), (224, 224)),  # down
        ((333, 280, 3), (299, 299)),  # mixed: down in H, up in W
        ((7, 9, 3), (224, 224)),  # strong up
        ((640, 427, 3), (256, 320)),
        ((5, 5, 1), (3, 11)),
        ((100, 1, 4), (17, 4)),
        ((1, 1, 3), (4, 4)),
        ((2, 31, 17, 3), (13, 40)),  # batch
    ],
)
def test_resize_matches_tf_resize_bilinear(shape: tuple[int, ...], size: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape) + size[0])
    image = rng.random(shape, dtype=np.float32)
    batch = image if image.ndim == 4 else image[None]
    expected = tf.raw_ops.ResizeBilinear(
        images=batch, size=list(size), align_corners=False, half_pixel_centers=False
    ).numpy()
    expected = expected if image.ndim == 4 else expected[0]
    got = resize_bilinear_tf1(image, size)
    assert got.dtype == np.float32
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_resize_uint8_is_taken_as_float_values() -> None:
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    expected = tf.raw_ops.ResizeBilinear(images=image[None], size=[31, 97], align_corners=False).numpy()[0]
    got = resize_bilinear_tf1(image, (31, 97))
    assert got.max() > 200  # not scaled to [0, 1]
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_resize_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="output size"):
        resize_bilinear_tf1(np.zeros((4, 4, 3), np.float32), (0, 4))
    with pytest.raises(ValueError, match=r"\[H, W, C\]"):
        resize_bilinear_tf1(np.zeros((4, 4), np.float32), (2, 2))


# ------------------------------------------------------------------------------------------ central crop


@pytest.mark.parametrize("fraction", [0.875, 0.5, 0.33, 0.9, 1.0])
@pytest.mark.parametrize(("height", "width"), [(1, 1), (7, 8), (224, 299), (333, 500), (375, 499), (1000, 3)])
def test_central_crop_box_matches_tf(height: int, width: int, fraction: float) -> None:
    # Label every pixel with its position, so the crop tells where it starts.
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    image = np.stack([rows, cols, np.zeros_like(rows)], axis=-1).astype(np.int32)
    cropped = tf.image.central_crop(image, fraction).numpy()
    top, left, crop_h, crop_w = central_crop_box(height, width, fraction)
    assert (crop_h, crop_w) == cropped.shape[:2]
    assert (top, left) == tuple(cropped[0, 0, :2])


def test_central_crop_box_is_not_naive_rounding() -> None:
    # 375 * 0.875 = 328.125; TF starts at int(23.4375) = 23 and keeps 375 - 46 = 329 rows, not 328.
    assert central_crop_box(375, 500) == (23, 31, 329, 438)


@pytest.mark.parametrize("fraction", [0.0, -0.5, 1.5])
def test_central_crop_box_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="central fraction"):
        central_crop_box(100, 100, fraction)


# ------------------------------------------------------------------------------ pipeline vs TensorFlow


@pytest.mark.parametrize("size", [(224, 224), (299, 299)])
def test_pipeline_matches_tf_on_real_photos(size: tuple[int, int]) -> None:
    worst = 0.0
    for path in SUBSET:
        ours = preprocess(decode_image(path), size)
        assert ours.shape == (*size, 3) and ours.dtype == np.float32
        expected = _tf_pipeline(path.read_bytes(), size)
        worst = max(worst, float(np.abs(ours - expected).max()))
    # Measured bit-exact on all 901 photos; the contract is 1/255.
    assert worst <= 1e-6, f"max abs diff {worst * 255:.3f}/255"


def test_decode_uses_tf_jpeg_decoder_exactly() -> None:
    for path in SUBSET[::8]:
        data = path.read_bytes()
        expected = tf.io.decode_jpeg(data, channels=3).numpy()
        np.testing.assert_array_equal(decode_image(path), expected)
        np.testing.assert_array_equal(decode_image(data), expected)  # bytes work too


def test_pillow_default_jpeg_decoding_would_not_match_tf() -> None:
    # Why decode_image uses TF for JPEGs: Pillow's accurate IDCT equals TF's INTEGER_ACCURATE, but the
    # TF default (INTEGER_FAST) that made the reference inputs differs by far more than 1/255.
    data = GRACE_HOPPER.read_bytes()
    pillow = preprocess(np.asarray(Image.open(io.BytesIO(data)).convert("RGB")), (224, 224))
    np.testing.assert_array_equal(pillow, _tf_pipeline(data, (224, 224), "INTEGER_ACCURATE"))
    assert np.abs(pillow - _tf_pipeline(data, (224, 224))).max() > 2 / 255


def _reference_image_path(name: str) -> Path:
    return IMAGES / name if name == "grace_hopper.jpg" else SAMPLE / name


@pytest.mark.parametrize(
    ("model", "size"),
    [
        ("inception_v1", (224, 224)),
        ("inception_v1", (256, 320)),
        ("inception_resnet_v2", (299, 299)),
        ("inception_resnet_v2", (256, 320)),
    ],
)
def test_reproduces_reference_inputs(model: str, size: tuple[int, int]) -> None:
    folder = SHARED / "reference" / model
    names = json.loads((folder / "reference_seed0.json").read_text())["images"]
    reference = np.load(folder / f"reference_seed0_{size[0]}x{size[1]}.npz")["inputs_u8"]
    ours = np.stack([load_image(_reference_image_path(n), size) for n in names]) * 255
    assert ours.shape == reference.shape
    # inputs_u8 = round(tf_pipeline * 255): we land within the rounding, and round to the same bytes.
    assert np.abs(ours - reference).max() <= 0.5 + 1e-4
    np.testing.assert_array_equal(np.round(ours).astype(np.uint8), reference)


# ------------------------------------------------------------------------------------------ preprocess


def test_preprocess_output_contract() -> None:
    image = decode_image(GRACE_HOPPER)
    out = preprocess(image, (224, 224))
    assert out.dtype == np.float32 and out.shape == (224, 224, 3)
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert out.max() > 0.9 and out.min() < 0.1  # [0, 1], not [-1, 1] or [0, 255]


def test_preprocess_no_crop_and_float_input() -> None:
    image = decode_image(GRACE_HOPPER)
    no_crop = preprocess(image, (100, 80), central_fraction=None)
    np.testing.assert_array_equal(no_crop, preprocess(image, (100, 80), central_fraction=1.0))
    as_float = image.astype(np.float32) * np.float32(1 / 255)
    np.testing.assert_array_equal(preprocess(as_float, (100, 80), central_fraction=None), no_crop)
    assert not np.array_equal(no_crop, preprocess(image, (100, 80)))


def test_preprocess_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="RGB"):
        preprocess(np.zeros((10, 10), np.uint8), (5, 5))
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((10, 10, 3), np.int32), (5, 5))
    with pytest.raises(ValueError, match="central fraction"):
        preprocess(np.zeros((10, 10, 3), np.uint8), (5, 5), central_fraction=2.0)


# ---------------------------------------------------------------------------------------------- formats


def test_image_extensions() -> None:
    assert {".jpg", ".jpeg", ".jpe", ".png", ".gif", ".bmp", ".webp"} <= IMAGE_EXTENSIONS
    readable = Image.registered_extensions()
    for ext in IMAGE_EXTENSIONS:
        assert ext == ext.lower() and ext.startswith(".")
        assert ext in readable, f"Pillow cannot read {ext}"


def _random_rgb(height: int = 12, width: int = 17, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.mark.parametrize(
    ("suffix", "options"),
    [(".png", {}), (".bmp", {}), (".webp", {"lossless": True}), (".tiff", {}), (".ppm", {})],
)
def test_lossless_formats_round_trip(tmp_path: Path, suffix: str, options: dict) -> None:
    pixels = _random_rgb()
    path = tmp_path / f"img{suffix}"
    Image.fromarray(pixels).save(path, **options)
    out = decode_image(path)
    assert out.dtype == np.uint8 and out.shape == pixels.shape
    np.testing.assert_array_equal(out, pixels)
    np.testing.assert_array_equal(decode_image(str(path)), pixels)  # str and PathLike


def test_gif_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 6), colour) for colour in [(255, 0, 0), (0, 0, 255), (0, 255, 0)]]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=50, loop=0)
    assert Image.open(path).n_frames == 3
    out = decode_image(path)
    assert out.shape == (6, 8, 3)
    assert (out == [255, 0, 0]).all()


def test_palette_with_transparency_goes_over_white(tmp_path: Path) -> None:
    image = Image.new("P", (4, 2), 0)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    image.putpixel((2, 0), 1)
    image.putpixel((3, 1), 1)
    path = tmp_path / "pal.png"
    image.save(path, transparency=0)
    out = decode_image(path)
    assert out.shape == (2, 4, 3)
    assert out[0, 2].tolist() == [10, 200, 30] and out[1, 3].tolist() == [10, 200, 30]
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 2].tolist() == [255, 255, 255]


def test_rgb_colour_key_transparency_goes_over_white(tmp_path: Path) -> None:
    pixels = np.array([[[1, 2, 3], [40, 50, 60]]], np.uint8)
    path = tmp_path / "key.png"
    Image.fromarray(pixels).save(path, transparency=(1, 2, 3))
    assert decode_image(path).tolist() == [[[255, 255, 255], [40, 50, 60]]]


def test_palette_without_transparency(tmp_path: Path) -> None:
    image = Image.new("P", (3, 3), 1)
    image.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    path = tmp_path / "pal.bmp"
    image.save(path)
    assert (decode_image(path) == [10, 200, 30]).all()


def test_rgba_composited_over_white(tmp_path: Path) -> None:
    alpha = np.array([[0, 128, 255, 64]], np.uint8)
    rgba = np.zeros((1, 4, 4), np.uint8)
    rgba[..., :3] = [100, 50, 0]
    rgba[..., 3] = alpha
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = decode_image(path)
    a = alpha[0].astype(np.float64)[:, None] / 255
    expected = np.round(np.array([100, 50, 0]) * a + 255 * (1 - a))
    np.testing.assert_array_equal(out[0], expected)
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert out[0, 2].tolist() == [100, 50, 0]  # opaque -> unchanged
    assert out[0, 1].tolist() == [177, 152, 127]  # half: 100*128/255 + 127 = 177.2, ...


def test_la_composited_over_white(tmp_path: Path) -> None:
    la = np.array([[[0, 0], [100, 255], [100, 0], [0, 128]]], np.uint8)
    path = tmp_path / "la.png"
    Image.fromarray(la, "LA").save(path)
    out = decode_image(path)
    assert out[0, :, 0].tolist() == [255, 100, 255, 127]
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


def test_16_bit_grey_is_scaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 255, 256, 1000, 32768, 65280, 65535]], np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    out = decode_image(path)
    assert out.shape == (1, 7, 3)
    # x >> 8, as tf.image.convert_image_dtype(uint16 -> uint8); Pillow's convert("L") would clip to 255.
    assert out[0, :, 0].tolist() == [0, 0, 1, 3, 128, 255, 255]
    assert (out == out[..., :1]).all()


def test_bilevel_and_grey_png(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 255, 0]], np.uint8)).convert("1").save(tmp_path / "bw.png")
    assert decode_image(tmp_path / "bw.png")[0, :, 1].tolist() == [0, 255, 0]
    Image.fromarray(np.array([[7, 99]], np.uint8), "L").save(tmp_path / "l.png")
    assert decode_image(tmp_path / "l.png").tolist() == [[[7, 7, 7], [99, 99, 99]]]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 8), (0, 255, 255, 0)).save(path, quality=95)  # cyan=0, magenta, yellow: red
    out = decode_image(path)
    assert out.shape == (8, 16, 3)
    assert np.abs(out.astype(int) - [255, 0, 0]).max() <= 8
    np.testing.assert_array_equal(out, np.asarray(Image.open(path).convert("RGB")))


def test_greyscale_jpeg_has_three_equal_channels() -> None:
    grey = next(f for f in SUBSET if Image.open(f).mode == "L")
    out = decode_image(grey)
    assert out.ndim == 3 and out.shape[2] == 3
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    assert out.std() > 10  # a real picture, not a flat fill


def _marked_image(height: int = 30, width: int = 50) -> np.ndarray:
    """Blue image with a red block in the top-left corner and a green one in the bottom-left."""
    pixels = np.zeros((height, width, 3), np.uint8)
    pixels[...] = [0, 0, 255]
    pixels[:10, :10] = [255, 0, 0]
    pixels[-10:, :10] = [0, 255, 0]
    return pixels


def _with_orientation(pixels: np.ndarray, path: Path, orientation: int, **options: object) -> Path:
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, exif=exif, **options)
    return path


def test_exif_orientation_6_jpeg(tmp_path: Path) -> None:
    path = _with_orientation(_marked_image(), tmp_path / "rot6.jpg", 6, quality=95)
    out = decode_image(path)
    # Orientation 6: the stored picture must be turned 90 degrees clockwise to be upright.
    assert out.shape == (50, 30, 3)
    assert np.abs(out[4, 25].astype(int) - [255, 0, 0]).max() < 40  # top-left block is now top-right
    assert np.abs(out[4, 4].astype(int) - [0, 255, 0]).max() < 40  # bottom-left block is now top-left
    assert np.abs(out[40, 15].astype(int) - [0, 0, 255]).max() < 40


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_matches_pillow_exif_transpose(tmp_path: Path, orientation: int) -> None:
    path = _with_orientation(_marked_image(), tmp_path / "o.png", orientation)
    expected = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    np.testing.assert_array_equal(decode_image(path), expected)


def test_exif_orientation_on_a_real_photo() -> None:
    assert Image.open(ROTATED_JPEG).getexif().get(0x0112) == 6
    stored = tf.io.decode_jpeg(ROTATED_JPEG.read_bytes(), channels=3).numpy()
    np.testing.assert_array_equal(decode_image(ROTATED_JPEG), np.rot90(stored, -1))


# ------------------------------------------------------------------------------------------ bad input


def _assert_decode_error(source: object, reason: str, **kwargs: object) -> ImageDecodeError:
    with pytest.raises(ImageDecodeError) as info:
        decode_image(source, **kwargs)  # type: ignore[arg-type]
    error = info.value
    assert isinstance(error, ValueError)
    assert reason in error.reason, error.reason
    if isinstance(source, (str, os.PathLike)):
        assert error.path == os.fspath(source)
        assert str(error).startswith(f"{os.fspath(source)}: ")
    return error


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    error = _assert_decode_error(path, "empty file (0 bytes)")
    assert str(error) == f"{path}: empty file (0 bytes)"


def test_truncated_jpeg(tmp_path: Path) -> None:
    data = GRACE_HOPPER.read_bytes()
    path = tmp_path / "half.jpg"
    path.write_bytes(data[: len(data) // 2])
    _assert_decode_error(path, "truncated or corrupt JPEG data")


def test_truncated_png(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    Image.fromarray(_random_rgb(64, 64)).save(buffer, "PNG")
    path = tmp_path / "half.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    _assert_decode_error(path, "truncated or corrupt PNG data")


def test_random_bytes_and_text(tmp_path: Path) -> None:
    noise = tmp_path / "noise.jpg"
    noise.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_decode_error(noise, "not an image file (unrecognized format)")
    text = tmp_path / "notes.png"
    text.write_text("this is not a picture\n" * 20)
    _assert_decode_error(text, "not an image file (unrecognized format)")
    error = _assert_decode_error(b"plain text bytes", "not an image file")
    assert error.path is None


def test_missing_path_and_directory(tmp_path: Path) -> None:
    _assert_decode_error(tmp_path / "nope.jpg", "file not found")
    _assert_decode_error(tmp_path, "is a directory")


def test_wrong_source_type() -> None:
    with pytest.raises(TypeError, match="path or bytes"):
        decode_image(123)  # type: ignore[arg-type]


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG that declares a huge size: what a decompression bomb looks like to the decoder."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    parts = [chunk(b"IHDR", header), chunk(b"IDAT", zlib.compress(b"\0" * 64)), chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(parts)


def test_decompression_bomb(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(20_000, 20_000))
    assert path.stat().st_size < 200
    _assert_decode_error(path, f"image too large (400000000 pixels > limit {DEFAULT_MAX_PIXELS}")
    # Between Pillow's warning and error thresholds: Pillow only warns, our own limit refuses it.
    path.write_bytes(_png_header_only(10_000, 10_000))
    with pytest.warns(Image.DecompressionBombWarning):
        _assert_decode_error(path, f"image too large (100000000 pixels > limit {DEFAULT_MAX_PIXELS}")
    # A caller's filter that makes Pillow's warning an exception gets the same error.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        _assert_decode_error(path, f"image too large (100000000 pixels > limit {DEFAULT_MAX_PIXELS})")
    # Lifting our limit leaves Pillow's, said as such.
    path.write_bytes(_png_header_only(20_000, 20_000))
    _assert_decode_error(path, "> Pillow's limit 178956970", max_pixels=None)


def test_default_limit_is_pillows_warning_threshold() -> None:
    # So that, by default, Pillow never warns about an image we accept.
    assert DEFAULT_MAX_PIXELS == Image.MAX_IMAGE_PIXELS


def test_max_pixels_on_a_real_image() -> None:
    error = _assert_decode_error(GRACE_HOPPER, "image too large (", max_pixels=1000)
    assert "> limit 1000" in error.reason
    assert decode_image(GRACE_HOPPER, max_pixels=None).shape == (606, 517, 3)


def test_load_image_passes_options_through() -> None:
    out = load_image(GRACE_HOPPER, (64, 48), central_fraction=None)
    assert out.shape == (64, 48, 3)
    expected = preprocess(decode_image(GRACE_HOPPER), (64, 48), central_fraction=None)
    np.testing.assert_array_equal(out, expected)
    with pytest.raises(ImageDecodeError, match="image too large"):
        load_image(GRACE_HOPPER, (64, 48), max_pixels=10)


def test_files_over_the_size_limit_are_refused_before_reading(tmp_path: Path, monkeypatch) -> None:
    import inception_hub.images as images

    path = tmp_path / "big.png"
    Image.fromarray(_random_rgb(64, 64)).save(path)
    monkeypatch.setattr(images, "MAX_FILE_BYTES", 100)
    with pytest.raises(ImageDecodeError, match=r"file too large \(\d+ bytes > limit 100\)"):
        decode_image(path)


def _jpeg_variants() -> list[tuple[str, bytes]]:
    """The same photos written the ways encoders write JPEGs: progressive, every chroma
    subsampling Pillow offers, greyscale, restart markers, odd sizes, low and high quality."""
    out = []
    base = Image.open(GRACE_HOPPER).convert("RGB")
    for w, h in ((base.width, base.height), (333, 257), (17, 9), (1, 1), (801, 3)):
        img = base.resize((w, h))
        for options in (
            {"quality": 90},
            {"quality": 30, "subsampling": "4:4:4"},
            {"quality": 75, "subsampling": "4:2:2"},
            {"quality": 75, "subsampling": "4:2:0", "progressive": True},
            {"quality": 95, "optimize": True, "restart_marker_blocks": 1},
        ):
            buf = io.BytesIO()
            img.save(buf, "JPEG", **options)
            out.append((f"{w}x{h} {options}", buf.getvalue()))
        buf = io.BytesIO()
        img.convert("L").save(buf, "JPEG", quality=80, progressive=True)
        out.append((f"{w}x{h} grey progressive", buf.getvalue()))
    return out


def test_jpeg_decoding_is_bit_identical_to_tensorflow_on_every_sample_and_variant() -> None:
    """No TensorFlow at run time, the same pixels: every JPEG of the shared images (all 901) and
    encoder variants, decoded as tf.io.decode_jpeg decodes them by default."""
    files = sorted(SAMPLE.glob("*.JPEG")) + [GRACE_HOPPER]
    assert len(files) == 901
    sources = [(str(f), f.read_bytes()) for f in files] + _jpeg_variants()
    checked = 0
    for name, data in sources:
        if Image.open(io.BytesIO(data)).mode not in ("RGB", "L"):
            continue  # CMYK: decoded by Pillow, which TensorFlow cannot convert anyway
        expected = tf.io.decode_jpeg(data, channels=3).numpy()
        ours = decode_image(data)
        if name == str(ROTATED_JPEG):  # EXIF orientation 6, which TF ignores: turn it back
            ours = np.rot90(ours, 1)
        np.testing.assert_array_equal(ours, expected, err_msg=name)
        checked += 1
    assert checked >= len(sources) - 5
