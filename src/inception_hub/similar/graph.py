"""The HNSW graph (usearch) that answers approximate queries on a large index: built over the
normalised vectors, saved beside them with its size and checksum, and opened again only when
both match, since usearch can crash the process on a damaged file."""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np

from .storage import FolderProblem, checksum, open_inside

#: HNSW candidates kept while searching: recall@10 >= 0.95 where 64 gave 0.93 (benchmarks/search.py).
EF_SEARCH = 128
#: Rows added to the graph at a time.
ADD_ROWS = 16_384


def graph_class():
    """usearch's Index class. ONNX Runtime is imported first: loaded after usearch's extension,
    its own crashes the process (a segfault at import, ONNX Runtime 1.32, usearch 2.26)."""
    import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index


def build_graph(parts: list[np.ndarray]):
    """usearch's HNSW over the normalised vectors (cosine), keyed by position."""
    graph = graph_class()(
        ndim=parts[0].shape[1],
        metric="cos",
        dtype="f32",
        connectivity=16,
        expansion_add=128,
        expansion_search=EF_SEARCH,
    )
    offset = 0
    for part in parts:
        for lo in range(0, len(part), ADD_ROWS):
            rows = np.ascontiguousarray(part[lo : lo + ADD_ROWS], np.float32)
            graph.add(np.arange(offset + lo, offset + lo + len(rows)), rows, log=False)
        offset += len(part)
    return graph


def save_graph(graph, path: Path) -> dict:
    """Write the graph; returns the record `open_graph` checks it against."""
    graph.save(str(path))
    with open(path, "rb") as f:
        return {"bytes": path.stat().st_size, "crc32": checksum(f)}


def open_graph(root: Path, name: str, record: object, count: int, dim: int):
    """The saved graph, memory-mapped, when the file is what `record` says and holds `count`
    vectors of `dim`; None when it is missing, damaged or from elsewhere (the caller builds one)."""
    if not isinstance(record, dict) or not all(isinstance(record.get(k), int) for k in ("bytes", "crc32")):
        return None  # an index of format 1 recorded nothing to check its graph against
    try:
        f = open_inside(root, name, record["bytes"])
    except (FileNotFoundError, FolderProblem):
        return None
    with f:
        if f.seek(0, 2) != record["bytes"] or checksum(f) != record["crc32"]:
            return None
    path = str((root / name).resolve())
    cls = graph_class()
    with contextlib.suppress(ValueError, RuntimeError):
        meta = cls.metadata(path) or {}
        if meta.get("dimensions") == dim and meta.get("count_present") == count and not meta.get("count_deleted"):
            graph = cls.restore(path, view=True)
            if graph is not None and graph.size == count:
                graph.expansion_search = EF_SEARCH  # a search setting: not stored in the file
                return graph
    return None
