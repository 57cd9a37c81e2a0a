"""`inception-hub index`, `search` and `dedupe`: similar photos and near-duplicates from the
feature vectors."""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from pathlib import Path

from ..errors import InceptionHubError, InputError
from ..nets import ARCHITECTURES
from ..outputs import check_destination, folder_of, json_with_keys
from ..similar.dedupe import groups
from ..similar.index import Index, is_index, model_identity, stream
from .common import PROG, Tally, find_inputs, model_results, resolve_model, run_ray

#: A search's contact sheet shows at most this many queries (a row each); a group's sheet at
#: most GROUP_MEMBERS photos, GROUP_COLUMNS to a row (one row of 50 was an 8408-pixel strip).
SHEET_ROWS = 200
GROUP_MEMBERS = 50
GROUP_COLUMNS = 10
#: What `dedupe -o` may write over: a report of ours.
GROUPS_KEYS = ("threshold", "photos", "groups")


def _caption(hit) -> str:
    return f"{hit.score:.3f} {Path(hit.path).name}"


def _failed(tally: Tally):
    def report(path: str, reason: str) -> None:
        tally.failures += 1
        print(f"{PROG}: cannot read {path}: {reason}", file=sys.stderr)

    return report


def _embed_into(
    index: Index | None, images: list[str], args: argparse.Namespace, tally: Tally, scratch: Path | None = None
) -> Index | None:
    """Embed the `images` not yet indexed and add them, streaming; a new index when None.
    Photos are recorded by absolute path, so a re-run from anywhere finds what is indexed.
    A Ray job writes its partitions into a folder beside `scratch` (default: the temp folder)."""
    paths, unmatched = find_inputs(images)
    new = [p for p in map(os.path.abspath, paths) if index is None or p not in index]
    tally.inputs, tally.failures = len(paths) + len(unmatched), len(unmatched)
    if not new:
        return index
    if args.engine == "ray":
        return _embed_with_ray(index, new, args, tally, scratch)
    module, results = model_results(args, resolve_model(args, "embed"), new, tally)  # counts unreadable files
    identity = model_identity(module)
    if index is None:
        index = Index(identity, module.output_dim)
    index.check_model(identity)
    stream(index, results)
    return index


def _embed_with_ray(
    index: Index | None, paths: list[str], args: argparse.Namespace, tally: Tally, beside: Path | None
) -> Index | None:
    """Run the Ray embed job into Parquet partitions (the driver writes them) beside `beside`,
    stream them in, and remove them."""
    import shutil
    import tempfile

    if beside is None:
        scratch = Path(tempfile.mkdtemp(prefix=f"{PROG}.embeddings."))
    else:
        beside = beside.resolve()
        beside.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{beside.name}.embeddings.", dir=beside.parent))
    try:
        parts = scratch / "parts"
        tally.failures += run_ray(args, "embed", paths, parts).errors
        return _add_embeddings(index, str(parts), args)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _add_embeddings(index: Index | None, path: str, args: argparse.Namespace) -> Index | None:
    """Stream an embed output's vectors in (rows already indexed are skipped; relative paths are
    taken from the current folder). The model is the output's own record where it has one."""
    from ..similar.embeddings import read_features

    record, batches = read_features(path)
    model = _model_of(record, args)
    for paths, vectors in batches:
        dim = ARCHITECTURES[model["architecture"]].num_features
        if vectors.shape[1] != dim:
            raise InputError(
                f"{path} holds vectors of {vectors.shape[1]} floats; {model['handle']} gives {dim}: "
                "name the model that made them with --model (and --checkpoint)"
            )
        if index is None:
            index = Index(model, dim)
        index.check_model(model)
        paths = [os.path.abspath(p) for p in paths]
        keep = [i for i, p in enumerate(paths) if p not in index]
        if keep:
            index.add([paths[i] for i in keep], vectors[keep])
    return index


def _model_of(record: dict | None, args: argparse.Namespace) -> dict:
    """What made an embed output's vectors: its record (a local file's model identity, or a Ray
    job's manifest), or else --model and --checkpoint."""
    from ..source import resolve_source

    if record is not None and "architecture" in record:
        return {key: record.get(key) for key in ("handle", "architecture", "kind", "weights")}
    source = resolve_source(record["model"] if record else args.model, args.checkpoint, task="embed")
    weights = record["weights"] if record else source.identity()
    return {"handle": source.name, "architecture": source.spec.arch, "kind": "feature_vector", "weights": weights}


def cmd_index(args: argparse.Namespace) -> int:
    tally = Tally()
    out = Path(args.output)
    if not args.images and not args.embeddings:
        raise InputError("give photos to embed, or --embeddings PATH with the output of `inception-hub embed`")
    if out.exists() and not is_index(out) and not (out.is_dir() and not any(out.iterdir())):
        raise InputError(f"{out} exists and is not an index; nothing was written: choose a new folder for -o")
    index = Index.load(out) if out.exists() and is_index(out) and not args.overwrite else None
    before = len(index) if index is not None else 0
    for path in args.embeddings or ():
        index = _add_embeddings(index, path, args)
    if args.images:
        index = _embed_into(index, args.images, args, tally, out)
    if index is None:
        raise InceptionHubError("no photos could be embedded")
    index.save(out)
    print(f"{out}: {len(index)} photos ({len(index) - before} added) with {index.model['handle']}", file=sys.stderr)
    return tally.exit_status()


def _query_module(index: Index, args: argparse.Namespace):
    from ..module import load

    module = load(index.model["handle"], args.checkpoint, kind="feature_vector", progress=args.progress)
    index.check_model(model_identity(module))
    return module


def cmd_search(args: argparse.Namespace) -> int:
    from .. import pipeline
    from ..similar.sheet import SUFFIXES, is_sheet

    if args.sheet:
        check_destination(args.sheet, "a contact sheet", suffixes=SUFFIXES, ours=is_sheet)
    index = Index.load(args.index)
    module = _query_module(index, args)
    paths, unmatched = find_inputs(args.images)
    tally = Tally(len(paths) + len(unmatched), len(unmatched))
    rows, sheet = [], []
    for r in pipeline.run(module, paths, batch_size=args.batch_size):
        if r.error is not None:
            _failed(tally)(r.path, r.error)
            continue
        hits = index.query(r.output[None], args.top_k)[0]
        rows += [(r.path, rank, h.path, h.score) for rank, h in enumerate(hits, 1)]
        if len(sheet) < SHEET_ROWS:
            sheet.append([(r.path, f"query {Path(r.path).name}")] + [(h.path, _caption(h)) for h in hits])
    _print_hits(rows, args.format)
    if args.sheet and sheet:
        from ..similar.sheet import contact_sheet

        contact_sheet(sheet, args.sheet)
        shown = "" if len(sheet) == tally.inputs else f" (the first {len(sheet)} queries)"
        print(f"wrote {args.sheet}{shown}", file=sys.stderr)
    return tally.exit_status()


#: Characters that would break a table's rows or columns, shown escaped instead.
ESCAPES = {c: f"\\x{c:02x}" for c in (*range(32), 0x7F)} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    ord("\t"): "\\t",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def shown(path: str, *, table: bool = True) -> str:
    """A path as text output shows it: bytes that are not UTF-8 (surrogate escapes) as `\\udcXX`,
    and in a table the characters that would split its rows or columns escaped too. (JSON output
    keeps every name exactly.)"""
    text = path.translate(ESCAPES) if table else path
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _print_hits(rows: list[tuple[str, int, str, float]], fmt: str) -> None:
    if fmt == "json":
        print(json.dumps([{"query": q, "rank": k, "path": p, "similarity": round(s, 6)} for q, k, p, s in rows]))
    elif fmt == "csv":  # quoted fields keep newlines; only what cannot be written is escaped
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["query", "rank", "path", "similarity"])
        writer.writerows((shown(q, table=False), k, shown(p, table=False), f"{s:.6f}") for q, k, p, s in rows)
        print(buf.getvalue(), end="")
    else:  # tab-separated, with a header: reads as a table and cuts like one
        print("query\trank\tsimilarity\tpath")
        for q, k, p, s in rows:
            print(f"{shown(q)}\t{k}\t{s:.4f}\t{shown(p)}")


def cmd_dedupe(args: argparse.Namespace) -> int:
    from ..similar.sheet import is_group_sheet

    if args.output:
        check_destination(args.output, "a dedupe report", suffixes=(".json",), ours=json_with_keys(GROUPS_KEYS))
    sheets = folder_of(is_group_sheet)
    if args.sheets:
        check_destination(args.sheets, "a folder of contact sheets", folder=True, ours=sheets)
    tally = Tally()
    index = _embed_into(None, args.images, args, tally, Path(args.output) if args.output else None)
    if index is None:
        raise InceptionHubError("no photos could be embedded")
    found = groups(index, args.threshold)
    report = [[{"path": h.path, "similarity": round(h.score, 6)} for h in g] for g in found]
    # Each similarity is to the group's centre (see groups), which the report says.
    record = {"threshold": args.threshold, "photos": len(index), "similarity_to": "centre", "groups": report}
    text = json.dumps(record, indent=1)
    if args.output:
        from ..atomic import atomic_file

        with atomic_file(args.output) as f:
            f.write((text + "\n").encode())
    else:
        print(text)
    if args.sheets:
        from ..atomic import atomic_dir
        from ..similar.sheet import contact_sheet

        # Replaced whole, so no sheet of an earlier run is left beside this run's groups.
        with atomic_dir(args.sheets, overwrite=True, ours=sheets) as staging:
            staging.mkdir()
            for i, g in enumerate(found, 1):
                shown = [(h.path, _caption(h)) for h in g[:GROUP_MEMBERS]]
                rows = [shown[j : j + GROUP_COLUMNS] for j in range(0, len(shown), GROUP_COLUMNS)]
                contact_sheet(rows, staging / f"group_{i:04d}.png")
    print(f"{len(found)} groups of near-duplicates among {len(index)} photos", file=sys.stderr)
    return tally.exit_status()
