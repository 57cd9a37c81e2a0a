"""`inception-hub finetune`: train a classifier on the user's photos and save it."""

from __future__ import annotations

import argparse

from .common import PROG

#: `train` keyword arguments the command passes on when given (unset ones keep train's defaults).
FINETUNE_OPTIONS = (
    "fine_tune_backbone",
    "recalibrate_bn",
    "train_from",
    "checkpoint",
    "progress",
    "epochs",
    "batch_size",
    "learning_rate",
    "batch_norm_momentum",
    "validation_split",
    "image_size",
    "patience",
    "seed",
)


def cmd_finetune(args: argparse.Namespace) -> int:
    from ..finetune import train
    from ..outputs import check_destination

    check_destination(args.output, "a fine-tuned model", folder=True)  # before training, not after
    given = {k: getattr(args, k) for k in FINETUNE_OPTIONS if getattr(args, k) is not None}
    result = train(args.data_dir, args.model, args.output, **given)
    best = result.history["val_accuracy"][result.best_epoch - 1] if result.history["loss"] else float("nan")
    print(
        f"saved {len(result.classes)}-class model to {args.output} (val_accuracy {best:.3f}); "
        f"try: {PROG} classify IMAGES --model {args.output}"
    )
    return 0
