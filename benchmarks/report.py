"""The report of throughput.py: Markdown tables of a results dict (as written to
results/throughput-<CPU class>.json), the README's tables (one per CPU kind measured), and the
PNG plot of end-to-end and batch-32 images/s per engine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from common import INTERLEAVED, describe_cpu, log


def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def markdown(results: dict) -> str:
    peak = results["peak"]
    cpu = describe_cpu(results["machine"])
    lines = [
        f"Images/s on {cpu}, "
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
    lines += choice_lines(results)
    agreements = [(arch, m["int8_agreement"]) for arch, m in results["models"].items() if "int8_agreement" in m]
    if agreements:
        lines += [
            "",
            f"int8 against fp32 on the same engine on {cpu}, {results['config']['weights']} weights (synthetic "
            "weights give flat logits, so these are lower bounds of what the official weights give)",
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
            f"Decoding + central crop + resize to {size}x{size}, one core of {cpu} (images/s), error vs the exact "
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
        lines += [
            "",
            f"Start-up: `inception-hub classify` one image, fresh process, caches warm (inception_v1), on {cpu}",
            "",
        ]
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


def choice_lines(results: dict) -> list[str]:
    """What inception-hub chose on this CPU: the default fp32 engine and precision fast, and why."""
    lines = []
    for arch, model in results["models"].items():
        for precision, c in (model.get("choices") or {}).items():
            if "error" in c:
                lines.append(f"- {arch} {precision}: {c['error']}")
                continue
            agreement = (
                f"; top-1 agreement with fp32 {c['agreement']:.0%} on {c['photos']} crops of the bundled photos"
                if c.get("agreement") is not None
                else ""
            )
            lines.append(f"- {arch} {precision}: {c['backend']} {c['precision']}, {c['why']}{agreement}")
    return ["", f"Chosen by inception-hub on {describe_cpu(results['machine'])}:", "", *lines] if lines else []


def readme_tables(runs: list[dict]) -> str:
    """The README's tables: one per CPU kind (one results file each), end to end and batch 32 for
    every engine, with the ratios and the start-up, each captioned with the CPU it ran on."""
    out = []
    for results in sorted(runs, key=lambda r: r["machine"].get("isa", "")):
        cfg = results["config"]
        out += [
            f"#### {describe_cpu(results['machine'])}",
            "",
            f"{cfg['images']} photos, {cfg['weights']} weights; best of {cfg['repeat']} (batch 32) and "
            f"{cfg['e2e_repeat']} (end to end) "
            + ("interleaved rounds" if cfg.get("timing") == INTERLEAVED else "runs, one engine after another")
            + ". ×fp32: against inception-hub's default fp32 engine; own b32: end to end as a share of the same "
            "engine's batch-32 rate.",
            "",
            "| model | engine | end-to-end img/s | ×TF-Hub | ×best peer | ×fp32 | % own b32 | b32 img/s | b32 ×fp32 |",
            "|---|---|--:|--:|--:|--:|--:|--:|--:|",
        ]
        for arch, model in results["models"].items():
            for e in model["engines"]:
                e2e, b32 = e["e2e"], e["b32"]
                out.append(
                    f"| {arch} | {e['name']} | {e2e['best']:.1f} | {fmt(e2e['vs_tfhub'], '.2f')} "
                    f"| {fmt(e2e['vs_best_peer'], '.2f')} | {fmt(e2e.get('vs_default_fp32'), '.2f')} "
                    f"| {fmt(pct(e2e.get('of_own_b32')), '.0f')} | {b32['best']:.1f} "
                    f"| {fmt(b32.get('vs_default_fp32'), '.2f')} |"
                )
        out += choice_lines(results)
        if results.get("startup"):
            rows = [
                f"{r['backend']} {r['precision']} {r['best_s']:.2f} s" for r in results["startup"] if "error" not in r
            ]
            out += ["", "Start-up of `inception-hub classify` on one photo, caches warm: " + ", ".join(rows) + "."]
        out.append("")
    return "\n".join(out)


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
    fig.suptitle(describe_cpu(results["machine"]), fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    log(f"wrote {path}")
