"""Nearest photos by cosine similarity of their feature vectors: `Index`, saved as a folder.

The vectors are kept L2-normalised, so cosine similarity is a dot product. Up to
`EXACT_LIMIT` photos the search is exact (one matrix product: as fast as an approximate index
there, and never wrong); above it an HNSW graph from usearch answers, built when the index is
saved or loaded, never inside a query (benchmarks/search.py measured faiss and usearch for
build time, query time, recall and install size). The folder holds:

- `index.json`: the format, the model (handle, architecture, kind, weights identity), dimension,
  count, and the graph's size and checksum;
- `paths.jsonl`: the photos in the order of the vectors, one JSON string per line (format 1
  indexes, still read, have `paths.txt`: one per line);
- `vectors.npy`: float32 `[N, D]`, normalised (memory-mapped when read);
- `hnsw.usearch`: the graph, when N > EXACT_LIMIT.

`Index.load` trusts nothing in the folder: each file must be a regular file of a bounded size,
the metadata of the expected types, the vectors float32 of the recorded shape, finite and of
unit length (checked a chunk at a time), as many as the paths. Anything else is refused with one
line naming the problem, and `save` reads what it wrote back the same way before it replaces
the old index.
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
from .graph import EF_SEARCH, build_graph, open_graph, save_graph
from .storage import (
    MAX_PATH_LINE,
    FolderProblem,
    check_rows,
    encode_path,
    open_inside,
    open_matrix,
    read_json,
    read_legacy_paths,
    read_paths,
    write_paths,
)

__all__ = [
    "EF_SEARCH",
    "EXACT_LIMIT",
    "FORMAT_VERSION",
    "Hit",
    "Index",
    "build_graph",
    "is_index",
    "model_identity",
    "stream",
]

#: Below this many photos, exact search (benchmarks/search.py: faster than HNSW queries there).
EXACT_LIMIT = 20_000
#: 2: paths as JSON lines (1: one per line, which a newline or U+2028 in a name broke), the graph's checksum.
FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
#: Rows read or written at a time (16k x 1536 floats: 96 MiB).
CHUNK = 16_384
META, PATHS, LEGACY_PATHS, VECTORS, GRAPH = "index.json", "paths.jsonl", "paths.txt", "vectors.npy", "hnsw.usearch"
#: What index.json may weigh, and the widest vector it may declare.
MAX_META_BYTES = 1 << 20
MAX_DIM = 1 << 16
MODEL_KEYS = ("handle", "architecture", "kind", "weights")


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
        """Add photos (their vectors are normalised here); paths already indexed are skipped.
        A vector that is not finite or is all zeros cannot be compared, and is refused."""
        vectors = np.asarray(vectors, np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim or len(vectors) != len(paths):
            raise InputError(f"expected {len(paths)} vectors of {self.dim} floats, got shape {list(vectors.shape)}")
        keep, seen = [], self._known
        for i, p in enumerate(paths):
            if not isinstance(p, str) or len(encode_path(p)) > MAX_PATH_LINE:
                raise InputError(f"photo {i} of the batch has no usable path ({str(p)[:80]!r}...): paths are strings")
            if p not in seen:
                seen.add(p)
                keep.append(i)
        if not keep:
            return
        rows = vectors[keep]
        norms = np.linalg.norm(rows.astype(np.float64), axis=1)
        bad = ~np.isfinite(norms) | (norms == 0)
        if bad.any():
            for i in keep:  # leave the index as it was
                seen.discard(paths[i])
            p = paths[keep[int(np.argmax(bad))]]
            what = "all zeros" if np.isfinite(norms[bad][0]) else "NaN or infinite values"
            raise InputError(f"the feature vector of {p} holds {what}: it cannot be compared with others")
        self.paths.extend(paths[i] for i in keep)
        self._chunks.append(normalise(rows))
        self._graph = None

    def check_model(self, model: dict) -> None:
        """Refuse vectors from another model or other weights: they are not comparable."""
        for key in ("architecture", "kind", "weights"):
            if model.get(key) != self.model.get(key):
                raise InputError(
                    f"this index was built with {self.model.get('handle')} ({key} {self.model.get(key)!r}); "
                    f"these vectors come from another ({model.get(key)!r}): use the index's model, or build a new index"
                )

    def prepare(self) -> None:
        """Build the HNSW graph if this index is large enough to need one and has none (minutes for
        a million photos). `load` and `save` call it; after `add`, call it before serving queries,
        or queries are answered exactly (correct, but slower on a large index)."""
        if len(self) > EXACT_LIMIT and self._graph is None:
            self._graph = build_graph(self._parts())

    @property
    def approximate(self) -> bool:
        """Whether queries are answered by the graph (a large, prepared index)."""
        return self._graph is not None and len(self) > EXACT_LIMIT

    def query(self, vectors: np.ndarray, k: int = 10, *, exact: bool | None = None) -> list[list[Hit]]:
        """The k most similar photos per query vector, best first. Never builds anything: without
        a graph (see `prepare`) the search is exact."""
        queries = np.atleast_2d(np.asarray(vectors, np.float32))
        if queries.ndim != 2 or queries.shape[1] != self.dim:
            raise InputError(f"query vectors have {queries.shape[-1]} floats; this index holds {self.dim}")
        if not np.isfinite(queries).all():
            raise InputError("a query vector holds NaN or infinite values")
        queries = normalise(queries)
        k = min(k, len(self))
        if k == 0:
            return [[] for _ in queries]
        if exact is None:
            exact = len(self) <= EXACT_LIMIT
        if exact or self._graph is None:
            best, scores = exact_top_k(self._parts(), queries, k)
        else:
            matches = self._graph.search(queries, k)
            best = np.atleast_2d(matches.keys).astype(np.int64)
            scores = 1.0 - np.atleast_2d(matches.distances)
        n = len(self)
        return [
            [
                Hit(self.paths[i], float(s), int(i))
                for i, s in zip(row, srow, strict=True)
                if 0 <= i < n and np.isfinite(s)  # a graph may pad with -1 when it finds fewer
            ]
            for row, srow in zip(best, scores, strict=True)
        ]

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the index folder whole, replacing an older index there (and nothing else: a
        path that holds anything but an index is refused). What was written is read back and
        checked before it takes the old one's place."""
        with atomic_dir(folder, overwrite=True, ours=is_index) as staging:
            staging.mkdir(parents=True)
            meta = {"format": FORMAT_VERSION, "model": self.model, "dim": self.dim, "count": len(self)}
            with (staging / PATHS).open("wb") as f:
                write_paths(f, self.paths)
            out = np.lib.format.open_memmap(staging / VECTORS, "w+", np.float32, (len(self), self.dim))
            start = 0
            for part in self._parts():
                for lo in range(0, len(part), CHUNK):
                    rows = np.asarray(part[lo : lo + CHUNK])
                    out[start : start + len(rows)] = rows
                    start += len(rows)
            out.flush()
            del out
            if len(self) > EXACT_LIMIT:
                self.prepare()
                meta["graph"] = save_graph(self._graph, staging / GRAPH)
            (staging / META).write_text(json.dumps(meta, indent=1) + "\n")
            self._check_written(staging, folder)
        return Path(folder)

    def _check_written(self, staging: Path, folder: str | os.PathLike) -> None:
        """Read the staged folder back as `load` would, so a bad write never replaces a good index."""
        try:
            meta, paths, _, _ = read_folder(staging)
            problem = None
            if paths != self.paths:
                problem = "the paths read back differ from those written"
            elif len(self) > EXACT_LIMIT and open_graph(staging, GRAPH, meta.get("graph"), len(self), self.dim) is None:
                problem = "the graph does not read back"
        except (FolderProblem, FileNotFoundError) as e:
            problem = str(e)
        if problem:
            raise InputError(
                f"the index for {folder} did not read back as written ({problem}); {folder} is left as it was"
            )

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Index:
        """The index saved in `folder`, validated whole (see the module's notes); refused with an
        InputError naming the problem otherwise. A large index without a usable graph gets one
        built here, so no query ever builds it."""
        root = Path(folder)
        build = f"build one with `inception-hub index PHOTOS -o {folder}`"
        rebuild = f"build it again with `inception-hub index PHOTOS -o {folder} --overwrite`"
        if not root.is_dir():
            raise InputError(f"{folder} is not an index: {build}")
        try:
            meta, paths, known, vectors = read_folder(root)
        except FileNotFoundError as e:
            name = Path(e.filename or "").name
            if name == META:
                raise InputError(f"{folder} is not an index: {build}") from None
            raise InputError(f"{folder} is damaged ({name} is missing): {rebuild}") from None
        except NewerFormat as e:
            raise InputError(f"{folder} was written by a newer inception-hub ({e}): upgrade, or {rebuild}") from None
        except FolderProblem as e:
            raise InputError(f"{folder} is damaged ({e}): {rebuild}") from None
        except OSError as e:
            raise InputError(
                f"{folder} is unreadable ({e.strerror or e}): check its permissions, or {rebuild}"
            ) from None
        index = cls(meta["model"], meta["dim"])
        index.paths, index._base, index._known = paths, vectors, known
        if len(index) > EXACT_LIMIT:
            index._graph = open_graph(root, GRAPH, meta.get("graph"), len(index), index.dim)
            index.prepare()  # missing, damaged, or from format 1 (no checksum to trust it by)
        return index


class NewerFormat(FolderProblem):
    """An index of a format this version does not know."""


def read_folder(root: Path) -> tuple[dict, list[str], set[str], np.ndarray]:
    """(metadata, paths, the set of them, memory-mapped vectors) of an index folder, each checked."""
    with open_inside(root, META, MAX_META_BYTES) as f:
        meta = check_meta(read_json(f, META))
    count, dim = meta["count"], meta["dim"]
    with open_inside(root, VECTORS) as f:
        vectors = open_matrix(f, VECTORS, count, dim)
    if vectors.dtype != np.float32:
        raise FolderProblem(f"{VECTORS} holds {vectors.dtype}, not float32")
    name, read = (PATHS, read_paths) if meta["format"] >= 2 else (LEGACY_PATHS, read_legacy_paths)
    with open_inside(root, name, count * MAX_PATH_LINE + 1) as f:
        paths = read(f, name, count)
    known = set(paths)
    if len(known) != count:
        raise FolderProblem(f"{name} lists a photo twice")
    check_rows(vectors, VECTORS, unit=True, rows=CHUNK)
    return meta, paths, known, vectors


def check_meta(meta: object) -> dict:
    """index.json's record, once each field has the type and range an index of ours writes."""

    def whole(value: object, lo: int, hi: int) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi

    if not isinstance(meta, dict):
        raise FolderProblem(f"{META} is not a JSON object")
    version = meta.get("format")
    if whole(version, max(READABLE_FORMATS) + 1, 1 << 31):
        raise NewerFormat(f"format {version}; this version reads {' and '.join(map(str, READABLE_FORMATS))}")
    if version not in READABLE_FORMATS or isinstance(version, bool):
        raise FolderProblem(f"{META} has no format this version knows ({str(version)[:40]})")
    model = meta.get("model")
    if not isinstance(model, dict) or not all(isinstance(model.get(k), str) for k in MODEL_KEYS):
        raise FolderProblem(f"{META}'s model is not a record of {', '.join(MODEL_KEYS)} (strings)")
    if not whole(meta.get("dim"), 1, MAX_DIM):
        raise FolderProblem(f"{META}'s dim is not a whole number from 1 to {MAX_DIM}")
    if not whole(meta.get("count"), 0, 1 << 40):
        raise FolderProblem(f"{META}'s count is not a whole number of photos")
    return meta


def is_index(folder: str | os.PathLike) -> bool:
    """Whether `folder` holds an index this module wrote (and so may be replaced by a new one).
    Only its index.json is read, and only from a regular file (a FIFO would block)."""
    root = Path(folder)
    try:
        with open_inside(root, META, MAX_META_BYTES) as f:
            meta = read_json(f, META)
    except (OSError, FolderProblem):
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
