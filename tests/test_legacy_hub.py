"""The `tf1_hub` exports in the real `hub.Module`: tensorflow_hub 0.15 on TF 2.15, the last stack
that has it, in the legacy virtualenv `make test` builds (`make legacy-venv`). The module pages'
code runs there unchanged, with handles `install-hub-cache` put into the cache and with an export
folder, while every request to the network fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REFERENCE
from inception_hub.cli import main
from inception_hub.export.tf1_hub import HUB_MODULE_COLLECTIONS
from inception_hub.nets.layers import BATCH_NORM_MOMENTUM, WEIGHT_DECAY
from inception_hub.tfhub import cache as hub_cache

pytestmark = pytest.mark.slow  # exports three TF1 modules and runs them in a second TensorFlow

HERE = Path(__file__).resolve().parent
LEGACY_PYTHON = HERE.parent / ".venv-legacy" / "bin" / "python"
V1_C1 = "https://tfhub.dev/google/imagenet/inception_v1/classification/1"
V1_FV1 = "https://tfhub.dev/google/imagenet/inception_v1/feature_vector/1"
IRV2_C1 = "https://tfhub.dev/google/imagenet/inception_resnet_v2/classification/1"
OFFLINE = {k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


@pytest.fixture(scope="module")
def tfhub_cache(checkpoints, tmp_path_factory):
    cache = tmp_path_factory.mktemp("tfhub_modules")
    argv = ["install-hub-cache", "--tfhub-cache-dir", str(cache), "--no-progress"]
    argv += [f"--checkpoint=inception_v1={checkpoints['inception_v1', 'v1']}"]
    argv += [f"--checkpoint=inception_resnet_v2={checkpoints['inception_resnet_v2', 'v1']}"]
    assert main([*argv, V1_C1, V1_FV1, IRV2_C1]) == 0
    return cache


def test_tf1_exports_use_only_the_collections_hub_module_accepts(tfhub_cache):
    from tensorflow.core.protobuf import saved_model_pb2

    for url in (V1_C1, V1_FV1, IRV2_C1):
        pb = (tfhub_cache / hub_cache.folder_name(url) / "saved_model.pb").read_bytes()
        graphs = saved_model_pb2.SavedModel.FromString(pb).meta_graphs
        for graph in graphs:
            assert set(graph.collection_def) <= HUB_MODULE_COLLECTIONS, (url, list(graph.meta_info_def.tags))
            # As TF-Slim's: every variable a model variable, BatchNorm statistics included.
            model = graph.collection_def["model_variables"].bytes_list.value
            assert len(model) == len(graph.collection_def["variables"].bytes_list.value) > 200
        assert "update_ops" in {k for g in graphs if list(g.meta_info_def.tags) == ["train"] for k in g.collection_def}


def test_the_tf1_module_pages_run_unchanged_in_the_real_hub_module(tfhub_cache):
    if not LEGACY_PYTHON.exists():
        pytest.fail(f"{LEGACY_PYTHON} is missing: run `make legacy-venv` (or `make test`, which builds it)")
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"}
    env.update(OFFLINE, TFHUB_CACHE_DIR=str(tfhub_cache), TF_CPP_MIN_LOG_LEVEL="2", PYTHONNOUSERSITE="1")
    env.pop("PYTHONPATH", None)
    folder = tfhub_cache / hub_cache.folder_name(V1_FV1)  # an export folder, as a handle
    args = [str(REFERENCE), str(folder), str(BATCH_NORM_MOMENTUM), str(WEIGHT_DECAY)]
    proc = subprocess.run(
        [str(LEGACY_PYTHON), str(HERE / "legacy_hub_check.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tfhub_cache,
        timeout=1200,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-4000:]
    r = json.loads(lines[-1].removeprefix("RESULT "))
    assert r["versions"] == ["2.15.1", "0.15.0"]
    # The network was out of reach: the one handle not installed failed on its one attempt.
    assert r["not_installed"] is not None and r["probe_attempts"] >= 1 and len(r["attempts"]) == r["probe_attempts"]

    sizes = {"inception_v1": [224, 224], "inception_resnet_v2": [299, 299]}
    for name, page in r["pages"].items():
        arch, kind = name.split("/")
        assert page["size"] == sizes[arch], name
        assert page["error"] < 1e-4, (name, page)
        wanted = {"default", "image_feature_vector"} | ({"image_classification"} if kind == "classification" else set())
        assert set(page["signatures"]) == wanted, name
        assert all(e < 1e-4 for e in page["signature_errors"].values()), (name, page["signature_errors"])
    assert all(e < 1e-4 for e in r["feature_vector_signature"].values()), r["feature_vector_signature"]

    train = r["train"]
    assert train["update_ops"] == 2 * 57 and train["trainable_variables"] > 100  # mean and variance per BatchNorm
    assert train["weights_moved"] > 0 and train["moving_mean_moved"] > 0
    assert train["moving_mean_error"] < 1e-4  # moved at the module's momentum
    reg, expected_reg = train["regularization"]
    assert reg == pytest.approx(expected_reg, rel=1e-4) and reg > 0


def test_the_legacy_check_refuses_the_network(tmp_path):
    """The guard the legacy script installs fails a request, so a passing run made none."""
    code = (
        "import sys, urllib.request\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from legacy_hub_check import block_network\n"
        "attempts = block_network()\n"
        "try:\n"
        "    urllib.request.urlopen('https://tfhub.dev/google/imagenet/inception_v1/classification/1', timeout=5)\n"
        "except OSError as e:\n"
        "    print('refused', len(attempts))\n"
    )
    env = {k: v for k, v in os.environ.items() if k.lower() != "no_proxy"} | OFFLINE
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.stdout.strip() == "refused 1", out.stderr
