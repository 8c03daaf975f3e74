"""Commands on one input: inspect, report, heads, compare, explain, generate."""

from __future__ import annotations

import argparse
import os
from typing import Any, cast

from .common import (
    MODEL_HELP,
    Command,
    UsageError,
    add_length,
    add_memory,
    add_model,
    add_selection,
    add_text,
    check_output,
    inspect_text,
    label,
    load_model,
    read_texts,
    shape,
)


def _args_inspect(p: argparse.ArgumentParser) -> None:
    add_model(p)
    add_text(p)
    add_selection(p)
    p.add_argument(
        "--level", choices=["token", "word"], default="token", help="rows per token or per word"
    )
    add_memory(p)
    p.add_argument("-o", "--output", required=True, help="out.parquet or out.csv")


def cmd_inspect(args: argparse.Namespace) -> str:
    check_output(args.output, ".parquet", ".csv")
    ins = inspect_text(args, layers=args.layers, heads=args.heads, max_memory=args.max_memory)
    if args.output.lower().endswith(".parquet"):  # streamed a layer at a time, any length
        ins.to_parquet(args.output, level=args.level)
    else:
        ins.to_csv(args.output, level=args.level)
    part = ins.encoder if ins.is_encoder_decoder else ins
    weights = sum(s.weights.size for s in ins.capture.stacks.values())
    rows = f"{weights:,} rows" if args.level == "token" else "one row per word pair"
    return (
        f"{ins.metadata['model_name']}: {len(part.tokens)} tokens, {shape(part)}, {rows} -> "
        f"{args.output}"
    )


def _args_report(p: argparse.ArgumentParser) -> None:
    add_model(p)
    add_text(p)
    add_selection(p)
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
    add_memory(p)
    p.add_argument("-o", "--output", required=True, help="out.html")


def cmd_report(args: argparse.Namespace) -> str:
    check_output(args.output, ".html", ".htm")
    ins = inspect_text(args, layers=args.layers, heads=args.heads, max_memory=args.max_memory)
    if args.explain:
        report = ins.explain_report(args.output, precision=args.precision)
    else:
        report = ins.report(args.output, precision=args.precision)
    part = ins.encoder if ins.is_encoder_decoder else ins
    size = os.path.getsize(args.output)
    return (
        f"{ins.metadata['model_name']}: {shape(part)}, {len(report.sections)} sections, "
        f"{size / 1e6:.2f} MB -> {args.output}"
    )


def _args_heads(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="input texts")
    p.add_argument("--file", metavar="PATH", help="a text file with one input per line")
    p.add_argument("--top", type=int, default=3, metavar="K", help="heads to list per role")
    add_length(p)
    p.add_argument("-o", "--output", help="heads.csv or heads.parquet (one row per head)")


def cmd_heads(args: argparse.Namespace) -> str:
    check_output(args.output, ".csv", ".parquet")
    texts = read_texts(args)
    from ..api import head_metrics, head_roles, save_table, top_heads

    model = load_model(args)
    frame = head_metrics(model, texts, truncation=args.truncate, max_length=args.max_length)
    roles = head_roles(frame)
    frame = frame.join(roles[["role", "label"]])
    if args.output:
        save_table(frame, args.output)
    lines = [f"{model.name}: {len(texts)} text(s); top {args.top} heads per role"]
    for role, rows in top_heads(frame, k=args.top).groupby("role", sort=False):
        best = ", ".join(f"{label(r.layer, r.head)}: {r.score:.2f}" for r in rows.itertuples())
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
    add_model(p, help="model A: " + MODEL_HELP)
    p.add_argument("text", help="text A (also used for model B unless --text-b is given)")
    p.add_argument("--text-b", metavar="TEXT", help="text B (default: text A)")
    p.add_argument("--model-b", metavar="MODEL", help="model B (default: model A)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="heads to list and draw")
    add_length(p)
    p.add_argument("-o", "--output", help="diff.html (report), diff.csv or diff.parquet")


def cmd_compare(args: argparse.Namespace) -> str:
    if args.model_b is None and args.text_b is None:
        raise UsageError("give --text-b TEXT (a second input) and/or --model-b MODEL")
    check_output(args.output, ".html", ".htm", ".csv", ".parquet")
    from ..api import compare, save_table

    model_a = load_model(args)
    model_b = model_a if args.model_b is None else load_model(args, args.model_b)
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
            f"  {label(layer, head)}  js {row['js']:.4f}  d_entropy {row['d_entropy']:+.3f}  "
            f"d_sink_share {row['d_sink_share']:+.3f}"
        )
    if args.output:
        lines.append(f"-> {args.output}")
    return "\n".join(lines)


def _args_explain(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair")
    add_length(p)
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
    check_output(args.output, ".html", ".htm")
    ins = load_model(args).inspect(
        args.text, args.pair, truncation=args.truncate, max_length=args.max_length
    )
    expl = ins.explain(args.target, args.method, layer=args.layer, top=args.top)
    ins.explain_report(args.output, explanation=expl)
    top = ", ".join(label(layer, head) for layer, head in expl.top_heads)
    return (
        f"{ins.metadata['model_name']}: target {expl.target}; top heads {top}; "
        f"{len(expl.sinks)} sink-dominated head(s) -> {args.output}"
    )


def _args_generate(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("prompt", help="the prompt")
    p.add_argument(
        "--max-new-tokens", type=int, default=20, metavar="N", help="tokens to generate at most"
    )
    p.add_argument("--temperature", type=float, help="sample at this temperature (greedy)")
    add_selection(p)
    add_memory(p)
    p.add_argument("-o", "--output", required=True, help="out.html (report), .parquet or .csv")


def cmd_generate(args: argparse.Namespace) -> str:
    check_output(args.output, ".html", ".htm", ".parquet", ".csv")
    sampling: dict[str, Any] = {}
    if args.temperature is not None:
        sampling.update(do_sample=True, temperature=args.temperature)
    ins = load_model(args).generate(
        args.prompt,
        max_new_tokens=args.max_new_tokens,
        layers=args.layers,
        heads=args.heads,
        max_memory=args.max_memory,
        **sampling,
    )
    if args.output.lower().endswith((".html", ".htm")):
        ins.report(args.output)
    elif args.output.lower().endswith(".parquet"):
        ins.to_parquet(args.output)
    else:
        ins.to_csv(args.output)
    part = ins.decoder if ins.is_encoder_decoder else ins
    n_new = int(part.generated_mask.sum())
    text = "".join(t for t, g in zip(part.tokens, part.generated_mask, strict=True) if g)
    return (
        f"{ins.metadata['model_name']}: {part.prompt_length} prompt + {n_new} generated tokens "
        f"{text!r} -> {args.output}"
    )


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
}
