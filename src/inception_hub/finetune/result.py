"""What a fine-tuning run gives back."""

from __future__ import annotations

from dataclasses import dataclass

from ..module import Module


@dataclass
class FineTuneResult:
    """The trained model as a loaded Module, its per-epoch history, and what happened."""

    module: Module
    history: dict[str, list[float]]
    classes: list[str]
    best_epoch: int
    stopped: str
    skipped: list[tuple[str, str]]
