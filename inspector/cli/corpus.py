"""Commands over a corpus: the head atlas and the syntactic probe."""

from __future__ import annotations

import argparse
import os
import sys

from .common import (
    EXIT_INTERRUPTED,
    Command,
    UsageError,
    add_model,
    check_output,
    load_model,
    names,
)


def _args_atlas(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument(
        "texts",
        help="a text file (one text per line), FILE.csv:COLUMN, FILE.parquet:COLUMN or .conllu",
    )
    p.add_argument("-o", "--output", required=True, help="atlas.parquet (distances go beside it)")
    p.add_argument("--column", help="text column of a CSV/Parquet file")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per pass")
    p.add_argument("--max-length", type=int, metavar="N", help="token limit (longer: truncated)")
    p.add_argument("--metrics", type=names, help="e.g. entropy,to_prev (all registered)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N texts")
    p.add_argument("--no-distances", action="store_true", help="skip the head-distance matrix")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    p.add_argument("--checkpoint", metavar="PATH", help="checkpoint file (OUTPUT.ckpt.npz)")
    p.add_argument("--engine", choices=["local", "ray"], default="local", help="where batches run")
    p.add_argument("--address", help="Ray cluster address (ray://host:10001 or auto)")
    p.add_argument("--workers", type=int, default=2, help="Ray model replicas")
    p.add_argument("--report", metavar="HTML", help="also write an atlas report")
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory budget of a batch, e.g. 4GB (default: what is available); bigger batches "
        "run in smaller passes",
    )


def cmd_atlas(args: argparse.Namespace) -> str:
    check_output(args.output, ".parquet")
    check_output(args.report, ".html", ".htm")
    from ..api import atlas, default_checkpoint

    checkpoint = args.checkpoint or str(default_checkpoint(args.output))
    local = args.engine == "local"
    if local and os.path.exists(checkpoint) and not args.resume:
        raise UsageError(
            f"{checkpoint} holds an unfinished atlas: add --resume to continue it, or delete it "
            f"to start over"
        )
    try:
        result = atlas(
            load_model(args) if local else args.model,
            args.texts,
            engine=args.engine,
            column=args.column,
            batch_size=args.batch_size,
            max_length=args.max_length,
            metrics=args.metrics,
            distances=not args.no_distances,
            progress=not args.no_progress,
            limit=args.limit,
            checkpoint=checkpoint if local else None,
            resume=args.resume if local else False,
            address=args.address,
            num_workers=args.workers,
            max_memory=args.max_memory,
        )
    except KeyboardInterrupt:
        if local and os.path.exists(checkpoint):
            print(
                f"inspector: interrupted; progress saved in {checkpoint}: rerun with --resume",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise
    paths = result.save(args.output)
    if local and os.path.exists(checkpoint):
        os.remove(checkpoint)
    extra = ""
    if args.report:
        result.report(args.report)
        extra = f", report -> {args.report}"
    meta = result.metadata
    return (
        f"{meta['model_name']}: {meta['n_texts']:,} texts ({meta['n_tokens']:,} tokens, "
        f"{meta['n_skipped']} skipped, {meta['n_truncated']} truncated), "
        f"{meta['n_layers']} layers x {meta['n_heads']} heads x {len(meta['metrics'])} metrics, "
        f"{meta.get('texts_per_second')} texts/s -> {', '.join(str(p) for p in paths)}{extra}"
    )


def _args_probe(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("treebank", help="a .conllu file")
    p.add_argument("-o", "--output", help="also write the table to .csv or .parquet")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="sentences per pass")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N sentences")
    p.add_argument("--min-count", type=int, default=1, help="print relations with >= N cases")
    p.add_argument("--subtypes", action="store_true", help="keep nmod:poss apart from nmod")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_probe(args: argparse.Namespace) -> str:
    check_output(args.output, ".csv", ".parquet")
    from ..api import save_table, syntax_probe

    result = syntax_probe(
        load_model(args), args.treebank, batch_size=args.batch_size, limit=args.limit,
        subtypes=args.subtypes, progress=not args.no_progress,
    )  # fmt: skip
    if args.output:
        save_table(result.table, args.output)
    meta = result.metadata
    return (
        f"{result.markdown(min_count=args.min_count)}\n\n{meta['model_name']}: "
        f"{meta['n_scored_sentences']} sentences scored ({meta['skipped_too_long']} too long, "
        f"{meta['skipped_unaligned']} unaligned)" + (f" -> {args.output}" if args.output else "")
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
