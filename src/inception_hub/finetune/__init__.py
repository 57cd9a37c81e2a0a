"""Train an image classifier on your own photos from a feature-vector module, as TF-Hub's
`make_image_classifier` did, and save it as a module of its own.

DATA_DIR holds one folder per class. The default trains a new dense head on frozen features;
`fine_tune_backbone=True` trains the whole network, with BatchNorm on batch statistics at the
given momentum and the module's weight decay. After each such epoch the BatchNorm moving
statistics are recomputed on the training images under the new weights (precise BN): on a small
dataset a momentum like 0.997 leaves them far behind the weights, and the model then fails at
inference although it trained well. `recalibrate_bn=False` keeps the plain moving averages.

Training augments with random crops, flips and brightness, stops early on validation loss and
keeps the best weights; a Ctrl-C ends it with the best model so far saved.

- `data`: reading the class folders, splitting, augmenting.
- `model`: the classifier (backbone and head), its optimizer, saving.
- `training`: the loop.
"""

from __future__ import annotations

from .data import DataError, Dataset, load_dataset, scan, split
from .model import Classifier
from .result import FineTuneResult
from .training import run_epoch, train

__all__ = [
    "Classifier",
    "DataError",
    "Dataset",
    "FineTuneResult",
    "load_dataset",
    "run_epoch",
    "scan",
    "split",
    "train",
]
