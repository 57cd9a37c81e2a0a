"""The report of throughput.py: Markdown tables of a results dict (as written to
results/throughput.json) and the PNG plot of end-to-end and batch-32 images/s per engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import log


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(results: dict) -> str:
    peak = results["peak"]
    lines = [
        f"Images/s on {results['machine']['cpu']} ({results['machine']['cpus']} CPUs), "
        f"{results['config']['images']} images; best of {results['config']['repeat']} (model-only) / "
        f"{results['config']['e2e_repeat']} (end-to-end). Peak = the best float32 kernel measured "
        f"({peak['best_kernel']}, {peak['measured_gflops']:.0f} GFLOP/s; numpy's matmul "
        f"{peak['numpy_matmul_gflops']:.0f}); bf16 and int8 can exceed it. "
        f"FLOPs/image: inception_v1 3.0 G, inception_resnet_v2 26.3 G. Weights: {results['config']['weights']}. "
        "×fp32: against inception-hub's default fp32 engine; own b32: end-to-end as a share of the same "
        "engine's batch-32 model-only rate.",
        "",
        "| model | engine | end-to-end img/s | ×TF-Hub | ×fp32 | % own b32 | ×best peer | % peak | b1 img/s "
        "| b32 img/s | b32 ×TF-Hub | b32 ×fp32 | b32 ×best peer | b32 % peak |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for arch, model in results["models"].items():
        for e in model["engines"]:
            e2e, b1, b32 = e["e2e"], e["b1"], e["b32"]
            lines.append(
                f"| {arch} | {e['name']} | {e2e['best']:.1f} | {fmt(e2e['vs_tfhub'], '.2f')} "
                f"| {fmt(e2e.get('vs_default_fp32'), '.2f')} | {fmt(pct(e2e.get('of_own_b32')), '.0f')} "
                f"| {fmt(e2e['vs_best_peer'], '.2f')} | {fmt(pct(e2e['fraction_of_peak']))} | {b1['best']:.1f} "
                f"| {b32['best']:.1f} | {fmt(b32['vs_tfhub'], '.2f')} | {fmt(b32.get('vs_default_fp32'), '.2f')} "
                f"| {fmt(b32['vs_best_peer'], '.2f')} | {fmt(pct(b32['fraction_of_peak']))} |"
            )
        lines += [f"| {arch} | {name}: skipped ({why}) |" + " |" * 12 for name, why in model["skipped"].items()]
    agreements = [(arch, m["int8_agreement"]) for arch, m in results["models"].items() if "int8_agreement" in m]
    if agreements:
        lines += [
            "",
            f"int8 against fp32 on the same engine, {results['config']['weights']} weights (synthetic weights give "
            "flat logits, so these are lower bounds of what the official weights give)",
            "",
            "| model | engine | images | top-1 agreement | int8 top-1 in fp32 top-5 | max abs logit diff |",
            "|---|---|--:|--:|--:|--:|",
        ]
        for arch, block in agreements:
            lines += [
                f"| {arch} | {backend} | {a['images']} | {a['top1_agreement']:.3f} | {a['top1_in_fp32_top5']:.3f} "
                f"| {a['max_abs_logit_diff']:.2f} |"
                for backend, a in block.items()
            ]
    for size, block in results.get("decoders", {}).items():
        lines += [
            "",
            f"Decoding + central crop + resize to {size}x{size}, one core (images/s), error vs the exact "
            "preprocessing"
            + (
                f" (top-1 agreement: inception_v1 on {block['agreement_backend']}, {results['config']['weights']} "
                "weights)"
                if block["agreement_backend"]
                else ""
            ),
            "",
            "| decoder | img/s/core | max abs diff (×255) | mean abs diff (×255) | top-1 agreement |",
            "|---|--:|--:|--:|--:|",
        ]
        for r in block["rows"]:
            lines.append(
                f"| {r['name']} | {r['per_core']['best']:.0f} | {r['max_abs_diff_x255']:.1f} "
                f"| {r['mean_abs_diff_x255']:.2f} | {fmt(r.get('top1_agreement'), '.3f')} |"
            )
        lines += [f"| {name}: skipped ({why}) | | | | |" for name, why in block["skipped"].items()]
    if results.get("startup"):
        lines += ["", "Start-up: `inception-hub classify` one image, fresh process, caches warm (inception_v1)", ""]
        lines += ["| backend | precision | seconds | peak RSS MiB |", "|---|---|--:|--:|"]
        lines += [
            f"| {r['backend']} | {r['precision']} | "
            + (f"{r['best_s']:.2f} | {r['peak_rss_mib']:.0f} |" if "error" not in r else f"{r['error']} | |")
            for r in results["startup"]
        ]
    if results.get("install"):
        i = results["install"]
        largest = ", ".join(f"{k} {v:.0f}" for k, v in i["largest_mb"].items())
        lines += ["", f"Install: `pip install inception-hub` (the core) adds {i['site_packages_mb']:.0f} MB of "
                  f"site-packages to a fresh venv; largest (MB): {largest}."]  # fmt: skip
    return "\n".join(lines)


def pct(fraction: float | None) -> float | None:
    return None if fraction is None else 100 * fraction


def plot(results: dict, path: Path) -> None:
    """One panel per model: horizontal bars of end-to-end and model-only batch-32 images/s per engine."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib is not installed (pip install matplotlib): no plot")
        return
    models = {k: v for k, v in results["models"].items() if v["engines"]}
    if not models:
        return
    fig, axes = plt.subplots(len(models), 1, figsize=(10, 1.2 + 0.75 * sum(len(m["engines"]) for m in models.values())))
    for ax, (arch, model) in zip(np.atleast_1d(axes), models.items(), strict=True):
        names = [e["name"] for e in model["engines"]]
        y = np.arange(len(names))
        for offset, metric, label in (
            (-0.2, "e2e", "end-to-end (files → top-5)"),
            (0.2, "b32", "model only, batch 32"),
        ):
            bars = ax.barh(y + offset, [e[metric]["best"] for e in model["engines"]], 0.4, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
        ax.set_yticks(y, names, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{arch} ({model['image_size']}×{model['image_size']})")
        ax.set_xlabel("images / s")
        ax.grid(axis="x", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(f"{results['machine']['cpu']}, {results['machine']['cpus']} CPUs", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    log(f"wrote {path}")
