"""Regenerate src/inception_hub/data/ImageNetLabels.txt from WordNet synset lemmas.

The file is "background" followed by the first lemma of each ILSVRC-2012 synset in wnid order,
which is how TensorFlow's ImageNetLabels.txt was made. The synset list and lemmas come from the
data files installed with timm (`pip install --no-deps timm`; torch is not needed).

    python tools/make_labels.py
"""

import hashlib
import importlib.util
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src" / "inception_hub" / "data" / "ImageNetLabels.txt"


def main() -> None:
    spec = importlib.util.find_spec("timm")
    if spec is None or spec.origin is None:
        raise SystemExit("timm's data files are needed: pip install --no-deps timm")
    info = Path(spec.origin).parent / "data" / "_info"
    wnids = (info / "imagenet_synsets.txt").read_text().split()
    lemmas = dict(line.split("\t", 1) for line in (info / "imagenet_synset_to_lemma.txt").read_text().splitlines())
    labels = ["background"] + [lemmas[w].split(",")[0].strip() for w in wnids]
    text = "\n".join(labels)  # the official file has no trailing newline
    OUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUT}: {len(labels)} labels, sha256 {hashlib.sha256(text.encode()).hexdigest()}")


if __name__ == "__main__":
    main()
