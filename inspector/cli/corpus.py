"""Commands over a corpus: the head atlas and the syntactic probe."""

from __future__ import annotations

import argparse
import os

from .common import (
    Command,
    add_memory,
    add_model,
    add_output,
    add_resume,
    check_output_of,
    flag,
    load_model,
    names,
    progress,
    resumable_run,
    save_kept,
)

BATCH_MEMORY_HELP = (
    "memory budget of a batch, e.g. 4GB (default: what is available); bigger batches run in "
    "smaller passes"
)
SKIP_BAD_LINES_HELP = (
    "count a line that is not UTF-8 (or not valid CSV/CoNLL-U) as skipped instead of stopping at it"
)


def _args_atlas(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument(
        "texts",
        help="a text file (one text per line), FILE.csv:COLUMN, FILE.parquet:COLUMN or .conllu",
    )
    add_output(p, "atlas.parquet (the distances go beside it)")
    p.add_argument(
        "--column",
        help="text column of a CSV/Parquet file (default: 'text', or the only column)",
    )
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per pass")
    p.add_argument(
        "--max-length",
        type=int,
        metavar="N",
        help="token limit; longer texts are truncated (default: the model's own)",
    )
    p.add_argument(
        "--metrics",
        type=names,
        metavar="M,M",
        help="e.g. entropy,to_prev (default: every registered metric)",
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N texts (default: all)")
    flag(p, "--skip-bad-lines", help=SKIP_BAD_LINES_HELP)
    flag(p, "--no-distances", help="skip the head-distance matrix")
    flag(p, "--no-progress", help="no progress bar (as --quiet)")
    add_resume(p)
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="where batches run")
    p.add_argument(
        "--address",
        help="Ray cluster address, ray://host:10001 or auto (default: start Ray locally)",
    )
    p.add_argument("--workers", type=int, default=2, metavar="N", help="Ray model replicas")
    p.add_argument("--report", metavar="HTML", help="also write an atlas report (default: none)")
    add_memory(p, BATCH_MEMORY_HELP)


def cmd_atlas(args: argparse.Namespace) -> str:
    from ..api import atlas, distances_path

    local = args.engine == "local"
    with resumable_run(args, [".parquet"], distances_path, "atlas") as checkpoint:
        result = atlas(
            load_model(args) if local else args.model,
            args.texts,
            engine=args.engine,
            column=args.column,
            batch_size=args.batch_size,
            max_length=args.max_length,
            metrics=args.metrics,
            distances=not args.no_distances,
            progress=progress(args),
            limit=args.limit,
            skip_bad_lines=args.skip_bad_lines,
            checkpoint=checkpoint,
            resume=args.resume,
            address=args.address,
            num_workers=args.workers,
            max_memory=args.max_memory,
        )
    stale = distances_path(args.output)
    removed = result.distances is None and os.path.exists(stale)
    # all of them, or none changed
    paths = save_kept(lambda: result.save(args.output, report=args.report), checkpoint, "atlas")
    extra = f" (removed the old {stale}: this atlas has no distances)" if removed else ""
    meta = result.metadata
    bad = f" ({meta['n_bad_lines']} unreadable)" if meta.get("n_bad_lines") else ""
    return (
        f"{meta['model_name']}: {meta['n_texts']:,} texts ({meta['n_tokens']:,} tokens, "
        f"{meta['n_skipped']} skipped{bad}, {meta['n_truncated']} truncated), "
        f"{meta['n_layers']} layers x {meta['n_heads']} heads x {len(meta['metrics'])} metrics, "
        f"{meta.get('texts_per_second')} texts/s -> {', '.join(str(p) for p in paths)}{extra}"
    )


def _args_probe(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("treebank", help="a .conllu file")
    add_output(p, "also write the table to .csv or .parquet", required=False)
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="sentences per pass")
    p.add_argument(
        "--limit", type=int, metavar="N", help="only the first N sentences (default: all)"
    )
    p.add_argument(
        "--min-count", type=int, default=1, metavar="N", help="print relations with >= N cases"
    )
    flag(p, "--subtypes", help="keep nmod:poss apart from nmod")
    flag(p, "--skip-bad-lines", help=SKIP_BAD_LINES_HELP)
    flag(p, "--no-progress", help="no progress bar (as --quiet)")
    add_memory(p, BATCH_MEMORY_HELP)


def cmd_probe(args: argparse.Namespace) -> str:
    check_output_of(args, ".csv", ".parquet", inputs=[args.treebank])
    from ..api import save_table, syntax_probe

    result = syntax_probe(
        load_model(args), args.treebank, batch_size=args.batch_size, limit=args.limit,
        subtypes=args.subtypes, progress=progress(args),
        skip_bad_lines=args.skip_bad_lines, max_memory=args.max_memory,
    )  # fmt: skip
    if args.output:
        save_table(result.table, args.output)
    meta = result.metadata
    skipped = [
        (meta["skipped_too_long"], "too long"),
        (meta["skipped_unaligned"], "unaligned"),
        (meta.get("skipped_no_heads", 0), "without heads"),
        (meta.get("skipped_not_a_tree", 0), "not trees"),
    ]
    shown = ", ".join(f"{n} {why}" for n, why in skipped if n) or "none skipped"
    return (
        f"{result.markdown(min_count=args.min_count)}\n\n{meta['model_name']}: "
        f"{meta['n_scored_sentences']} sentences scored ({shown})"
        + (f" -> {args.output}" if args.output else "")
    )


COMMANDS: dict[str, Command] = {
    "atlas": Command(
        "per-head statistics over a corpus, streamed in batches, to Parquet",
        _args_atlas,
        cmd_atlas,
    ),
    "probe": Command(
        "syntactic head probe (Clark et al. 2019) on a CoNLL-U treebank", _args_probe, cmd_probe
    ),
}
