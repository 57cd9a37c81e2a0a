"""Nearest-neighbour libraries for `inception-hub search`: build time, query time, recall@10
against exact search, and install size, measured in one process.

Two collections: the feature vectors of real photos (`--photos DIR`, embedded with the given
checkpoint; their re-encoded, resized and cropped copies are the queries), and N synthetic
vectors shaped like features (non-negative, clustered; `--n`, default 100k, 1536 floats like
Inception-ResNet-V2's). Compared: exact search as `search.Index` runs it (numpy, chunked),
usearch HNSW, and, when installed, faiss (exact `IndexFlatIP` and `IndexHNSWFlat`).

    python benchmarks/search.py --photos ../shared/images/imagenet-sample --checkpoint CKPT --json out.json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from common import photos, write_json
from PIL import Image

from inception_hub import load
from inception_hub.similar.index import exact_top_k, normalise


def install_mib(dist: str) -> float | None:
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    return sum(f.locate().stat().st_size for f in files if f.locate().is_file()) / 2**20


def copy_of(path: Path) -> bytes:
    """The issue's copy: 0.8x bilinear resize, 5% crop, JPEG quality 75."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    im = im.resize((int(w * 0.8), int(h * 0.8)), Image.BILINEAR)
    w, h = im.size
    dx, dy = int(w * 0.025), int(h * 0.025)
    buf = io.BytesIO()
    im.crop((dx, dy, w - dx, h - dy)).save(buf, "JPEG", quality=75)
    return buf.getvalue()


def photo_vectors(folder: str, checkpoint: str | None, limit: int) -> tuple[np.ndarray, np.ndarray]:
    from inception_hub import pipeline

    model = load("inception_v1/feature_vector", checkpoint, progress=False)
    files = [Path(f) for f in photos(folder, limit)]

    def embed(items: list) -> np.ndarray:
        return normalise(np.stack([r.output for r in pipeline.run(model, items, batch_size=32)]))

    with tempfile.TemporaryDirectory() as tmp:
        copies = []
        for f in files:
            copies.append(os.path.join(tmp, f.name))
            Path(copies[-1]).write_bytes(copy_of(f))
        return embed([str(f) for f in files]), embed(copies)


def synthetic(n: int, dim: int, queries: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.normal(size=(max(n // 100, 1), dim))).astype(np.float32)

    def sample(m: int) -> np.ndarray:
        pick = rng.integers(0, len(centres), m)
        return normalise(np.maximum(centres[pick] + rng.normal(scale=0.6, size=(m, dim)).astype(np.float32), 0))

    return sample(n), sample(queries)


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(b) for a, b in zip(found, truth, strict=True)]))


def one_at_a_time(search: Callable[[np.ndarray], object], queries: np.ndarray, n: int = 20) -> float:
    """Median ms for one query alone (a user waiting on one photo), over the first n queries."""
    times = []
    for q in queries[:n]:
        t = time.perf_counter()
        search(q[None])
        times.append(time.perf_counter() - t)
    return 1e3 * float(np.median(times))


def measure(name: str, base: np.ndarray, queries: np.ndarray, k: int = 10) -> list[dict]:
    """Each library's build and query time and recall@10, on the same vectors and queries."""
    print(f"{name}: {len(base)} vectors, {len(queries)} queries", flush=True)
    t = time.perf_counter()
    truth, _ = exact_top_k([base], queries, k)
    exact_s = time.perf_counter() - t
    rows = [
        {
            "set": name,
            "library": "exact (numpy, search.Index)",
            "build_s": 0.0,
            "query_ms": 1e3 * exact_s / len(queries),
            "one_query_ms": one_at_a_time(lambda q: exact_top_k([base], q, k), queries),
            "recall@10": 1.0,
        }
    ]
    for library, build, searches in candidates(base.shape[1]):
        t = time.perf_counter()
        index = build(base)
        built = time.perf_counter() - t
        print(f"  {library}: built in {built:.1f} s", flush=True)
        for setting, search in searches:
            t = time.perf_counter()
            found = search(index, queries, k)
            searched = time.perf_counter() - t
            single = one_at_a_time(lambda q, s=search, ix=index: s(ix, q, k), queries)
            rows.append(
                {
                    "set": name,
                    "library": f"{library} {setting}".strip(),
                    "build_s": built,
                    "query_ms": 1e3 * searched / len(queries),
                    "one_query_ms": single,
                    "recall@10": recall(found, truth),
                }
            )
    return rows


Search = Callable[[object, np.ndarray, int], np.ndarray]


def candidates(dim: int) -> list[tuple[str, Callable, list[tuple[str, Search]]]]:
    """(name, build(vectors), [(setting, search(index, queries, k) -> ids)]) per library
    installed; each graph is built once and searched at several widths (ef)."""
    from usearch.index import Index as Graph

    def usearch_build(base: np.ndarray):
        graph = Graph(ndim=dim, metric="cos", dtype="f32", connectivity=16, expansion_add=128)
        graph.add(np.arange(len(base)), base, log=False)
        return graph

    def usearch_search(ef: int) -> Search:
        def search(graph, queries: np.ndarray, k: int) -> np.ndarray:
            graph.expansion_search = ef
            return np.atleast_2d(graph.search(queries, k).keys)

        return search

    out = [("usearch HNSW M=16", usearch_build, [(f"ef={ef}", usearch_search(ef)) for ef in (64, 128)])]
    try:
        import faiss
    except ImportError:
        return out

    def flat(base: np.ndarray):
        index = faiss.IndexFlatIP(dim)
        index.add(base)
        return index

    def hnsw(base: np.ndarray):
        index = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 128
        index.add(base)
        return index

    def faiss_search(ef: int | None) -> Search:
        def search(index, queries: np.ndarray, k: int) -> np.ndarray:
            if ef is not None:
                index.hnsw.efSearch = ef
            return index.search(queries, k)[1]

        return search

    return [
        *out,
        ("faiss IndexFlatIP (exact)", flat, [("", faiss_search(None))]),
        ("faiss HNSW M=16", hnsw, [(f"ef={ef}", faiss_search(ef)) for ef in (64, 128)]),
    ]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--photos", help="a folder of .JPEG photos (e.g. ../shared/images/imagenet-sample)")
    p.add_argument("--checkpoint", help="inception_v1 checkpoint for the photos (default: cached weights)")
    p.add_argument("--limit", type=int, default=900)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=1536)
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--json")
    args = p.parse_args()
    rows = []
    if args.photos:
        base, copies = photo_vectors(args.photos, args.checkpoint, args.limit)
        rows += measure(f"{len(base)} photos", base, copies)
    base, queries = synthetic(args.n, args.dim, args.queries)
    rows += measure(f"{args.n} synthetic", base, queries)
    sizes = {d: install_mib(d) for d in ("usearch", "faiss-cpu")}
    print(f"{'set':<18} {'library':<30} {'build s':>8} {'ms/query':>9} {'1 query ms':>10} {'recall@10':>9}")
    for r in rows:
        print(
            f"{r['set']:<18} {r['library']:<30} {r['build_s']:>8.2f} {r['query_ms']:>9.3f} "
            f"{r['one_query_ms']:>10.3f} {r['recall@10']:>9.3f}"
        )
    print("install size (MiB):", {k: None if v is None else round(v, 1) for k, v in sizes.items()})
    if args.json:
        write_json(args.json, {"rows": rows, "install_mib": sizes}, indent=1)


if __name__ == "__main__":
    main()
