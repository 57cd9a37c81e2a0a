"""Near-duplicate groups of an `Index`, for `inception-hub dedupe`."""

from __future__ import annotations

import numpy as np

from .index import Hit, Index


def groups(index: Index, threshold: float, k: int = 10) -> list[list[Hit]]:
    """Near-duplicate groups: photos joined when their cosine similarity is at least
    `threshold`, transitively (each photo's k nearest are considered). Groups of two or more,
    largest first, each in index order. A hit's score is its cosine similarity to the group's
    centre (the normalised mean of the group's vectors), so no member is the reference."""
    index.prepare()  # a large index searches its graph, as `load` would have it
    parent = list(range(len(index)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    vectors = index.vectors
    for start in range(0, len(index), 1024):
        block = np.asarray(vectors[start : start + 1024])
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
            rows = np.asarray(vectors[ids], np.float64)
            centre = rows.mean(axis=0)
            centre /= max(float(np.linalg.norm(centre)), 1e-12)
            out.append([Hit(index.paths[i], float(s), i) for i, s in zip(ids, rows @ centre, strict=True)])
    return sorted(out, key=lambda g: (-len(g), g[0].path))
