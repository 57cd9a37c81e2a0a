"""Classify and embed image collections on a Ray cluster, with Ray Data.

- `cluster`: attaching to a local or existing cluster (`connect`).
- `dataset`: the streaming pipeline, `embed` and `classify` as lazy Ray Datasets.
- `job`: `run_job`, the resumable run written as partitioned Parquet (`read_output`).
"""

from __future__ import annotations

from .cluster import connect
from .dataset import DEFAULT_BATCH_SIZE, ModelSource, classify, embed, pipeline
from .job import DEFAULT_PARTITION_SIZE, MANIFEST, SUCCESS, JobSummary, partition_path, read_output, run_job

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_PARTITION_SIZE",
    "MANIFEST",
    "SUCCESS",
    "JobSummary",
    "ModelSource",
    "classify",
    "connect",
    "embed",
    "partition_path",
    "pipeline",
    "read_output",
    "run_job",
]
