"""What throughput.py measures outside the process: the cold start-up time and peak memory of
`inception-hub classify` per backend and precision, and the size of the lean install. The work is
footprint.py's; this module picks the variants and reports progress.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from common import log
from engines import PRECISIONS


def measure_startup(image: str, checkpoint: Path | None, repeat: int) -> list[dict]:
    """Cold `inception-hub classify` per backend and precision (footprint.measure_startup)."""
    from footprint import measure_startup as startup

    from inception_hub.cpu import cpu
    from inception_hub.engine import available_backends, fast_precisions
    from inception_hub.errors import InputError

    log(f"== start-up of `inception-hub classify` on {cpu().describe()}")
    variants = [("default", "fp32")] + [(b, p) for b in available_backends() for p in PRECISIONS[b]]
    with contextlib.suppress(InputError):  # neither VNNI nor bf16: no precision fast to time
        variants += [("default", "fast")] if fast_precisions() else []
    rows = startup(image, checkpoint, repeat, variants)
    for r in rows:
        log(f"  {r['backend']} {r['precision']}: {r.get('best_s', float('nan')):.2f} s "
            f"{r.get('peak_rss_mib', float('nan')):.0f} MiB {r.get('error', '')}")  # fmt: skip
    return rows


def measure_lean_install() -> dict:
    """`pip install inception-hub` (the core) into a fresh venv (footprint.measure_install)."""
    from footprint import measure_install

    log("== lean install")
    return measure_install()


def main(argv: list[str] | None = None) -> None:
    """`python benchmarks/startup.py`: the start-up alone, on the first sample photo, synthetic
    inception_v1 weights (or --official), results in results/startup-<CPU class>.json."""
    import argparse
    import os

    from common import PHOTOS, RESULTS, ensure_checkpoint, machine_info, photos, write_json

    from inception_hub.cpu import cpu

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--repeat", type=int, default=5, help="timed runs per variant (the best is reported)")
    p.add_argument("--official", action="store_true", help="the cached official weights, no checkpoint")
    p.add_argument("--json", type=Path, default=RESULTS / f"startup-{cpu().isa}.json")
    args = p.parse_args(argv)
    os.environ.setdefault("INCEPTION_HUB_OFFLINE", "1")
    checkpoint = None if args.official else ensure_checkpoint("inception_v1")
    rows = measure_startup(photos(PHOTOS, 1)[0], checkpoint, args.repeat)
    write_json(args.json, {"machine": machine_info(("inception-hub", "onnxruntime", "openvino")), "startup": rows})
    print(f"Start-up of `inception-hub classify` on one photo, caches warm, on {cpu().describe()}:\n")
    print("| backend | precision | seconds | peak RSS MiB |\n|---|---|--:|--:|")
    for r in rows:
        shown = f"{r['best_s']:.2f} | {r['peak_rss_mib']:.0f}" if "error" not in r else f"{r['error']} |"
        print(f"| {r['backend']} | {r['precision']} | {shown} |")


if __name__ == "__main__":
    main()
