"""One export as its writers see it: the module, its weights, the staging folder, and what it carries."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..catalog import ModelSpec
from ..weights import Weights


@dataclass(frozen=True)
class Job:
    """One export: the module, its weights, the staging folder, and what it carries."""

    spec: ModelSpec
    weights: Weights
    out: Path
    meta: dict
    labels: Sequence[str] | None
    calibration: str | None = None  # int8's photos (None: the bundled set)
