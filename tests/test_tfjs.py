"""TF.js graph models: `export --format tfjs` run in a real TF.js (npm's @tensorflow/tfjs on its
pure-JS CPU backend, in Node) against the TF-Slim reference, its weight quantization, and
serve-hub's TF.js routes loaded with `tf.loadGraphModel(URL, {fromTFHub: true})` unchanged."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

import inception_hub
from conftest import reference
from inception_hub.catalog import resolve
from inception_hub.errors import InputError, UnknownHandleError
from inception_hub.export import export
from inception_hub.export.tfjs import shard_names

ROOT = Path(__file__).resolve().parents[1]
#: Where `make tfjs` installs @tensorflow/tfjs (git-ignored); override with INCEPTION_HUB_TFJS.
NODE_MODULES = Path(os.environ.get("INCEPTION_HUB_TFJS", ROOT / ".tfjs")) / "node_modules"
CHECK = Path(__file__).with_name("tfjs_check.cjs")
V1 = "google/tfjs-model/imagenet/inception_v1/classification/3/default/1"


def node_tfjs(source: str, x: np.ndarray, tmp_path: Path) -> tuple[np.ndarray, dict]:
    """`source` (an export folder or a URL) predicted on `x` by TF.js in Node."""
    if shutil.which("node") is None or not (NODE_MODULES / "@tensorflow" / "tfjs").is_dir():
        pytest.fail(
            f"TF.js is not installed: run `make tfjs` (node and npm), or set INCEPTION_HUB_TFJS ({NODE_MODULES})"
        )
    inputs, out = tmp_path / "inputs.bin", tmp_path / "outputs.bin"
    np.ascontiguousarray(x, "<f4").tofile(inputs)
    env = dict(os.environ, NODE_PATH=str(NODE_MODULES))
    args = ["node", str(CHECK), source, str(inputs), ",".join(map(str, x.shape)), str(out)]
    run = subprocess.run(args, capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr
    info = json.loads(run.stdout.strip().splitlines()[-1])
    return np.fromfile(out, "<f4").reshape(info["shape"]), info


@pytest.fixture(scope="module")
def v1_tfjs(checkpoints, tmp_path_factory):
    """inception_v1 classification/3 as a TF.js graph model (float32 weights), exported once."""
    out = tmp_path_factory.mktemp("tfjs") / "v1"
    return export(
        "inception_v1/classification/3", out, checkpoints["inception_v1", "v2"], format="tfjs", progress=False
    )


@pytest.mark.slow  # exports
def test_the_model_json_is_a_graph_model_named_as_the_saved_model_signature(v1_tfjs):
    model = json.loads((v1_tfjs / "model.json").read_text())
    assert model["format"] == "graph-model" and model["convertedBy"].startswith("inception-hub")
    signature = model["signature"]
    assert list(signature["inputs"]) == ["images"] and list(signature["outputs"]) == ["logits"]
    dims = [d["size"] for d in signature["inputs"]["images"]["tensorShape"]["dim"]]
    assert dims == ["-1", "-1", "-1", "3"]  # version 3: any batch and size
    ops = {n["op"] for n in model["modelTopology"]["node"]}
    assert ops <= {"Const", "Identity", "Placeholder", "Conv2D", "FusedBatchNormV3", "Relu", "MaxPool", "ConcatV2"} | {
        "Mul",
        "Sub",
        "Mean",
        "Reshape",
        "MatMul",
        "BiasAdd",
    }
    consts = [n for n in model["modelTopology"]["node"] if n["op"] == "Const"]
    assert all("value" not in n["attr"] for n in consts)  # every constant lives in the shards
    names = [w["name"] for g in model["weightsManifest"] for w in g["weights"]]
    assert sorted(names) == sorted(n["name"] for n in consts)
    shards = list(shard_names(v1_tfjs))
    assert all(re.fullmatch(r"group1-shard\d+of\d+\.bin", s) for s in shards) and len(shards) == 7
    assert sum((v1_tfjs / s).stat().st_size for s in shards) == sum(
        4 * int(np.prod(w["shape"])) for g in model["weightsManifest"] for w in g["weights"]
    )
    meta = json.loads((v1_tfjs / "inception_hub.json").read_text())
    assert meta["format"] == "tfjs" and meta["tfjs_weight_quantization"] == "none"
    assert (v1_tfjs / "labels.txt").read_text().splitlines()[0] == "background"


@pytest.mark.slow  # exports
def test_tfjs_in_node_matches_tf_slim_within_1e_4(v1_tfjs, tmp_path):
    ref = reference("inception_v1", "256x320")  # not the training size: version 3 takes any
    x = ref["inputs_u8"][:2].astype(np.float32) / 255
    y, info = node_tfjs(str(v1_tfjs), x, tmp_path)
    assert info["backend"] == "cpu" and info["inputs"] == ["images"] and info["outputs"] == ["logits"]
    assert np.abs(y - ref["logits"][:2]).max() <= 1e-4


@pytest.mark.slow  # exports
@pytest.mark.parametrize("precision, bound", [("fp16", 0.05), ("int8", 0.5)])
def test_quantized_weights_are_smaller_and_close(checkpoints, v1_tfjs, precision, bound, tmp_path):
    """fp16 and int8 store the weights as float16 and uint8 (tensorflowjs_converter's
    --quantize_float16 / --quantize_uint8); TF.js dequantizes them and still ranks like the reference."""
    out = export(
        "inception_v1/classification/3",
        tmp_path / precision,
        checkpoints["inception_v1", "v2"],
        format="tfjs",
        precision=precision,
        progress=False,
    )
    size = lambda folder: sum((folder / s).stat().st_size for s in shard_names(folder))  # noqa: E731
    assert size(out) < size(v1_tfjs) * (0.55 if precision == "fp16" else 0.3)
    manifest = json.loads((out / "model.json").read_text())["weightsManifest"][0]["weights"]
    assert {w["quantization"]["dtype"] for w in manifest if w["dtype"] == "float32"} == {
        {"fp16": "float16", "int8": "uint8"}[precision]
    }
    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:1].astype(np.float32) / 255
    y, _ = node_tfjs(str(out), x, tmp_path)
    assert np.abs(y - ref["logits"][:1]).max() <= bound
    assert np.argmax(y) == np.argmax(ref["logits"][0])


@pytest.mark.slow  # exports
def test_inception_resnet_v2_feature_vector_runs_in_tfjs(checkpoints, tmp_path):
    """The other network and kind, cheaply: at its 75x75 minimum, against the TF module."""
    out = export(
        "inception_resnet_v2/feature_vector/3",
        tmp_path / "irv2",
        checkpoints["inception_resnet_v2", "v2"],
        format="tfjs",
        progress=False,
    )
    x = reference("inception_resnet_v2", "299x299")["inputs_u8"][:1, ::4, ::4][:, :75, :75].astype(np.float32) / 255
    module = inception_hub.load(
        "inception_resnet_v2/feature_vector/3", checkpoints["inception_resnet_v2", "v2"], backend="tf"
    )
    y, info = node_tfjs(str(out), x, tmp_path)
    assert info["outputs"] == ["feature_vector"] and y.shape == (1, 1536)
    assert np.abs(y - module(x)).max() <= 1e-4


def test_tfjs_refusals(checkpoints, tmp_path):
    with pytest.raises(InputError, match="quantizes its weights alone"):
        export("inception_v1/classification/3", tmp_path / "a", format="tfjs", precision="int8", calibration=tmp_path)
    with pytest.raises(InputError, match="tfjs exports in fp32 or int8 or fp16, not bf16"):
        export("inception_v1/classification/3", tmp_path / "b", format="tfjs", precision="bf16")


@pytest.fixture(scope="module")
def hub_url(checkpoints, tmp_path_factory):
    env = dict(os.environ, INCEPTION_HUB_CACHE=str(tmp_path_factory.mktemp("hubcache")), INCEPTION_HUB_OFFLINE="1")
    ckpt = f"inception_v1={checkpoints['inception_v1', 'v2']}"
    args = [sys.executable, "-m", "inception_hub.cli", "serve-hub", "--port", "0", "--quiet", "--checkpoint", ckpt]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    match = re.search(r"http://127\.0\.0\.1:\d+", proc.stdout.readline())
    if not match:
        proc.kill()
        pytest.fail(f"server did not start: {proc.stderr.read()}")
    yield match.group(0)
    proc.terminate()
    proc.wait(timeout=30)


def get(url: str) -> tuple[int, dict, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=300) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


@pytest.mark.slow  # exports
def test_serve_hub_serves_tfjs_at_tfhub_paths_to_load_graph_model(hub_url, v1_tfjs, tmp_path):
    """Web code's URL with only the host changed: TF.js asks for model.json?tfjs-format=file and
    the shards beside it, and predicts as the export does."""
    ref = reference("inception_v1", "224x224")
    x = ref["inputs_u8"][:1].astype(np.float32) / 255
    y, info = node_tfjs(f"{hub_url}/{V1}", x, tmp_path)
    assert info["outputs"] == ["logits"] and np.abs(y - ref["logits"][:1]).max() <= 1e-4
    status, headers, body = get(f"{hub_url}/{V1}/model.json?tfjs-format=file")
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert headers["Access-Control-Allow-Origin"] == "*"  # a page of any origin may load it
    assert json.loads(body)["signature"] == json.loads((v1_tfjs / "model.json").read_text())["signature"]
    status, headers, body = get(f"{hub_url}/{V1}/group1-shard7of7.bin?tfjs-format=file")
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert body == (v1_tfjs / "group1-shard7of7.bin").read_bytes()  # the same weights, the same bytes


@pytest.mark.slow  # exports
@pytest.mark.parametrize(
    "path",
    [
        "models/google/inception-v1/TfJs/classification/1",
        "models/google/inception-v1/frameworks/tfJs/variations/classification/versions/1",
        "google/inception-v1/tfJs/classification/1",
    ],
)
def test_kaggle_tfjs_spellings_are_the_same_model(hub_url, path):
    canonical = get(f"{hub_url}/{V1}/model.json?tfjs-format=file")
    status, _, body = get(f"{hub_url}/{path}/model.json?tfjs-format=file")
    assert status == 200 and body == canonical[2]


@pytest.mark.slow  # exports
def test_tfjs_pages_and_refusals(hub_url):
    status, headers, body = get(f"{hub_url}/{V1}")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"loadGraphModel" in body and b"fromTFHub: true" in body
    assert get(f"{hub_url}/{V1}/group1-shard9of9.bin")[0] == 404  # not one of its files
    status, _, body = get(
        f"{hub_url}/google/tfjs-model/imagenet/inception_resnet_v2/classification/3/default/1/model.json"
    )
    assert status == 503 and b"not cached" in body  # no weights given for it, and no download


def test_tfjs_handles_parse_and_python_says_where_they_run():
    from inception_hub.catalog import tfjs_spec

    assert tfjs_spec(f"https://tfhub.dev/{V1}") == resolve("inception_v1/classification/3")
    assert tfjs_spec("https://www.kaggle.com/models/google/inception-resnet-v2/TfJs/feature-vector/1") == resolve(
        "inception_resnet_v2/feature_vector/3"
    )
    assert tfjs_spec("google/imagenet/inception_v1/classification/5") is None
    assert tfjs_spec("google/inception-v1/tfJs/classification/7") is None  # no such Kaggle version
    with pytest.raises(UnknownHandleError, match="serve-hub serves it") as e:
        resolve(f"https://tfhub.dev/{V1}")
    assert "--format tfjs" in str(e.value)


@pytest.mark.slow  # exports
def test_loading_a_tfjs_folder_in_python_says_where_it_runs(v1_tfjs):
    """It used to answer "backend tfjs is not installed: pip install 'inception-hub[engine]'"."""
    with pytest.raises(InputError, match="TF.js graph model: it runs in TF.js") as refused:
        inception_hub.load(v1_tfjs)
    assert "pip install" not in str(refused.value)
