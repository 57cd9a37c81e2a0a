"""Nearest photos by cosine similarity of their feature vectors: `Index`, saved as a folder.

The vectors are kept L2-normalised, so cosine similarity is a dot product. Up to
`EXACT_LIMIT` photos the search is exact (one matrix product: as fast as an approximate index
there, and never wrong); above it an HNSW graph from usearch answers, built when the index is
saved (benchmarks/search.py measured faiss and usearch for build time, query time, recall and
install size). The folder holds:

- `index.json`: the model (handle, architecture, kind, weights identity), dimension, count;
- `paths.txt`: one photo per line, in the order of the vectors;
- `vectors.npy`: float32 `[N, D]`, normalised (memory-mapped when read);
- `hnsw.usearch`: the graph, when N > EXACT_LIMIT.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..errors import InputError

#: Below this many photos, exact search (benchmarks/search.py: faster than HNSW queries there).
EXACT_LIMIT = 20_000
FORMAT_VERSION = 1
#: HNSW candidates kept while searching: recall@10 >= 0.95 where 64 gave 0.93 (benchmarks/search.py).
EF_SEARCH = 128
#: Rows read or written at a time (16k x 1536 floats: 96 MiB).
CHUNK = 16_384


@dataclass(frozen=True)
class Hit:
    path: str
    score: float  # cosine similarity
    index: int  # position in the index


class Index:
    """Photos and their feature vectors from one model. `add` vectors, `query` the k most
    similar, `save` to a folder and `Index.load` it back."""

    def __init__(self, model: dict, dim: int) -> None:
        self.model = dict(model)  # handle, architecture, kind, weights
        self.dim = dim
        self.paths: list[str] = []
        # Vectors as read (memory-mapped) plus those added since: never concatenated on the way
        # to disk or through a query, so a large index streams through memory in chunks.
        self._base: np.ndarray = np.zeros((0, dim), np.float32)
        self._chunks: list[np.ndarray] = []
        self._known: set[str] = set()
        self._graph = None

    def __len__(self) -> int:
        return len(self.paths)

    def __contains__(self, path: str) -> bool:
        return path in self._known

    def _parts(self) -> list[np.ndarray]:
        return [self._base, *self._chunks]

    @property
    def vectors(self) -> np.ndarray:
        """All vectors, normalised, in path order (gathered into memory)."""
        if self._chunks:
            self._base, self._chunks = np.concatenate(self._parts()), []
        return self._base

    def add(self, paths: Sequence[str], vectors: np.ndarray) -> None:
        """Add photos (their vectors are normalised here); paths already indexed are skipped."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(paths):
            raise InputError(f"expected {len(paths)} vectors of {self.dim} floats, got shape {list(vectors.shape)}")
        keep, seen = [], self._known
        for i, p in enumerate(paths):
            if p not in seen:
                seen.add(p)
                keep.append(i)
        if not keep:
            return
        self.paths.extend(paths[i] for i in keep)
        self._chunks.append(normalise(vectors[keep]))
        self._graph = None

    def check_model(self, model: dict) -> None:
        """Refuse vectors from another model or other weights: they are not comparable."""
        for key in ("architecture", "kind", "weights"):
            if model.get(key) != self.model.get(key):
                raise InputError(
                    f"this index was built with {self.model.get('handle')} ({key} {self.model.get(key)!r}); "
                    f"these vectors come from another ({model.get(key)!r}): use the index's model, or build a new index"
                )

    def query(self, vectors: np.ndarray, k: int = 10, *, exact: bool | None = None) -> list[list[Hit]]:
        """The k most similar photos per query vector, best first."""
        queries = normalise(np.atleast_2d(np.asarray(vectors, np.float32)))
        if queries.shape[1] != self.dim:
            raise InputError(f"query vectors have {queries.shape[1]} floats; this index holds {self.dim}")
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in queries]
        if exact is None:
            exact = len(self) <= EXACT_LIMIT
        if exact:
            best, scores = exact_top_k(self._parts(), queries, k)
        else:
            best, scores = self._hnsw(queries, k)
        return [
            [Hit(self.paths[i], float(s), int(i)) for i, s in zip(row, srow, strict=True) if i >= 0]
            for row, srow in zip(best, scores, strict=True)
        ]

    def _hnsw(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self._graph is None:
            self._graph = build_graph(self._parts())
        matches = self._graph.search(queries, k)
        keys = np.atleast_2d(matches.keys).astype(np.int64)
        return keys, 1.0 - np.atleast_2d(matches.distances)

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index folder whole, replacing an older index there (and nothing else: a
        path that holds anything but an index is refused)."""
        with atomic_dir(folder, overwrite=True, ours=is_index) as staging:
            staging.mkdir(parents=True)
            meta = {"format": FORMAT_VERSION, "model": self.model, "dim": self.dim, "count": len(self)}
            (staging / "paths.txt").write_text("".join(p + "\n" for p in self.paths), encoding="utf-8")
            out = np.lib.format.open_memmap(staging / "vectors.npy", "w+", np.float32, (len(self), self.dim))
            start = 0
            for part in self._parts():
                for lo in range(0, len(part), CHUNK):
                    rows = np.asarray(part[lo : lo + CHUNK])
                    out[start : start + len(rows)] = rows
                    start += len(rows)
            out.flush()
            del out
            if len(self) > EXACT_LIMIT:
                if self._graph is None:
                    self._graph = build_graph(self._parts())
                self._graph.save(str(staging / "hnsw.usearch"))
            (staging / "index.json").write_text(json.dumps(meta, indent=1) + "\n")
        return Path(folder)

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Index:
        root = Path(folder)
        try:
            meta = json.loads((root / "index.json").read_text())
            paths = (root / "paths.txt").read_text(encoding="utf-8").splitlines()
            vectors = np.load(root / "vectors.npy", mmap_mode="r")
        except FileNotFoundError:
            raise InputError(
                f"{folder} is not an index: build one with `inception-hub index PHOTOS -o {folder}`"
            ) from None
        except (OSError, ValueError) as e:
            raise InputError(f"{folder} is unreadable ({e}); build the index again") from None
        if meta.get("format") != FORMAT_VERSION or vectors.shape != (len(paths), meta["dim"]):
            raise InputError(f"{folder} was written by another version or is damaged; build the index again")
        index = cls(meta["model"], meta["dim"])
        index.paths, index._base, index._known = paths, vectors, set(paths)
        graph = root / "hnsw.usearch"
        if graph.is_file():
            index._graph = _graph_class().restore(str(graph), view=True)
            index._graph.expansion_search = EF_SEARCH  # a search setting: not stored in the file
        return index


def is_index(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds an index this module wrote (and so may be replaced by a new one)."""
    try:
        meta = json.loads((Path(folder) / "index.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and "format" in meta and "model" in meta


def normalise(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def exact_top_k(parts: list[np.ndarray], queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k by dot product, reading the vectors CHUNK rows at a time (a memory-mapped index
    stays on disk), keeping the best k seen so far."""
    best = np.full((len(queries), 0), -1, np.int64)
    scores = np.zeros((len(queries), 0), np.float32)
    offset = 0
    for part in parts:
        for lo in range(0, len(part), CHUNK):
            sims = queries @ np.asarray(part[lo : lo + CHUNK]).T
            top = np.argpartition(-sims, min(k, sims.shape[1]) - 1, axis=1)[:, :k]
            best = np.concatenate([best, top + offset + lo], axis=1)
            scores = np.concatenate([scores, np.take_along_axis(sims, top, axis=1)], axis=1)
            order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
            best, scores = np.take_along_axis(best, order, axis=1), np.take_along_axis(scores, order, axis=1)
        offset += len(part)
    return best, scores


def _graph_class():
    """usearch's Index class. ONNX Runtime is imported first: loaded after usearch's extension,
    its own crashes the process (a segfault at import, ONNX Runtime 1.32, usearch 2.26)."""
    import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index


def build_graph(parts: list[np.ndarray]):
    """usearch's HNSW over the normalised vectors (cosine), keyed by position."""
    graph = _graph_class()(
        ndim=parts[0].shape[1],
        metric="cos",
        dtype="f32",
        connectivity=16,
        expansion_add=128,
        expansion_search=EF_SEARCH,
    )
    offset = 0
    for part in parts:
        for lo in range(0, len(part), CHUNK):
            rows = np.ascontiguousarray(part[lo : lo + CHUNK], np.float32)
            graph.add(np.arange(offset + lo, offset + lo + len(rows)), rows, log=False)
        offset += len(part)
    return graph


def groups(index: Index, threshold: float, k: int = 10) -> list[list[Hit]]:
    """Near-duplicate groups: photos joined when their cosine similarity is at least
    `threshold`, transitively (each photo's k nearest are considered). Groups of two or more,
    largest first."""
    parent = list(range(len(index)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(index), 1024):
        block = np.asarray(index.vectors[start : start + 1024])
        for i, hits in enumerate(index.query(block, k + 1), start):
            for hit in hits:
                if hit.index != i and hit.score >= threshold:
                    parent[root(hit.index)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(len(index)):
        members.setdefault(root(i), []).append(i)
    out = []
    for ids in members.values():
        if len(ids) > 1:
            ref = np.asarray(index.vectors[ids[0]])
            out.append([Hit(index.paths[i], float(np.asarray(index.vectors[i]) @ ref), i) for i in ids])
    return sorted(out, key=lambda g: (-len(g), g[0].path))


def stream(index: Index, results: Iterable, on_error=None) -> int:
    """Add pipeline results (path, feature row or error) to `index` in batches; returns how many."""
    paths, rows, added = [], [], 0
    for r in results:
        if r.error is not None:
            if on_error is not None:
                on_error(r.path, r.error)
            continue
        paths.append(r.path)
        rows.append(r.output)
        if len(rows) >= 256:
            index.add(paths, np.stack(rows))
            added += len(rows)
            paths, rows = [], []
    if rows:
        index.add(paths, np.stack(rows))
        added += len(rows)
    return added


def model_identity(module) -> dict:
    """What an index records of the model that embedded its photos."""
    return {
        "handle": module.handle,
        "architecture": module.spec.arch,
        "kind": module.spec.kind,
        "weights": module.identity(),
    }
