"""Shared fixtures: the synthetic reference checkpoints and the reference outputs in ../shared."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("INCEPTION_HUB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
REFERENCE = SHARED / "reference"
IMAGES = SHARED / "images"
SIZES = {"inception_v1": ["224x224", "256x320"], "inception_resnet_v2": ["299x299", "256x320"]}


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Never touch the user's cache or the network: each test gets an empty cache, offline. The
    default engine follows the card's order: measuring it (seconds, in every fresh cache) is
    tested on its own, with known timings (test_engine_choice.py)."""
    monkeypatch.setenv("INCEPTION_HUB_CACHE", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.setenv("INCEPTION_HUB_OFFLINE", "1")
    monkeypatch.setenv("INCEPTION_HUB_MEASURE", "0")


def _synth():
    spec = importlib.util.spec_from_file_location("synth_checkpoint", REFERENCE / "synth_checkpoint.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def synth():
    if not REFERENCE.is_dir():
        pytest.fail(f"reference data not found at {REFERENCE}; set INCEPTION_HUB_SHARED")
    return _synth()


@pytest.fixture(scope="session")
def synth_weights(synth):
    """{arch: weights} with the seed-0 synthetic values; the digest must equal the reference's."""
    out = {}
    for arch in SIZES:
        w = synth.synth_weights(arch, 0)
        meta = json.loads((REFERENCE / arch / "reference_seed0.json").read_text())
        assert synth.digest(w) == meta["weights_sha256"]
        out[arch] = w
    return out


@pytest.fixture(scope="session")
def checkpoints(synth, synth_weights, tmp_path_factory):
    """{(arch, fmt): path}: V1 single-file (like the 2016 releases) and V2 (.index + .data)."""
    root = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for arch, w in synth_weights.items():
        v1 = root / arch / "v1" / f"{arch}.ckpt"
        synth.write_checkpoint(w, str(v1), "v1")
        v2 = root / arch / "v2" / "model.ckpt"
        synth.write_checkpoint(w, str(v2), "v2")
        paths[arch, "v1"], paths[arch, "v2"] = v1, v2
    return paths


@pytest.fixture(scope="session")
def v1_ckpt(checkpoints) -> str:
    """The inception_v1 reference checkpoint in the 2016 release's format (V1, one file)."""
    return str(checkpoints["inception_v1", "v1"])


@pytest.fixture(scope="module")
def models(checkpoints):
    """inception_v1 and its feature vector built for the server (fresh per test module)."""
    from inception_hub.serve import build

    ckpt = str(checkpoints["inception_v1", "v2"])
    return [build("inception_v1", ckpt), build("inception_v1/feature_vector", ckpt)]


@pytest.fixture(scope="session")
def clf(v1_ckpt):
    """inception_v1 classification/5 on the reference weights, on the default backend."""
    import inception_hub

    return inception_hub.load("google/imagenet/inception_v1/classification/5", checkpoint=v1_ckpt)


def reference(arch: str, size: str) -> dict[str, np.ndarray]:
    with np.load(REFERENCE / arch / f"reference_seed0_{size}.npz") as z:
        return {k: z[k] for k in z.files}


def reference_images(arch: str) -> list[Path]:
    names = json.loads((REFERENCE / arch / "reference_seed0.json").read_text())["images"]
    return [IMAGES / "imagenet-sample" / n if (IMAGES / "imagenet-sample" / n).exists() else IMAGES / n for n in names]
