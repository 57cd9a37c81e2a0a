"""`make demo`'s script offline: it imports the synthetic weights into the cache and says so, so
the README's next commands, run in the same cache, find weights (they once failed there)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_offline_demo_leaves_weights_the_next_commands_use(tmp_path):
    env = {**os.environ, "INCEPTION_HUB_CACHE": str(tmp_path / "cache"), "INCEPTION_HUB_OFFLINE": "1"}
    demo = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py")], capture_output=True, text=True, env=env, timeout=600
    )
    assert demo.returncode == 0, demo.stderr
    assert "synthetic reference" in demo.stderr and "chelsea.jpg" in demo.stdout
    nxt = subprocess.run(
        [sys.executable, "-m", "inception_hub.cli", "models"], capture_output=True, text=True, env=env, timeout=120
    )
    assert "inception_v1/classification/5" in nxt.stdout and "cached (imported, not the release)" in nxt.stdout
    code = "import inception_hub; print(inception_hub.load('inception_v1', backend='onnxruntime').handle)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert run.stdout.strip() == "google/imagenet/inception_v1/classification/5", run.stderr
