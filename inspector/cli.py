"""Command line: parse arguments, call the Python API, print one line. The last consumer.

``inspector --help`` must not import torch: every heavy import happens inside a command.
Errors print one readable line (``inspector: error: ...``) and exit non-zero; no output file is
left behind because every writer is atomic.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def _int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,5, got {value!r}"
        ) from None


def _add_model(
    p: argparse.ArgumentParser, help: str = "'minilm', 'smollm2', a model folder, or a hub id"
) -> None:
    """The model argument and the loading options every command shares."""
    p.add_argument("model", help=help)
    p.add_argument("--device", help="torch device, e.g. cuda")
    p.add_argument("--dtype", help="model dtype, e.g. float16")
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


def _add_model_text(p: argparse.ArgumentParser) -> None:
    _add_model(p)
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair")
    p.add_argument("--target", metavar="TEXT", help="decoder text (encoder-decoder models)")
    _add_length(p)


def _load(args: argparse.Namespace) -> Any:
    from transformers.utils import logging as hf_logging

    from .api import load

    # The CLI prints one line: no weight-loading progress bars or library warnings.
    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()

    return load(
        args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        gguf_file=args.gguf_file,
        allow_pickle=args.allow_pickle,
    )


def _inspect(args: argparse.Namespace, model: Any = None, **extra: Any) -> Any:
    m = model or _load(args)
    return m.inspect(
        args.text,
        args.pair,
        target=args.target,
        truncation=args.truncate,
        max_length=args.max_length,
        **extra,
    )


def cmd_inspect(args: argparse.Namespace) -> str:
    from ._io import check_writable

    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in (".parquet", ".csv"):
        raise _usage(f"-o {args.output}: use a .parquet or .csv file name")
    check_writable(args.output)
    ins = _inspect(args, layers=args.layers, heads=args.heads)
    frame = ins.frame(level=args.level)
    from .frames import write_frame

    write_frame(frame, args.output)
    meta = ins.metadata
    n_tokens = len(ins.tokens) if not ins.is_encoder_decoder else len(ins.encoder.tokens)
    return (
        f"{meta['model_name']}: {n_tokens} tokens, {meta['n_layers']} layers x "
        f"{meta['n_heads']} heads, {len(frame):,} rows -> {args.output}"
    )


def cmd_report(args: argparse.Namespace) -> str:
    from ._io import check_writable

    if os.path.splitext(args.output)[1].lower() not in (".html", ".htm"):
        raise _usage(f"-o {args.output}: use an .html file name")
    check_writable(args.output)
    ins = _inspect(args, layers=args.layers, heads=args.heads)
    if args.explain:
        report = ins.explain_report(args.output, precision=args.precision)
    else:
        report = ins.report(args.output, precision=args.precision)
    meta = ins.metadata
    size = os.path.getsize(args.output)
    return (
        f"{meta['model_name']}: {meta['n_layers']} layers x {meta['n_heads']} heads, "
        f"{len(report.sections)} sections, {size / 1e6:.2f} MB -> {args.output}"
    )


def _register_report(sub: Any) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report (no network needed)")
    _add_model_text(p)
    p.add_argument("--layers", type=_int_list, help="layer indexes, e.g. 0,1")
    p.add_argument("--heads", type=_int_list, help="head indexes, e.g. 0,3")
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
    p.set_defaults(func=cmd_report)


def cmd_atlas(args: argparse.Namespace) -> str:
    from ._io import check_writable

    if os.path.splitext(args.output)[1].lower() != ".parquet":
        raise _usage(f"-o {args.output}: the atlas is written as Parquet; use a .parquet name")
    if args.report and os.path.splitext(args.report)[1].lower() not in (".html", ".htm"):
        raise _usage(f"--report {args.report}: use an .html file name")
    check_writable(args.output)
    from .api import atlas
    from .atlas import default_checkpoint_path, write_atlas

    options: dict[str, Any] = {
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "metrics": args.metrics,
        "column": args.column,
        "distances": not args.no_distances,
        "progress": not args.no_progress,
        "limit": args.limit,
    }
    checkpoint = args.checkpoint or default_checkpoint_path(args.output)
    if args.engine == "local":
        if os.path.exists(checkpoint) and not args.resume:
            raise _usage(
                f"{checkpoint} holds an unfinished atlas: add --resume to continue it, or delete "
                f"it to start over"
            )
        options.update(checkpoint=checkpoint, resume=args.resume)
        model: Any = _load(args)
    else:
        model = args.model
    try:
        result = atlas(
            model, args.texts, engine=args.engine, address=args.address,
            num_workers=args.workers, **options,
        )  # fmt: skip
    except KeyboardInterrupt:
        if args.engine == "local" and os.path.exists(checkpoint):
            print(
                f"inspector: interrupted; progress saved in {checkpoint}: rerun with --resume",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_INTERRUPTED) from None
        raise
    paths = write_atlas(result, args.output)
    if args.engine == "local" and os.path.exists(checkpoint):
        os.remove(checkpoint)
    extra = ""
    if args.report:
        from .render.atlas import atlas_report

        atlas_report(result).save(args.report)
        extra = f", report -> {args.report}"
    meta = result.metadata
    rate = meta.get("texts_per_second")
    return (
        f"{meta['model_name']}: {meta['n_texts']:,} texts ({meta['n_tokens']:,} tokens, "
        f"{meta['n_skipped']} skipped, {meta['n_truncated']} truncated), "
        f"{meta['n_layers']} layers x {meta['n_heads']} heads x {len(meta['metrics'])} metrics, "
        f"{rate} texts/s -> {', '.join(str(p) for p in paths)}{extra}"
    )


def _register_atlas(sub: Any) -> None:
    p = sub.add_parser(
        "atlas", help="per-head statistics over a corpus, streamed in batches, to Parquet"
    )
    _add_model(p)
    p.add_argument(
        "texts",
        help="a text file (one text per line), FILE.csv:COLUMN, FILE.parquet:COLUMN or .conllu",
    )
    p.add_argument("-o", "--output", required=True, help="atlas.parquet (distances go beside it)")
    p.add_argument("--column", help="text column of a CSV/Parquet file")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--max-length", type=int, metavar="N", help="token limit (longer: truncated)")
    p.add_argument(
        "--metrics", type=lambda v: [m for m in v.split(",") if m], help="e.g. entropy,to_prev"
    )
    p.add_argument("--limit", type=int, metavar="N", help="only the first N texts")
    p.add_argument("--no-distances", action="store_true", help="skip the head-distance matrix")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--resume", action="store_true", help="continue an interrupted run from its checkpoint"
    )
    p.add_argument("--checkpoint", metavar="PATH", help="default: OUTPUT.ckpt.npz")
    p.add_argument("--engine", choices=["local", "ray"], default="local")
    p.add_argument("--address", help="Ray cluster address (ray://host:10001 or auto)")
    p.add_argument("--workers", type=int, default=2, help="Ray model replicas (default 2)")
    p.add_argument("--report", metavar="HTML", help="also write an atlas report")
    p.set_defaults(func=cmd_atlas)


def cmd_probe(args: argparse.Namespace) -> str:
    from ._io import check_writable

    if args.output and os.path.splitext(args.output)[1].lower() not in (".csv", ".parquet"):
        raise _usage(f"-o {args.output}: use a .csv or .parquet file name")
    if args.output:
        check_writable(args.output)
    from .api import syntax_probe

    result = syntax_probe(
        _load(args), args.treebank, batch_size=args.batch_size, limit=args.limit,
        subtypes=args.subtypes, progress=not args.no_progress,
    )  # fmt: skip
    if args.output:
        from .frames import write_frame

        write_frame(result.table, args.output)
    meta = result.metadata
    return (
        f"{result.markdown(min_count=args.min_count)}\n\n{meta['model_name']}: "
        f"{meta['n_scored_sentences']} sentences scored ({meta['skipped_too_long']} too long, "
        f"{meta['skipped_unaligned']} unaligned)" + (f" -> {args.output}" if args.output else "")
    )


def _register_probe(sub: Any) -> None:
    p = sub.add_parser(
        "probe", help="syntactic head probe (Clark et al. 2019) on a CoNLL-U treebank"
    )
    _add_model(p)
    p.add_argument("treebank", help="a .conllu file")
    p.add_argument("-o", "--output", help="also write the table to .csv or .parquet")
    p.add_argument("--batch-size", type=int, default=32, metavar="N")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N sentences")
    p.add_argument("--min-count", type=int, default=1, help="print relations with >= N cases")
    p.add_argument("--subtypes", action="store_true", help="keep nmod:poss apart from nmod")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_probe)


class _UsageError(Exception):
    pass


def _usage(message: str) -> _UsageError:
    return _UsageError(message)


Command = Callable[[argparse.Namespace], str]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Capture, tabulate and render the attention of Hugging Face transformers.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    p = sub.add_parser("inspect", help="write the attention frame to Parquet or CSV")
    _add_model_text(p)
    p.add_argument("--layers", type=_int_list, help="layer indexes, e.g. 0,1")
    p.add_argument("--heads", type=_int_list, help="head indexes, e.g. 0,3")
    p.add_argument("--level", choices=["token", "word"], default="token")
    p.add_argument("-o", "--output", required=True, help="out.parquet or out.csv")
    p.set_defaults(func=cmd_inspect)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return parser


#: Functions adding further sub-commands (report, heads, compare, explain, atlas, ...).
_EXTRA_COMMANDS: list[Callable[[Any], None]] = [_register_report, _register_atlas, _register_probe]


# --------------------------------------------------------------------------- heads, compare


def _read_texts(args: argparse.Namespace) -> list[str]:
    texts = list(args.texts or [])
    if args.file:
        if not os.path.isfile(args.file):
            raise _usage(f"--file {args.file} does not exist; give a text file, one text a line")
        with open(args.file, encoding="utf-8") as fh:
            texts += [line.strip() for line in fh if line.strip()]
    if not texts:
        raise _usage("give at least one TEXT or --file texts.txt (one text per line)")
    return texts


def _write_table(frame: Any, path: str) -> None:
    from .frames import write_frame

    write_frame(frame.reset_index(), path)


def cmd_heads(args: argparse.Namespace) -> str:
    from ._io import check_writable

    if args.output:
        if os.path.splitext(args.output)[1].lower() not in (".csv", ".parquet"):
            raise _usage(f"-o {args.output}: use a .csv or .parquet file name")
        check_writable(args.output)
    texts = _read_texts(args)
    from . import metrics
    from .api import head_metrics

    model = _load(args)
    frame = head_metrics(model, texts, truncation=args.truncate, max_length=args.max_length)
    roles = metrics.head_roles(frame)
    frame = frame.join(roles[["role", "label"]])
    if args.output:
        _write_table(frame, args.output)
    lines = [f"{model.name}: {len(texts)} text(s); top {args.top} heads per role"]
    for role, rows in metrics.top_heads(frame, k=args.top).groupby("role", sort=False):
        best = ", ".join(f"{r.layer}.{r.head}: {r.score:.2f}" for r in rows.itertuples())
        count = int((roles["role"] == role).sum())
        lines.append(f"  {role:<12} {count:>3} head(s) with this role; top: {best}")
    sinks = frame.loc[roles["role"] == "sink", "sink_token"].value_counts()
    if len(sinks):
        lines.append(f"  sink tokens: {', '.join(f'{t} ({n})' for t, n in sinks.items())}")
    if args.output:
        lines.append(f"-> {args.output}")
    return "\n".join(lines)


def _register_heads(sub: Any) -> None:
    p = sub.add_parser("heads", help="per-head metrics and roles over one or more texts")
    _add_model(p)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="input texts")
    p.add_argument("--file", metavar="PATH", help="a text file with one input per line")
    p.add_argument("--top", type=int, default=3, metavar="K", help="heads to list per role")
    _add_length(p)
    p.add_argument("-o", "--output", help="heads.csv or heads.parquet (one row per head)")
    p.set_defaults(func=cmd_heads)


def cmd_compare(args: argparse.Namespace) -> str:
    from typing import cast

    from ._io import check_writable

    if args.model_b is None and args.text_b is None:
        raise _usage("give --text-b TEXT (a second input) and/or --model-b MODEL (a second model)")
    suffix = os.path.splitext(args.output)[1].lower() if args.output else ""
    if args.output:
        if suffix not in (".html", ".htm", ".csv", ".parquet"):
            raise _usage(f"-o {args.output}: use an .html, .csv or .parquet file name")
        check_writable(args.output)
    from .api import compare

    model_a = _load(args)
    model_b = model_a
    if args.model_b is not None:
        ns = argparse.Namespace(**{**vars(args), "model": args.model_b})
        model_b = _load(ns)
    kw = {"truncation": args.truncate, "max_length": args.max_length}
    ins_a = model_a.inspect(args.text, **kw)
    ins_b = model_b.inspect(args.text if args.text_b is None else args.text_b, **kw)
    if ins_a.is_encoder_decoder:
        ins_a, ins_b = ins_a.encoder, ins_b.encoder
    result = compare(ins_a, ins_b)
    if suffix in (".csv", ".parquet"):
        _write_table(result.frame, args.output)
    elif args.output:
        from .render.heads import comparison_report

        comparison_report(ins_a.capture, result, k=args.top).save(args.output)
    lines = [
        f"{result.labels[0]!r} vs {result.labels[1]!r}: {len(result.key_pairs)} aligned tokens "
        f"({result.method}); heads that changed most (js, d_entropy, d_sink_share):"
    ]
    for key, row in result.ranked(args.top).iterrows():
        layer, head = cast(tuple[int, int], key)
        lines.append(
            f"  {layer}.{head}  js {row['js']:.4f}  d_entropy {row['d_entropy']:+.3f}  "
            f"d_sink_share {row['d_sink_share']:+.3f}"
        )
    if args.output:
        lines.append(f"-> {args.output}")
    return "\n".join(lines)


def _register_compare(sub: Any) -> None:
    p = sub.add_parser(
        "compare",
        help="head-by-head attention differences between two texts and/or two models",
        description="Compare MODEL on TEXT with --text-b (same model) and/or --model-b (same "
        "tokenizer and head layout). Example: inspector compare minilm 'The keys to the cabinet "
        "are' --text-b 'The key to the cabinet is' -o reports/diff.html",
    )
    _add_model(p, help="model A: 'minilm', a model folder, or a hub id")
    p.add_argument("text", help="text A (also used for model B unless --text-b is given)")
    p.add_argument("--text-b", metavar="TEXT", help="text B (default: text A)")
    p.add_argument("--model-b", metavar="MODEL", help="model B (default: model A)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="heads to list and draw")
    _add_length(p)
    p.add_argument("-o", "--output", help="diff.html (report), diff.csv or diff.parquet")
    p.set_defaults(func=cmd_compare)


_EXTRA_COMMANDS.extend([_register_heads, _register_compare])


def cmd_explain(args: argparse.Namespace) -> str:
    from ._io import check_writable

    if os.path.splitext(args.output)[1].lower() not in (".html", ".htm"):
        raise _usage(f"-o {args.output}: use an .html file name")
    check_writable(args.output)
    model = _load(args)
    ins = model.inspect(args.text, args.pair, truncation=args.truncate, max_length=args.max_length)
    report = ins.explain_report(
        args.output, target=args.target, method=args.method, layer=args.layer, top=args.top
    )
    section = next(s for s in report.sections if s.id == "what-mattered")
    top = ", ".join(f"L{r['layer']}H{r['head']}" for r in section.context["top"])
    n_sinks = len(section.context["sinks"])
    return (
        f"{ins.metadata['model_name']}: target {section.context['target']}; top heads {top}; "
        f"{n_sinks} sink-dominated head(s) -> {args.output}"
    )


def _register_explain(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="what mattered: rollout and norm-based maps, head importance, sink warnings (HTML)",
    )
    _add_model(p)
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair")
    p.add_argument(
        "--target",
        default="auto",
        help="what head importance measures: auto (default), predicted, token:TOKEN, "
        "label:LABEL, loss:LABEL, embedding, embedding:cosine, embedding:norm",
    )
    p.add_argument("--method", choices=["ablation", "gradient"], default="ablation")
    p.add_argument("--layer", type=int, help="layer of the raw / norm-based maps (default: middle)")
    p.add_argument("--top", type=int, default=4, help="how many top heads to show")
    _add_length(p)
    p.add_argument("-o", "--output", required=True, help="out.html")
    p.set_defaults(func=cmd_explain)


_EXTRA_COMMANDS.append(_register_explain)


def cmd_generate(args: argparse.Namespace) -> str:
    from ._io import check_writable

    suffix = os.path.splitext(args.output)[1].lower()
    if suffix not in (".html", ".htm", ".parquet", ".csv"):
        raise _usage(f"-o {args.output}: use an .html, .parquet or .csv file name")
    check_writable(args.output)
    kw: dict[str, Any] = {}
    if args.temperature is not None:
        kw.update(do_sample=True, temperature=args.temperature)
    ins = _load(args).generate(
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        layers=args.layers,
        heads=args.heads,
        **kw,
    )
    if suffix in (".html", ".htm"):
        ins.report(args.output)
    else:
        from .frames import write_frame

        write_frame(ins.frame(), args.output)
    part = ins.decoder if ins.is_encoder_decoder else ins
    n_new = int(part.generated_mask.sum())
    text = "".join(t for t, g in zip(part.tokens, part.generated_mask, strict=True) if g)
    return (
        f"{ins.metadata['model_name']}: {part.prompt_length} prompt + {n_new} generated tokens "
        f"{text!r} -> {args.output}"
    )


def _register_generate(sub: Any) -> None:
    p = sub.add_parser(
        "generate", help="generate from a prompt and capture the attention of every step"
    )
    _add_model(p)
    p.add_argument("prompt", help="the prompt")
    p.add_argument("--max-new-tokens", type=int, default=20, metavar="N")
    p.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy)")
    p.add_argument("--layers", type=_int_list, help="layer indexes, e.g. 0,15,29")
    p.add_argument("--heads", type=_int_list, help="head indexes, e.g. 0,3")
    p.add_argument("-o", "--output", required=True, help="out.html (report), .parquet or .csv")
    p.set_defaults(func=cmd_generate)


_EXTRA_COMMANDS.append(_register_generate)


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
    from .errors import InspectorError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, InspectorError | _UsageError):
        return text
    if isinstance(exc, MemoryError):
        return (
            "out of memory; keep less with --layers/--heads, use --dtype float16, or a "
            "shorter input"
        )
    return f"{type(exc).__name__}: {text[:500]} (run with --debug for the traceback)"


def _quiet_libraries() -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
