"""``inspector faithfulness``: which token-level explanation to trust, over a corpus."""

from __future__ import annotations

import argparse

from .common import (
    Command,
    UsageError,
    add_memory,
    add_model,
    add_output,
    add_resume,
    finish_run,
    flag,
    load_model,
    names,
    progress,
    resumable_run,
)


def _args(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument(
        "texts",
        metavar="FILE",
        help="a text file (one text per line), FILE.csv:COLUMN, FILE.parquet:COLUMN or .conllu",
    )
    add_output(p, "faith.csv or .parquet: text, method, metric, value (token scores go beside)")
    p.add_argument(
        "--methods",
        type=names,
        metavar="M,M",
        help="explainers to score, e.g. rollout,occlusion,random (default: every registered "
        "explainer with token scores; a wrong name lists them)",
    )
    p.add_argument(
        "--target",
        default="auto",
        help="auto, predicted, label:NAME, token:TOKEN or embedding (see inspector.Target)",
    )
    p.add_argument(
        "--steps",
        choices=["k", "ferret", "eraser"],
        default="k",
        help="rationale sizes: k = 1..n tokens, ferret = 10%%..100%%, eraser = 1, 5, 10, 20, 50%%",
    )
    flag(
        p,
        "--all-scores",
        help="let negatively scored tokens into rationales (ferret's only_pos=False)",
    )
    p.add_argument("--column", help="text column of a CSV/Parquet file (default: 'text')")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N texts (default: all)")
    p.add_argument(
        "--max-length",
        type=int,
        metavar="N",
        help="truncate texts to N tokens (default: skip and count texts the model cannot take)",
    )
    flag(
        p, "--skip-bad-lines", help="count an unreadable line as skipped instead of stopping at it"
    )
    add_resume(p)
    p.add_argument("--report", metavar="HTML", help="also write the report (default: none)")
    add_memory(
        p, "memory budget of one pass of deleted inputs, e.g. 4GB (default: what is available)"
    )


def check_methods(chosen: list[str] | None) -> list[str] | None:
    """``--methods`` checked against the registry (read when the command runs, so explainers
    registered by then count)."""
    if chosen is None:
        return None
    from ..api import faithfulness_methods

    able = faithfulness_methods()
    unknown = [m for m in chosen if m not in able]
    if unknown or not chosen:
        raise UsageError(
            f"--methods: {', '.join(unknown) or 'none given'} not among the explainers with token "
            f"scores; choose from {', '.join(able)}"
        )
    return chosen


def cmd_faithfulness(args: argparse.Namespace) -> str:
    methods = check_methods(args.methods)
    from ..api import faithfulness, faithfulness_scores_path

    suffixes = [".csv", ".parquet"]
    beside = faithfulness_scores_path
    with resumable_run(args, suffixes, beside, "faithfulness run") as checkpoint:
        result = faithfulness(
            load_model(args),
            args.texts,
            methods,
            target=args.target,
            steps=args.steps,
            only_positive=not args.all_scores,
            column=args.column,
            limit=args.limit,
            max_length=args.max_length,
            checkpoint=checkpoint,
            resume=args.resume,
            progress=progress(args),
            max_memory=args.max_memory,
            skip_bad_lines=args.skip_bad_lines,
        )
    paths, extra = finish_run(result, args.output, checkpoint, args.report)
    meta = result.metadata
    skipped = len(meta.get("skipped") or [])
    note = f"; {skipped} method/text pairs skipped" if skipped else ""
    if meta.get("n_too_long"):
        note += f"; {meta['n_too_long']} texts too long for the model skipped"
    return (
        f"{result.markdown()}\n\n{meta['model_name']}: {result.n_texts} texts, "
        f"{len(result.methods)} methods, target {meta.get('target')}, "
        f"{meta.get('forward_rows', 0):,} inputs in {meta.get('forward_passes', 0):,} passes"
        f"{note} -> {', '.join(str(p) for p in paths)}{extra}"
    )


COMMANDS = {
    "faithfulness": Command(
        "which token-level explanation to trust: AOPC comprehensiveness, sufficiency and "
        "tau with leave-one-out over a corpus",
        _args,
        cmd_faithfulness,
    ),
}
