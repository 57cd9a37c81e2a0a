"""The README's runnable blocks (a `<!-- runnable -->` line before the fence) run as pasted,
in order, from a folder that looks like the checkout, against the reference checkpoint."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from inception_hub.cli import main

pytestmark = pytest.mark.slow  # exports modules and runs several commands

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"<!-- runnable -->\n```(python|sh)\n(.*?)```", re.S)


def runnable_blocks() -> list[tuple[str, str]]:
    return BLOCK.findall((ROOT / "README.md").read_text())


def test_the_readme_marks_its_runnable_blocks():
    kinds = [kind for kind, _ in runnable_blocks()]
    assert kinds.count("python") >= 2 and kinds.count("sh") >= 2


def test_runnable_readme_blocks_run_as_pasted(tmp_path, v1_ckpt):
    assert main(["fetch", "inception_v1", "--from", v1_ckpt, "--no-progress"]) == 0  # into the test's cache
    (tmp_path / "src").symlink_to(ROOT / "src")  # the checkout's files, without writing into it
    bin_dir = os.path.dirname(sys.executable)
    # tensorflow_hub's cache, and every request to the network failing: the TF-Hub code runs offline.
    env = dict(os.environ, PATH=bin_dir + os.pathsep + os.environ["PATH"], TFHUB_CACHE_DIR=str(tmp_path / "tfhub"))
    env.update(https_proxy="http://127.0.0.1:9", http_proxy="http://127.0.0.1:9", no_proxy="")
    for i, (kind, code) in enumerate(runnable_blocks()):
        cmd = [sys.executable, "-c", code] if kind == "python" else ["bash", "-e", "-o", "pipefail", "-c", code]
        proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"README block {i} ({kind}) failed:\n{code}\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "features.parquet").is_file() and (tmp_path / "inception_v1_fv1" / "tfhub_module.pb").is_file()
