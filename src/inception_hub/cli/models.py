"""`inception-hub models`, `fetch`, `cache`, `export` and `install-hub-cache`: the catalog, the
weights cache and what is built from it."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..catalog import all_specs, resolve
from ..errors import InceptionHubError
from .common import arch_checkpoints


def cmd_models(args: argparse.Namespace) -> int:
    from ..weights import folder, is_cached, provenance

    def weights(arch: str) -> str:
        if not is_cached(arch):
            return "not cached"
        origin = (provenance(arch) or {}).get("origin")
        return {"release": "cached (official release)", "imported": "cached (imported, not the release)"}.get(
            origin, "cached"
        )

    rows = [("HANDLE", "INPUT", "OUTPUT", "FORMAT", "WEIGHTS")]
    for s in all_specs():
        h, w = s.image_size
        size = f"{h}x{w}" + ("+" if s.variable_size else "")
        output = f"{s.output_dim} {'logits' if s.num_classes else 'features'}"
        rows.append((s.handle, size, output, s.hub_format, weights(s.arch)))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\nShort names: inception_v1, inception_resnet_v2 (classification/5), and <name>/feature_vector.")
    print("INPUT '+' = any size accepted. Weights cache: " + str(folder("weights")))
    print_engines()
    return 0


def print_engines() -> None:
    """What each network runs on here per precision, and why: measured rates or the card's order."""
    from ..cpu import cpu
    from ..engine import FAST, PRECISIONS, plan
    from ..engine.choice import recorded_agreement
    from ..engine.records import known_digest
    from ..errors import InputError

    refused = {"bf16": "not offered: this CPU has no bf16 instructions", FAST: "not offered: no VNNI or bf16 here"}
    rows = [("NETWORK", "PRECISION", "ENGINE", "WHY")]
    for arch in dict.fromkeys(s.arch for s in all_specs()):
        for precision in (*PRECISIONS, FAST):
            try:
                choice = plan(arch, precision)
            except InputError as e:
                rows.append((arch, precision, "-", refused.get(precision, str(e))))
                continue
            engine = choice.backend + (f" {choice.precision}" if precision == FAST else "")
            why = choice.why()
            if precision == FAST and (digest := known_digest(arch, None)):
                agreed = recorded_agreement(choice, arch, digest)
                if agreed.agreement is not None:
                    why += f"; top-1 agreement with fp32 {agreed.agreement:.0%} ({agreed.photos} photos)"
            rows.append((arch, precision, engine, why))
    print(f"\nEngines on this CPU: {cpu().describe()}")
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3])


def cmd_fetch(args: argparse.Namespace) -> int:
    from ..weights import fetch

    spec = resolve(args.model)
    path = fetch(spec.arch, args.source, progress=args.progress)
    print(f"{spec.arch} weights ready at {path}")
    return 0


def cmd_cache(args: argparse.Namespace) -> int:
    from ..weights import cache

    if args.remove or args.clean:
        removed = cache.remove(args.remove) if args.remove else cache.clean()
        for path in removed:
            print(f"removed {path}")
        print(f"{len(removed)} removed from {cache.cache_dir()}")
        return 0
    items = cache.entries()
    for e in items:
        print(f"{e.kind:<9} {cache.human(e.bytes):>10}  {e.path}" + (f"  ({e.note})" if e.note else ""))
    print(f"{cache.human(sum(e.bytes for e in items))} in {cache.cache_dir()}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from ..export import export

    spec = resolve(args.model)
    out = export(
        spec,
        args.outdir,
        args.checkpoint,
        format=args.format,
        precision=args.precision,
        calibration=args.calibration,
        overwrite=args.overwrite,
        progress=args.progress,
    )
    fmt = args.format or ("tf1_hub" if spec.hub_format == "tf1_hub" else "saved_model")
    kind = {"tf1_hub": "TF1 Hub module", "saved_model": "TF2 SavedModel"}.get(fmt, f"{fmt} model ({args.precision})")
    print(f"exported {spec.handle} as a {kind} to {out}")
    return 0


def cmd_install_hub_cache(args: argparse.Namespace) -> int:
    from ..catalog import KAGGLE_TF1_NOTE
    from ..tfhub import cache as hub_cache
    from ..weights import is_cached, load_weights

    kaggle = args.kagglehub or args.kagglehub_cache_dir is not None
    if kaggle and args.tfhub_cache_dir is not None:
        raise InceptionHubError(
            "--tfhub-cache-dir is tensorflow_hub's cache; with --kagglehub, use --kagglehub-cache-dir"
        )
    if kaggle:
        cache, layout = hub_cache.kagglehub_cache_dir(args.kagglehub_cache_dir), hub_cache.KAGGLEHUB
    else:
        cache, layout = hub_cache.tfhub_cache_dir(args.tfhub_cache_dir), hub_cache.TFHUB
    if args.list and args.remove:
        raise InceptionHubError("--list and --remove cannot be combined")
    if args.remove:
        specs = hub_cache.select(args.models, {}, lambda arch: True) if args.models else None
        print(f"removed {len(hub_cache.remove(cache, specs, layout))} spellings from {cache}")
        return 0
    if args.list:
        shown = hub_cache.entries(cache)
        for e in shown:
            print(f"{e.spelling}  ->  {e.handle or '(missing: reinstall)'}" + ("" if e.is_link else f"  [{e.path}]"))
        print(f"{len(shown)} spellings of {len({e.handle for e in shown})} modules in {cache}")
        if any("tensorflow1" in e.spelling.lower() for e in shown):
            print(KAGGLE_TF1_NOTE)
        return 0
    from ..quiet import import_tensorflow

    hub_cache.check_owned(cache)  # before any weights are read or modules built
    checkpoints = arch_checkpoints(args.checkpoint)
    specs = hub_cache.select(args.models, checkpoints, is_cached)
    import_tensorflow()
    from ..export import export

    weights = {}  # read once per network, for its digest and for every module built from it

    def read(arch: str):
        if arch not in weights:
            weights[arch] = load_weights(arch, checkpoints.get(arch), progress=args.progress)
        return weights[arch]

    def build(spec, folder: Path) -> None:
        export(spec, folder, overwrite=True, progress=False, weights=read(spec.arch))

    done = hub_cache.install(specs, cache, lambda arch: read(arch).digest, build, force=args.force, layout=layout)
    modules = f"{len(specs)} module" + ("s" if len(specs) != 1 else "")
    if any(s.hub_format == "tf1_hub" for s in specs) and (
        kaggle or any("tensorflow1" in e.spelling.lower() for e in done)
    ):
        print(KAGGLE_TF1_NOTE)
    if kaggle:
        print(f"{len(done)} handles of {modules} ready in {cache}; kagglehub.model_download(handle) finds them offline")
        if args.kagglehub_cache_dir is not None and os.environ.get("KAGGLEHUB_CACHE") != str(cache):
            print(f"set KAGGLEHUB_CACHE={cache} where the kagglehub code runs")
        return 0
    print(f"{len(done)} spellings of {modules} ready in {cache}; hub.load(url) finds them offline")
    if os.environ.get("TFHUB_CACHE_DIR") is None and args.tfhub_cache_dir is None:
        print("(tensorflow_hub's default cache; set TFHUB_CACHE_DIR to keep modules across reboots)")
    elif args.tfhub_cache_dir is not None and os.environ.get("TFHUB_CACHE_DIR") != str(cache):
        print(f"set TFHUB_CACHE_DIR={cache} where the hub code runs")
    return 0
