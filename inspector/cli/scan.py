"""Commands for long inputs: a bounded scan of one text, and retrieval heads."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from .common import (
    Command,
    UsageError,
    add_length,
    add_memory,
    add_model,
    add_output,
    add_selection,
    check_not_input,
    check_output,
    check_output_of,
    flag,
    length_options,
    load_model,
    number_list,
    progress,
    scored_heads,
    selection,
)


def rows_spec(value: str) -> Any:
    """``-1``, ``0,100,-1``, ``100:200`` or ``0:100:10`` (a slice) or ``none``."""
    text = value.replace(" ", "")
    if text.lower() == "none":
        return []
    if ":" in text:
        parts = text.split(":")
        try:
            if len(parts) > 3:
                raise ValueError
            bounds = [int(p) if p else None for p in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected a slice such as 100:200 or 0:100:10, got {value!r}"
            ) from None
        if len(bounds) == 3 and bounds[2] == 0:
            raise argparse.ArgumentTypeError(
                f"{value!r}: a slice's step cannot be 0; use e.g. 0:100 or 0:100:10"
            )
        return slice(*bounds)
    try:
        positions = [int(v) for v in text.split(",") if v]
    except ValueError:
        positions = []
    if not positions:
        raise argparse.ArgumentTypeError(
            f"expected query positions such as -1 or 0,100,-1 (or none to keep no row), "
            f"got {value!r}"
        )
    return positions


float_list = number_list(float, "numbers such as 0,0.5,1")
int_values = number_list(int, "integers such as 1000,2000")


def _read(path: str, what: str) -> str:
    if not os.path.isfile(path):
        raise UsageError(f"{what} {path} does not exist; give a UTF-8 text file")
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{what} {path} is not UTF-8 text ({exc.reason}); convert it") from None


def _long_options(args: argparse.Namespace) -> dict[str, Any]:
    """What ``scan`` and ``retrieval`` pass alike: the head selection, the capture method, the
    memory budget and the progress display."""
    return {
        **selection(args),
        "method": args.method,
        "max_memory": args.max_memory,
        "progress": progress(args),
    }


def _args_scan(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("text", nargs="?", help="the input text (or --file)")
    p.add_argument(
        "--file", metavar="PATH", help="read the input from a UTF-8 text file (default: TEXT)"
    )
    add_length(p)
    add_selection(p)
    p.add_argument(
        "--rows", type=rows_spec, default=None, metavar="POS",
        help="query positions whose exact rows are kept: -1, 0,100,-1, 100:200 or none "
        "(default: the last)",
    )  # fmt: skip
    p.add_argument(
        "--topk", type=int, metavar="K", help="keep the top-K keys of every row (default: none)"
    )
    p.add_argument("--pool", type=int, default=256, metavar="P", help="pooled maps: P x P bins")
    p.add_argument(
        "--method", choices=["auto", "blockwise", "eager"], default="auto",
        help="blockwise: sdpa forward, weights recomputed by blocks (never T x T)",
    )  # fmt: skip
    add_memory(p)
    flag(p, "--no-progress", help="no progress bar (as --quiet)")
    add_output(
        p,
        "scan.html (report), or scan.parquet / scan.csv (one row per head; kept rows and "
        "top-k keys go beside it as NAME.rows.* / NAME.topk.*)",
    )


def cmd_scan(args: argparse.Namespace) -> str:
    check_output(args.output, ".html", ".htm", ".parquet", ".csv", args=args)
    if (args.text is None) == (args.file is None):
        raise UsageError("give the input as TEXT or --file PATH (one of them)")
    from ..api import scan_files

    tables = Path(args.output).suffix.lower() in (".parquet", ".csv")
    outputs = list(map(str, scan_files(args.output).values())) if tables else [args.output]
    check_not_input(outputs, [args.file], args)
    for side in outputs[1:]:  # a read-only sidecar is refused before the scan, not after
        check_output(side, ".parquet", ".csv", args=args)
    text = args.text if args.text is not None else _read(args.file, "--file")
    scan = load_model(args).scan(
        text,
        rows=args.rows,
        topk=args.topk,
        pool=args.pool,
        **length_options(args),
        **_long_options(args),
    )
    removed: list[str] = []
    if tables:  # heads, rows and top-k: all new or none changed
        before = [p for p in outputs[1:] if os.path.exists(p)]
        written = scan.save(args.output, max_memory=args.max_memory)
        removed = [p for p in before if Path(p) not in written]
    else:
        scan.report(args.output, max_memory=args.max_memory)
        written = [Path(args.output)]
    sinks = scan.sinks().sort_values("first_k_share", ascending=False).head(3)
    top = scored_heads(sinks["first_k_share"])
    meta = scan.metadata
    return (
        f"{meta['model_name']}: {len(scan.tokens):,} tokens, {len(scan.layers)} layers x "
        f"{len(scan.heads)} heads ({meta['method']}); strongest sinks {top} -> "
        f"{', '.join(str(p) for p in written)}"
        + (f" (removed the old {', '.join(removed)}: this scan has none)" if removed else "")
    )


def _args_retrieval(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("--haystack", required=True, metavar="FILE", help="the text to hide it in")
    p.add_argument("--needle", help="the fact to retrieve (default: the San Francisco sentence)")
    p.add_argument("--question", help="the question about it (default: the San Francisco question)")
    p.add_argument(
        "--answer",
        help="the part of the needle the question asks for, the only part scored under --protocol "
        "wu (default: the known answer of a documented needle; needed with any other --needle)",
    )
    p.add_argument(
        "--protocol", choices=["wu", "needle"], default="wu",
        help="wu: as the paper's code (the answer's span, rouge-score recall, up to 50 tokens "
        "stopping after a newline); needle: the whole needle, word recall, up to its length + 10",
    )  # fmt: skip
    p.add_argument(
        "--lengths", type=int_values, default=[1000], metavar="N,..", help="prompt tokens"
    )
    p.add_argument(
        "--depths", type=float_list, default=[0.0, 0.25, 0.5, 0.75, 1.0], metavar="D,..",
        help="needle positions as fractions of the haystack",
    )  # fmt: skip
    add_selection(p)
    p.add_argument(
        "--method", choices=["auto", "blockwise", "eager"], default="auto",
        help="blockwise: sdpa forward, weights recomputed by blocks (never T x T)",
    )  # fmt: skip
    p.add_argument(
        "--max-new-tokens",
        type=int,
        metavar="N",
        help="tokens per answer at most (default: 50 under wu, the needle's tokens + 10 under "
        "needle)",
    )
    add_memory(p)
    p.add_argument("--top", type=int, default=10, metavar="K", help="heads to list")
    flag(p, "--no-progress", help="no progress bar (as --quiet)")
    add_output(p, "r.html (report), r.csv or r.parquet")


def cmd_retrieval(args: argparse.Namespace) -> str:
    check_output_of(args, ".html", ".htm", ".csv", ".parquet", inputs=[args.haystack])
    haystack = _read(args.haystack, "--haystack")
    if (args.needle is None) != (args.question is None):
        raise UsageError("give --needle and --question together (or neither, for the default)")
    from ..api import retrieval_heads, save_table

    extra: dict[str, Any] = {}
    if args.needle is not None:
        extra.update(needle=args.needle, question=args.question)
    result = retrieval_heads(
        load_model(args),
        haystack,
        lengths=args.lengths,
        depths=args.depths,
        answer=args.answer,
        protocol=args.protocol,
        max_new_tokens=args.max_new_tokens,
        **_long_options(args),
        **extra,
    )
    if args.output.lower().endswith((".html", ".htm")):
        result.report(args.output)
    else:
        save_table(result.heads.reset_index(), args.output)
    trials = result.trials
    heads = scored_heads(result.top(args.top, threshold=0.0)["retrieval_score"])
    what = "answer" if args.protocol == "wu" else "needle"
    return (
        f"{result.metadata['model_name']}: {what} retrieved in {int(trials['success'].sum())} of "
        f"{len(trials)} trials (mean recall {trials['recall'].mean():.2f}, protocol "
        f"{args.protocol}); retrieval heads: {heads or 'none (no trial succeeded)'} -> "
        f"{args.output}"
    )


COMMANDS: dict[str, Command] = {
    "scan": Command(
        "bounded-memory statistics of a long input (sinks, pooled maps, rows) to HTML/Parquet",
        _args_scan,
        cmd_scan,
    ),
    "retrieval": Command(
        "retrieval heads (Wu et al. 2024) from needle-in-a-haystack prompts",
        _args_retrieval,
        cmd_retrieval,
    ),
}
