"""`inception-hub evaluate`: the accuracy harness's command line (table or JSON)."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import sys

from ..accuracy import Report, describe_weights, evaluate, find_samples, limit_samples, variants
from ..outputs import check_destination, json_with_keys
from .common import PROG

#: What `-o` may write over: a report of ours.
REPORT_KEYS = tuple(f.name for f in dataclasses.fields(Report))


def cmd_evaluate(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    if args.output:
        check_destination(args.output, "an evaluate report", suffixes=(".json",), ours=json_with_keys(REPORT_KEYS))
    samples = limit_samples(find_samples(args.data, args.csv), args.limit)
    with contextlib.ExitStack() as stack:
        runs = variants(
            args.model,
            args.checkpoint,
            _flat(args.backend) or [None],
            _flat(args.precision) or ["fp32"],
            _flat(args.format) or [None],
            stack,
            calibration=args.calibration,
            progress=args.progress,
            note=lambda text: print(f"{PROG}: {text}", file=sys.stderr),
        )
        bar = tqdm(total=len(samples), unit="img", disable=not args.progress or None, file=sys.stderr, leave=False)
        with bar:
            report = evaluate(runs, samples, batch_size=args.batch_size, workers=args.workers, on_progress=bar.update)
    for item in report.skipped:
        print(f"{PROG}: {item['path']}: {item['reason']}", file=sys.stderr)
    if report.unknown:
        example = report.unknown[0]
        print(
            f"{PROG}: {len(report.unknown)} photos have a class the model does not know "
            f"(e.g. {example['class']!r} for {example['path']}); left out",
            file=sys.stderr,
        )
    text = json.dumps(report.as_dict(), indent=1)
    if args.output:
        from ..atomic import atomic_file

        with atomic_file(args.output) as f:
            f.write((text + "\n").encode())
    print(text if args.json else table(report))
    return 1 if report.skipped else 0


def _flat(values: list[list[str]] | None) -> list[str]:
    return [name for group in values or () for name in group]


def table(report: Report) -> str:
    """The variants' scores, then their pairwise agreement."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    rows = [("variant", "images", "top-1 %", "top-5 %", "images/s")]
    for v in report.variants:
        rate = "-" if v["images_per_s"] is None else f"{v['images_per_s']:.1f}"
        rows.append((v["name"], str(v["images"]), pct(v["top1"]), pct(v["top5"]), rate))
    out = [_columns(rows)]
    if report.agreement:
        pairs = [("variant A", "variant B", "top-1 agreement %", "max |logit difference|")]
        for p in report.agreement:
            diff = "-" if p["max_logit_difference"] is None else f"{p['max_logit_difference']:.3g}"
            pairs.append((p["a"], p["b"], pct(p["top1_agreement"]), diff))
        out.append(_columns(pairs))
    rate = report.images / max(report.seconds, 1e-9)
    out.append(f"{report.images} images in {report.seconds:.1f} s ({rate:.1f} images/s end to end)")
    # Where the weights came from: scores of imported or synthetic weights are not the release's.
    origins: dict[str, list[str]] = {}
    for v in report.variants:
        origins.setdefault(describe_weights(v.get("weights") or {}), []).append(v["name"])
    for text, names in origins.items():
        whose = "weights" if len(origins) == 1 else f"weights of {', '.join(names)}"
        out[-1] += f"\n{whose}: {text}"
    return "\n\n".join(out)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows)
