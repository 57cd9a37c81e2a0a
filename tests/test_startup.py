"""Start-up of `inception-hub classify` with warm caches: it imports only what the command needs
(no TensorFlow, Keras or OpenVINO on ONNX Runtime) and reads no checkpoint when the engine model
built from it is cached; ONNX Runtime starts from its cached optimised graph. Timing is measured
by benchmarks/startup.py, not here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inception_hub import source as source_module
from inception_hub.source import resolve_source
from inception_hub.weights import cache_dir

GOOD = Path(__file__).resolve().parents[2] / "shared" / "images" / "imagenet-sample" / "n01443537_goldfish.JPEG"
#: Packages a classify on ONNX Runtime has no use for.
UNNEEDED = ("tensorflow", "keras", "tf_keras", "tensorflow_hub", "openvino", "onnx", "torch", "jax", "ray")
UNNEEDED += ("aiohttp", "grpc", "usearch", "cv2", "matplotlib", "inception_hub.nets.onnx_builder")
#: ...nor for the other commands' modules (the parser imported them all).
UNNEEDED += ("inception_hub.accuracy", "inception_hub.similar", "inception_hub.serve", "inception_hub.finetune")
UNNEEDED += tuple(f"inception_hub.cli.{m}" for m in ("evaluate", "similar", "serving", "model_server", "finetune"))

#: Runs the CLI in a fresh process; with "no-weights", reading the weights fails the run.
SCRIPT = """
import json, sys
out, mode, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
if mode == "no-weights":
    import inception_hub.source as source

    def refuse(*args, **kwargs):
        raise AssertionError("the weights were read")

    source.load_weights = refuse
from inception_hub.cli import main

code = main(argv)
with open(out, "w") as f:
    json.dump({"code": code, "modules": sorted(sys.modules)}, f)
"""


def classify(tmp_path: Path, mode: str, *args: str) -> list[str]:
    """The modules a `classify` of one photo imported, in a fresh process; it must succeed."""
    out = tmp_path / "run.json"
    env = {**os.environ, "INCEPTION_HUB_MEASURE": "0"}
    argv = ["classify", str(GOOD), "--no-progress", "-f", "json", *args]
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(out), mode, *argv], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["code"] == 0 and json.loads(proc.stdout)[0]["predictions"], proc.stderr
    return result["modules"]


def unneeded(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == u or m.startswith(f"{u}.") for u in UNNEEDED)]


@pytest.mark.parametrize("backend", [["--backend", "onnxruntime"], []], ids=["onnxruntime", "default"])
def test_classify_with_warm_caches_imports_nothing_it_does_not_need_nor_reads_the_checkpoint(
    tmp_path, v1_ckpt, backend
):
    classify(tmp_path, "read", "--checkpoint", v1_ckpt, *backend)  # builds and caches the engine model
    (optimized,) = (cache_dir() / "engines" / "inception_v1" / "onnxruntime_cache").glob("*.onnx")
    modules = classify(tmp_path, "no-weights", "--checkpoint", v1_ckpt, *backend)
    assert unneeded(modules) == [] and "onnxruntime" in modules
    assert optimized.is_file()


def test_the_cached_weights_are_not_read_either(tmp_path, v1_ckpt):
    from inception_hub.cli import main

    assert main(["fetch", "inception_v1", "--from", v1_ckpt, "--no-progress"]) == 0
    classify(tmp_path, "read", "--backend", "onnxruntime")
    assert unneeded(classify(tmp_path, "no-weights", "--backend", "onnxruntime")) == []


def test_the_identity_of_a_checkpoint_is_known_without_reading_it_until_it_changes(v1_ckpt, monkeypatch, tmp_path):
    copy = tmp_path / "v1.ckpt"
    copy.write_bytes(Path(v1_ckpt).read_bytes())
    source = resolve_source("inception_v1", copy, backend="onnxruntime")
    digest = source.identity()  # read: nothing is recorded yet
    from inception_hub.module import open_source

    open_source(source, progress=False)  # the engine model: the checkpoint's digest is recorded
    reads = []
    real = source_module.load_weights
    monkeypatch.setattr(source_module, "load_weights", lambda *a, **k: reads.append(a) or real(*a, **k))
    assert source.identity() == digest and reads == []
    module = open_source(source, progress=False)
    assert module.identity() == digest and reads == []
    assert module.head()[0].shape == (1024, 1001) and len(reads) == 1  # the values, when needed
    os.utime(copy, ns=(1, 1))  # another file under the same name, as far as anyone can tell
    assert source.identity() == digest and len(reads) == 2
