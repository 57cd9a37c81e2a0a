"""Classify the bundled sample photos with Inception V1: the end-to-end path a user takes.

The first run downloads the official TF-Slim checkpoint into the cache. Where that is not
possible (no internet) and the project's reference data sits beside the checkout, it imports the
synthetic reference checkpoint into the cache instead (as `inception-hub fetch --from` does), and
says so: the classes are then not meaningful, but every stage (weights validation, decoding,
preprocessing, network, labels) runs for real, and the README's next commands run too. `models`
and `evaluate` show the weights as imported; `inception-hub cache --remove inception_v1` then
`inception-hub fetch inception_v1` puts the official ones in their place.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from inception_hub import cli, fetch
from inception_hub.errors import WeightsUnavailableError
from inception_hub.weights import save_npz

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "src" / "inception_hub" / "data" / "samples"
SHARED_REFERENCE = ROOT.parent / "shared" / "reference"


def synthetic_checkpoint() -> str | None:
    script = SHARED_REFERENCE / "synth_checkpoint.py"
    if not script.is_file():
        return None
    # The synthetic weights as a converted .npz: the reference script needs TensorFlow only to
    # write them in TF's checkpoint format, and the demo runs on the lean core.
    out = ROOT / ".demo" / "inception_v1.npz"
    if not out.is_file():
        spec = importlib.util.spec_from_file_location("synth_checkpoint", script)
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        out.parent.mkdir(exist_ok=True)
        save_npz(mod.synth_weights("inception_v1", 0), out)
    return str(out)


def main() -> int:
    args = ["classify", str(SAMPLES), "--model", "google/imagenet/inception_v1/classification/5", "--top-k", "5"]
    try:
        fetch("inception_v1")
    except WeightsUnavailableError as e:
        ckpt = synthetic_checkpoint()
        if ckpt is None:
            print(e, file=sys.stderr)
            return 2
        fetch("inception_v1", source=ckpt, progress=False)
        print(
            "NOTE: the official weights could not be downloaded here, so the synthetic reference\n"
            f"checkpoint ({ckpt}) was imported into the cache instead. The pipeline is real; the\n"
            "predicted classes are not. For the official weights, once online:\n"
            "  inception-hub cache --remove inception_v1 && inception-hub fetch inception_v1\n",
            file=sys.stderr,
        )
    return cli.main(args)


if __name__ == "__main__":
    sys.exit(main())
