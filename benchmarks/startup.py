"""What throughput.py measures outside the process: the cold start-up time and peak memory of
`inception-hub classify` per backend and precision, and the size of the lean install. The work is
footprint.py's; this module picks the variants and reports progress.
"""

from __future__ import annotations

from pathlib import Path

from common import log
from engines import PRECISIONS


def measure_startup(image: str, checkpoint: Path | None, repeat: int) -> list[dict]:
    """Cold `inception-hub classify` per backend and precision (footprint.measure_startup)."""
    from footprint import measure_startup as startup

    from inception_hub.engine import available_backends

    log("== start-up of `inception-hub classify`")
    variants = [(b, p) for b in available_backends() for p in PRECISIONS[b]]
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
