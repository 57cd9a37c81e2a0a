"""int8 engine models: post-training static quantization of the converted ONNX model.

One recipe for both engines: ONNX Runtime's static quantizer writes a QDQ model, weights int8 per
output channel, activations uint8, ranges from min/max calibration on photos. ONNX Runtime and
OpenVINO both run the QDQ model in int8. The weights' width depends on the CPU (`recipe_for`):
CPUs without VNNI multiply u8 x s8 pairs with a saturating 16-bit instruction that full 8-bit
weights overflow, so they get 7-bit weights (`reduce_range`); CPUs with VNNI (or AMX) accumulate
in 32 bits and get the full 8 bits, which is closer to fp32. Exports, which may run on any CPU,
use the portable 7-bit recipe.

Calibration streams one batch at a time (the quantizer merges ranges batch by batch), so its
memory is that of one batch whatever the number of photos. The default set is the bundled photos
(`data/calibration`) in seeded random crops; `calibration=DIR` uses the photos in DIR. The int8
model is cached beside the fp32 one, keyed by the weights and the calibration set.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cpu import CpuInfo
from ..errors import InputError
from ..images import decode_image, preprocess

DEFAULT_SET = Path(__file__).resolve().parents[1] / "data" / "calibration"
#: Calibration inputs per model, and per batch of the calibration runs.
COUNT = 256
BATCH = 4
#: Bump when the recipe changes, so cached int8 models are rebuilt.
RECIPE = 1


@dataclass(frozen=True)
class Recipe:
    """How wide the int8 weights are: 8 bits where the CPU has VNNI, else 7."""

    weight_bits: int

    @property
    def key(self) -> str:
        """Its part of the cached model's name."""
        return f"w{self.weight_bits}"


#: The recipe that runs without overflow on every CPU: for exports and CPUs without VNNI.
PORTABLE = Recipe(7)


def recipe_for(info: CpuInfo) -> Recipe:
    """The int8 recipe for a CPU: full 8-bit weights with VNNI or AMX, 7-bit without."""
    return Recipe(8) if info.vnni else PORTABLE


def calibration_files(directory: str | os.PathLike | None) -> list[Path]:
    """The photos to calibrate on: those under `directory`, or the bundled set."""
    from ..files import find_images

    root = Path(directory) if directory is not None else DEFAULT_SET
    if not root.is_dir():
        raise InputError(f"calibration folder {root} does not exist; pass a folder of photos, or leave it out")
    files, _ = find_images([root])
    if not files:
        raise InputError(f"no images in calibration folder {root}; pass a folder of JPEG or PNG photos")
    return [Path(f) for f in files]


def calibration_key(files: Sequence[Path]) -> str:
    """Names a calibration set in cache file names: its files' names and sizes."""
    h = hashlib.sha256(f"recipe{RECIPE}/{COUNT}".encode())
    for f in files:
        h.update(f"{f.name}\0{f.stat().st_size}\0".encode())
    return h.hexdigest()[:12]


class Calibration:
    """`count` model inputs from `files`, made one batch at a time: evenly spaced photos with the
    inference preprocessing when there are enough of them, otherwise seeded random crops (scale
    0.3-1, aspect 3:4-4:3, flips, brightness 0.8-1.2) of each in turn. Unreadable files are
    left out; at least one must decode. Nothing is kept decoded between batches."""

    def __init__(self, files: Sequence[Path], size: tuple[int, int], count: int = COUNT, seed: int = 0) -> None:
        self.size, self.count, self.seed = size, count, seed
        self.crops = len(files) < count
        picks = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
        self.files = [files[i] for i in picks if _readable(files[i])]
        if not self.files:
            raise InputError(f"none of the {len(picks)} calibration images could be read")
        if not self.crops:
            self.count = len(self.files)

    def __len__(self) -> int:
        """The number of batches."""
        return -(-self.count // BATCH)

    def batch(self, i: int) -> np.ndarray:
        """Batch `i`: [<= BATCH, H, W, 3] float32 in [0, 1], the same on every call."""
        return np.stack([self._input(n) for n in range(i * BATCH, min((i + 1) * BATCH, self.count))])

    def _input(self, n: int) -> np.ndarray:
        image = decode_image(str(self.files[n % len(self.files)]))
        if not self.crops:
            return preprocess(image, self.size)
        rng = np.random.default_rng([self.seed, n])
        h, w = image.shape[:2]
        area = h * w * rng.uniform(0.3, 1.0)
        aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
        ch, cw = min(h, int(round(np.sqrt(area / aspect)))), min(w, int(round(np.sqrt(area * aspect))))
        top, left = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crop = image[top : top + ch, left : left + cw]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out = preprocess(np.ascontiguousarray(crop), self.size, central_fraction=None)
        return np.clip(out * np.float32(rng.uniform(0.8, 1.2)), 0.0, 1.0)


def _readable(path: Path) -> bool:
    try:
        decode_image(str(path))
    except (OSError, ValueError):
        return False
    return True


def quantize(fp32_model: Path, calibration: Calibration, recipe: Recipe = PORTABLE) -> bytes:
    """The int8 QDQ model of `fp32_model`, calibrated on `calibration`'s inputs."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        """Hands the quantizer one batch per range, so it merges ranges as it goes."""

        def __init__(self) -> None:
            self.next, self.end = 0, len(calibration)

        def __len__(self) -> int:
            return len(calibration)

        def set_range(self, start_index: int, end_index: int) -> None:
            self.next, self.end = start_index, end_index

        def get_next(self) -> dict | None:
            if self.next >= self.end:
                return None
            self.next += 1
            return {"images": calibration.batch(self.next - 1)}

    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory(prefix="inception_hub_int8_") as tmp:
        prepared, out = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        # Shape inference and graph optimisation first, as the quantizer expects.
        quant_pre_process(str(fp32_model), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            Reader(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            reduce_range=recipe.weight_bits < 8,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"CalibStridedMinMax": 1},
        )
        return out.read_bytes()
