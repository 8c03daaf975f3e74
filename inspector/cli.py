"""Command line: parse arguments, call the Python API, print a short summary. The last consumer.

Every command is one entry of :data:`COMMANDS` (its arguments and the function that runs it);
commands import nothing but :mod:`inspector.api`, lazily, so ``inspector --help`` does not
import torch. Errors print one readable line (``inspector: error: ...``) and exit non-zero; no
output file is left behind because every writer is atomic.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

MODEL_HELP = (
    "'minilm' or 'smollm2' (embedded), a model folder, a .gguf file, or a Hugging Face hub id"
)


class UsageError(Exception):
    """A command-line argument is unusable; the message says how to fix it."""


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,5, got {value!r}"
        ) from None


def _names(value: str) -> list[str]:
    return [v for v in value.replace(" ", "").split(",") if v]


# ------------------------------------------------------------------------------ shared options


def _add_model(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
    """The model argument and the loading options every command shares."""
    p.add_argument("model", help=help)
    p.add_argument("--device", help="torch device, e.g. cuda (default: where the model loads)")
    p.add_argument("--dtype", help="model dtype, e.g. float16 (default: the checkpoint's)")
    p.add_argument("--gguf-file", metavar="NAME", help="GGUF file inside the model folder")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow the model folder / hub repo to run its own code",
    )
    p.add_argument(
        "--allow-pickle",
        action="store_true",
        help="accept pickle weights (pytorch_model.bin) when no safetensors exist",
    )


def _add_length(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut inputs longer than the model's limit instead of failing",
    )
    p.add_argument("--max-length", type=int, metavar="N", help="a lower token limit")


def _add_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair")
    p.add_argument("--target", metavar="TEXT", help="decoder text (encoder-decoder models)")
    _add_length(p)


def _add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", type=_int_list, help="layer indexes to keep, e.g. 0,1 (all)")
    p.add_argument("--heads", type=_int_list, help="head indexes to keep, e.g. 0,3 (all)")


def _load(args: argparse.Namespace, model: str | None = None) -> Any:
    from .api import load

    return load(
        model or args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        gguf_file=args.gguf_file,
        allow_pickle=args.allow_pickle,
    )


def _inspect(args: argparse.Namespace, **extra: Any) -> Any:
    return _load(args).inspect(
        args.text,
        args.pair,
        target=args.target,
        truncation=args.truncate,
        max_length=args.max_length,
        **extra,
    )


def _output(path: str | None, *suffixes: str) -> None:
    """Check an output path before any model work (a usage error names the suffixes)."""
    if path is None:
        return
    from .api import check_output

    check_output(path, suffixes)


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts or [])
    if args.file:
        if not os.path.isfile(args.file):
            raise UsageError(
                f"--file {args.file} does not exist; give a text file, one text a line"
            )
        with open(args.file, encoding="utf-8") as fh:
            texts += [line.strip() for line in fh if line.strip()]
    if not texts:
        raise UsageError("give at least one TEXT or --file texts.txt (one text per line)")
    return texts


def _label(*head: Any) -> str:
    """A head's display label, ``layer.head`` (e.g. ``5.3``): the one notation of every output."""
    return ".".join(str(int(x)) for x in head)


def _count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _shape(part: Any) -> str:
    """``6 layers x 12 heads``: what an inspection kept."""
    return f"{_count(len(part.layers), 'layer')} x {_count(len(part.heads), 'head')}"


# ------------------------------------------------------------------------------------ commands


def _args_inspect(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    _add_text(p)
    _add_selection(p)
    p.add_argument(
        "--level", choices=["token", "word"], default="token", help="rows per token or per word"
    )
    p.add_argument("-o", "--output", required=True, help="out.parquet or out.csv")


def cmd_inspect(args: argparse.Namespace) -> str:
    _output(args.output, ".parquet", ".csv")
    ins = _inspect(args, layers=args.layers, heads=args.heads)
    frame = ins.frame(level=args.level)
    from .api import save_table

    save_table(frame, args.output)
    part = ins.encoder if ins.is_encoder_decoder else ins
    return (
        f"{ins.metadata['model_name']}: {len(part.tokens)} tokens, {_shape(part)}, "
        f"{len(frame):,} rows -> {args.output}"
    )


def _args_report(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    _add_text(p)
    _add_selection(p)
    p.add_argument(
        "--precision",
        choices=["uint8", "uint16"],
        default="uint8",
        help="how attention is stored in the page (uint8: error <= 0.002; uint16: <= 7.6e-6)",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="add the 'what mattered' section (rollout, norm-based maps, head importance)",
    )
    p.add_argument("-o", "--output", required=True, help="out.html")


def cmd_report(args: argparse.Namespace) -> str:
    _output(args.output, ".html", ".htm")
    ins = _inspect(args, layers=args.layers, heads=args.heads)
    if args.explain:
        report = ins.explain_report(args.output, precision=args.precision)
    else:
        report = ins.report(args.output, precision=args.precision)
    part = ins.encoder if ins.is_encoder_decoder else ins
    size = os.path.getsize(args.output)
    return (
        f"{ins.metadata['model_name']}: {_shape(part)}, {len(report.sections)} sections, "
        f"{size / 1e6:.2f} MB -> {args.output}"
    )


def _args_heads(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="input texts")
    p.add_argument("--file", metavar="PATH", help="a text file with one input per line")
    p.add_argument("--top", type=int, default=3, metavar="K", help="heads to list per role")
    _add_length(p)
    p.add_argument("-o", "--output", help="heads.csv or heads.parquet (one row per head)")


def cmd_heads(args: argparse.Namespace) -> str:
    _output(args.output, ".csv", ".parquet")
    texts = _read_texts(args)
    from .api import head_metrics, head_roles, save_table, top_heads

    model = _load(args)
    frame = head_metrics(model, texts, truncation=args.truncate, max_length=args.max_length)
    roles = head_roles(frame)
    frame = frame.join(roles[["role", "label"]])
    if args.output:
        save_table(frame, args.output)
    lines = [f"{model.name}: {len(texts)} text(s); top {args.top} heads per role"]
    for role, rows in top_heads(frame, k=args.top).groupby("role", sort=False):
        best = ", ".join(f"{_label(r.layer, r.head)}: {r.score:.2f}" for r in rows.itertuples())
        count = int((roles["role"] == role).sum())
        lines.append(f"  {role:<12} {count:>3} head(s) with this role; top: {best}")
    sinks = frame.loc[roles["role"] == "sink", "sink_token"].value_counts()
    if len(sinks):
        lines.append(f"  sink tokens: {', '.join(f'{t} ({n})' for t, n in sinks.items())}")
    if args.output:
        lines.append(f"-> {args.output}")
    return "\n".join(lines)


def _args_compare(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Compare MODEL on TEXT with --text-b (same model) and/or --model-b (same tokenizer and "
        "head layout). Example: inspector compare minilm 'The keys to the cabinet are' --text-b "
        "'The key to the cabinet is' -o reports/diff.html"
    )
    _add_model(p, help="model A: " + MODEL_HELP)
    p.add_argument("text", help="text A (also used for model B unless --text-b is given)")
    p.add_argument("--text-b", metavar="TEXT", help="text B (default: text A)")
    p.add_argument("--model-b", metavar="MODEL", help="model B (default: model A)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="heads to list and draw")
    _add_length(p)
    p.add_argument("-o", "--output", help="diff.html (report), diff.csv or diff.parquet")


def cmd_compare(args: argparse.Namespace) -> str:
    if args.model_b is None and args.text_b is None:
        raise UsageError("give --text-b TEXT (a second input) and/or --model-b MODEL")
    _output(args.output, ".html", ".htm", ".csv", ".parquet")
    from .api import compare, save_table

    model_a = _load(args)
    model_b = model_a if args.model_b is None else _load(args, args.model_b)
    kw = {"truncation": args.truncate, "max_length": args.max_length}
    ins_a = model_a.inspect(args.text, **kw)
    ins_b = model_b.inspect(args.text if args.text_b is None else args.text_b, **kw)
    if ins_a.is_encoder_decoder:
        ins_a, ins_b = ins_a.encoder, ins_b.encoder
    result = compare(ins_a, ins_b)
    if args.output and args.output.lower().endswith((".csv", ".parquet")):
        save_table(result.frame, args.output)
    elif args.output:
        result.report(args.output, k=args.top)
    lines = [
        f"{result.labels[0]!r} vs {result.labels[1]!r}: {len(result.key_pairs)} aligned tokens "
        f"({result.method}); heads that changed most (js, d_entropy, d_sink_share):"
    ]
    for key, row in result.ranked(args.top).iterrows():
        layer, head = cast(tuple[int, int], key)
        lines.append(
            f"  {_label(layer, head)}  js {row['js']:.4f}  d_entropy {row['d_entropy']:+.3f}  "
            f"d_sink_share {row['d_sink_share']:+.3f}"
        )
    if args.output:
        lines.append(f"-> {args.output}")
    return "\n".join(lines)


def _args_explain(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair")
    _add_length(p)
    p.add_argument(
        "--target",
        default="auto",
        help="what head importance measures: auto, predicted, token:TOKEN, label:LABEL, "
        "loss:LABEL, embedding, embedding:cosine, embedding:norm",
    )
    p.add_argument(
        "--method",
        choices=["ablation", "gradient"],
        default="ablation",
        help="ablate each head, or take the gate gradient",
    )
    p.add_argument("--layer", type=int, help="layer of the raw / norm-based maps (middle)")
    p.add_argument("--top", type=int, default=4, help="how many top heads to show")
    p.add_argument("-o", "--output", required=True, help="out.html")


def cmd_explain(args: argparse.Namespace) -> str:
    _output(args.output, ".html", ".htm")
    ins = _load(args).inspect(
        args.text, args.pair, truncation=args.truncate, max_length=args.max_length
    )
    expl = ins.explain(args.target, args.method, layer=args.layer, top=args.top)
    ins.explain_report(args.output, explanation=expl)
    top = ", ".join(_label(layer, head) for layer, head in expl.top_heads)
    return (
        f"{ins.metadata['model_name']}: target {expl.target}; top heads {top}; "
        f"{len(expl.sinks)} sink-dominated head(s) -> {args.output}"
    )


def _args_generate(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    p.add_argument("prompt", help="the prompt")
    p.add_argument(
        "--max-new-tokens", type=int, default=20, metavar="N", help="tokens to generate at most"
    )
    p.add_argument("--temperature", type=float, help="sample at this temperature (greedy)")
    _add_selection(p)
    p.add_argument("-o", "--output", required=True, help="out.html (report), .parquet or .csv")


def cmd_generate(args: argparse.Namespace) -> str:
    _output(args.output, ".html", ".htm", ".parquet", ".csv")
    sampling: dict[str, Any] = {}
    if args.temperature is not None:
        sampling.update(do_sample=True, temperature=args.temperature)
    ins = _load(args).generate(
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        layers=args.layers,
        heads=args.heads,
        **sampling,
    )
    if args.output.lower().endswith((".html", ".htm")):
        ins.report(args.output)
    else:
        from .api import save_table

        save_table(ins.frame(), args.output)
    part = ins.decoder if ins.is_encoder_decoder else ins
    n_new = int(part.generated_mask.sum())
    text = "".join(t for t, g in zip(part.tokens, part.generated_mask, strict=True) if g)
    return (
        f"{ins.metadata['model_name']}: {part.prompt_length} prompt + {n_new} generated tokens "
        f"{text!r} -> {args.output}"
    )


def _args_atlas(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    p.add_argument(
        "texts",
        help="a text file (one text per line), FILE.csv:COLUMN, FILE.parquet:COLUMN or .conllu",
    )
    p.add_argument("-o", "--output", required=True, help="atlas.parquet (distances go beside it)")
    p.add_argument("--column", help="text column of a CSV/Parquet file")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per pass")
    p.add_argument("--max-length", type=int, metavar="N", help="token limit (longer: truncated)")
    p.add_argument("--metrics", type=_names, help="e.g. entropy,to_prev (all registered)")
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


def cmd_atlas(args: argparse.Namespace) -> str:
    _output(args.output, ".parquet")
    _output(args.report, ".html", ".htm")
    from .api import atlas, default_checkpoint

    checkpoint = args.checkpoint or str(default_checkpoint(args.output))
    local = args.engine == "local"
    if local and os.path.exists(checkpoint) and not args.resume:
        raise UsageError(
            f"{checkpoint} holds an unfinished atlas: add --resume to continue it, or delete it "
            f"to start over"
        )
    try:
        result = atlas(
            _load(args) if local else args.model,
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
    _add_model(p)
    p.add_argument("treebank", help="a .conllu file")
    p.add_argument("-o", "--output", help="also write the table to .csv or .parquet")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="sentences per pass")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N sentences")
    p.add_argument("--min-count", type=int, default=1, help="print relations with >= N cases")
    p.add_argument("--subtypes", action="store_true", help="keep nmod:poss apart from nmod")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def cmd_probe(args: argparse.Namespace) -> str:
    _output(args.output, ".csv", ".parquet")
    from .api import save_table, syntax_probe

    result = syntax_probe(
        _load(args), args.treebank, batch_size=args.batch_size, limit=args.limit,
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


# ------------------------------------------------------------------------------- command table


@dataclass(frozen=True)
class Command:
    """One sub-command: its help line, its arguments and the function that runs it."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], str]


#: Every sub-command, in the order ``inspector --help`` lists them.
COMMANDS: dict[str, Command] = {
    "inspect": Command("write the attention frame to Parquet or CSV", _args_inspect, cmd_inspect),
    "report": Command(
        "write one self-contained HTML report (no network needed)", _args_report, cmd_report
    ),
    "heads": Command("per-head metrics and roles over one or more texts", _args_heads, cmd_heads),
    "compare": Command(
        "head-by-head attention differences between two texts and/or two models",
        _args_compare,
        cmd_compare,
    ),
    "explain": Command(
        "what mattered: rollout and norm-based maps, head importance, sink warnings (HTML)",
        _args_explain,
        cmd_explain,
    ),
    "generate": Command(
        "generate from a prompt and capture the attention of every step",
        _args_generate,
        cmd_generate,
    ),
    "atlas": Command(
        "per-head statistics over a corpus, streamed in batches, to Parquet",
        _args_atlas,
        cmd_atlas,
    ),
    "probe": Command(
        "syntactic head probe (Clark et al. 2019) on a CoNLL-U treebank", _args_probe, cmd_probe
    ),
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attention-inspector")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Capture, tabulate and render the attention of Hugging Face transformers.",
    )
    parser.add_argument("--version", action="version", version=f"inspector {_version()}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        command.arguments(p)
        p.set_defaults(func=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _quiet_libraries()
        message = args.func(args)
    except KeyboardInterrupt:
        print("inspector: interrupted; no partial output was written", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:  # one readable line, never a traceback (unless --debug)
        if args.debug:
            raise
        print(f"inspector: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_ERROR
    if message:
        print(message)
    return 0


def _one_line(exc: BaseException) -> str:
    from .api import InspectorError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, InspectorError | UsageError):
        return text
    if isinstance(exc, MemoryError):
        return (
            "out of memory; keep less with --layers/--heads, use --dtype float16, or a "
            "shorter input"
        )
    return f"{type(exc).__name__}: {text[:500]} (run with --debug for the traceback)"


def _quiet_libraries() -> None:
    """The CLI prints its own lines: no weight-loading progress bars or library warnings."""
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
