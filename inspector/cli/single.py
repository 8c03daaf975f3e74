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
    add_output,
    add_selection,
    add_text,
    check_output_of,
    count,
    encoder_part,
    flag,
    inspect_text,
    label,
    length_options,
    load_model,
    progress,
    read_texts,
    scored_heads,
    selection,
    shape,
)


def _args_inspect(p: argparse.ArgumentParser) -> None:
    add_model(p)
    add_text(p)
    add_selection(p)
    p.add_argument(
        "--level", choices=["token", "word"], default="token", help="rows per token or per word"
    )
    flag(
        p,
        "--readable",
        help="write tokens as the tokenizer decodes them (␣capital, ⏎) instead of raw (Ġcapital)",
    )
    add_memory(p)
    add_output(p, "the attention frame to write: out.parquet or out.csv")


def cmd_inspect(args: argparse.Namespace) -> str:
    check_output_of(args, ".parquet", ".csv")
    ins = inspect_text(args)
    write = ins.to_parquet if args.output.lower().endswith(".parquet") else ins.to_csv
    write(args.output, level=args.level, readable=args.readable, max_memory=args.max_memory)
    part = encoder_part(ins)
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
    flag(
        p,
        "--explain",
        help="add the 'what mattered' section (rollout, norm-based maps, head importance)",
    )
    flag(
        p,
        "--full",
        help=(
            "the full report at any length (past 2^25 attention weights the report is the "
            "scan page unless --full; the full one needs about 8.5 bytes a weight more memory "
            "while it builds, and draws slowly)"
        ),
    )
    add_memory(p)
    add_output(p, "the report to write: out.html")


def cmd_report(args: argparse.Namespace) -> str:
    check_output_of(args, ".html", ".htm")
    ins = inspect_text(args)
    if args.explain:
        report = ins.explain.report(
            args.output, precision=args.precision, progress=progress(args),
            max_memory=args.max_memory,
        )  # fmt: skip
    else:
        report = ins.report(
            args.output,
            precision=args.precision,
            max_memory=args.max_memory,
            scan=False if args.full else None,
        )
    part = encoder_part(ins)
    size = os.path.getsize(args.output)
    return (
        f"{ins.metadata['model_name']}: {shape(part)}, {len(report.sections)} sections, "
        f"{size / 1e6:.2f} MB -> {args.output}"
    )


def _args_heads(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("texts", nargs="*", metavar="TEXT", help="input texts")
    p.add_argument(
        "--file", metavar="PATH", help="a text file with one input per line (default: none)"
    )
    p.add_argument(
        "--top", type=int, default=3, metavar="K", help="heads to list per role that occurs"
    )
    add_length(p)
    add_memory(p)
    add_output(p, "a table to write: heads.csv or heads.parquet (a row per head)", required=False)


def cmd_heads(args: argparse.Namespace) -> str:
    check_output_of(args, ".csv", ".parquet", inputs=[args.file])
    texts = read_texts(args)
    from ..api import ROLES, head_metrics, head_roles, save_table

    model = load_model(args)
    frame = head_metrics(
        model, texts, progress=progress(args), max_memory=args.max_memory, **length_options(args)
    )
    roles = head_roles(frame)
    frame = frame.join(roles[["role", "label"]])
    if args.output:
        save_table(frame, args.output)
    lines = [
        f"{model.name}: {count(len(texts), 'text')}, {len(frame)} heads; top {args.top} heads "
        f"of each role that occurs (score)"
    ]
    absent = []
    for role in ROLES:
        holders = roles[roles["role"] == role].sort_values("score", ascending=False)
        if holders.empty:
            absent.append(role)
            continue
        if role == "other":
            lines.append(f"  {role:<12} {count(len(holders), 'head'):>9} without a role")
            continue
        best = scored_heads(holders["score"].head(args.top))
        lines.append(f"  {role:<12} {count(len(holders), 'head'):>9}: {best}")
    if absent:
        lines.append(f"  no head is: {', '.join(absent)}")
    sinks = frame.loc[roles["role"] == "sink", "sink_token"].value_counts()
    if len(sinks):
        shown = model.readable_tokens(list(sinks.index))
        lines.append(
            "  sink tokens: "
            + ", ".join(f"{t} ({n})" for t, n in zip(shown, sinks.to_numpy(), strict=True))
        )
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
    p.add_argument("--model-b", metavar="MODEL", help="model B, any MODEL form (default: model A)")
    p.add_argument("--top", type=int, default=5, metavar="K", help="heads to list and draw")
    add_length(p)
    add_memory(p)
    add_output(p, "diff.html (a report), diff.csv or diff.parquet (the table)", required=False)


def cmd_compare(args: argparse.Namespace) -> str:
    if args.model_b is None and args.text_b is None:
        raise UsageError("give --text-b TEXT (a second input) and/or --model-b MODEL")
    check_output_of(args, ".html", ".htm", ".csv", ".parquet")
    from ..api import compare, save_table

    model_a = load_model(args)
    model_b = model_a if args.model_b is None else load_model(args, args.model_b)
    kw = length_options(args)
    ins_a = model_a.inspect(args.text, max_memory=args.max_memory, **kw)
    ins_b = model_b.inspect(
        args.text if args.text_b is None else args.text_b, max_memory=args.max_memory, **kw
    )
    if ins_a.is_encoder_decoder:
        ins_a, ins_b = ins_a.encoder, ins_b.encoder
    result = compare(ins_a, ins_b, max_memory=args.max_memory)
    if args.output and args.output.lower().endswith((".csv", ".parquet")):
        save_table(result.frame, args.output)
    elif args.output:
        result.report(args.output, k=args.top, max_memory=args.max_memory)
    lines = [
        f"{result.labels[0]!r} vs {result.labels[1]!r}: {len(result.key_pairs)} aligned tokens "
        f"({result.method}, {result.aligned_share:.0%} of the longer input, "
        f"{result.matched_share:.0%} the same token); heads that changed most "
        f"(js, d_entropy, d_sink_share):"
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
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair (default: none)")
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
    p.add_argument(
        "--layer",
        type=int,
        metavar="L",
        help="layer of the raw / norm-based maps (default: the middle layer)",
    )
    p.add_argument("--top", type=int, default=4, metavar="K", help="how many top heads to show")
    add_memory(p)
    add_output(p, "the report to write: out.html")


def cmd_explain(args: argparse.Namespace) -> str:
    check_output_of(args, ".html", ".htm")
    ins = load_model(args).inspect(
        args.text, args.pair, max_memory=args.max_memory, **length_options(args)
    )
    expl = ins.explain(
        target=args.target,
        method=args.method,
        layer=args.layer,
        top=args.top,
        progress=progress(args),
        max_memory=args.max_memory,
    )
    ins.explain.report(args.output, explanation=expl, max_memory=args.max_memory)
    top = ", ".join(label(layer, head) for layer, head in expl.top_heads)
    return (
        f"{ins.metadata['model_name']}: target {expl.target}; top heads {top}; "
        f"{len(expl.sinks)} sink-dominated head(s) -> {args.output}"
    )


def _args_generate(p: argparse.ArgumentParser) -> None:
    add_model(p)
    p.add_argument("prompt", help="the prompt")
    flag(
        p,
        "--no-chat",
        help=(
            "send the raw prompt; by default a decoder whose tokenizer has a chat template "
            "gets the prompt as one user message in that template (instruct models need it)"
        ),
    )
    p.add_argument(
        "--max-new-tokens", type=int, default=20, metavar="N", help="tokens to generate at most"
    )
    p.add_argument(
        "--temperature",
        type=float,
        metavar="T",
        help="sample at this temperature, e.g. 0.7 (default and 0: greedy decoding)",
    )
    add_selection(p)
    add_memory(p)
    add_output(p, "out.html (a report), out.parquet or out.csv (the frame)")


def cmd_generate(args: argparse.Namespace) -> str:
    check_output_of(args, ".html", ".htm", ".parquet", ".csv")
    sampling: dict[str, Any] = {}
    if args.temperature is not None:
        sampling.update(do_sample=True, temperature=args.temperature)
    ins = load_model(args).generate(
        args.prompt,
        chat=False if args.no_chat else None,
        max_new_tokens=args.max_new_tokens,
        max_memory=args.max_memory,
        **selection(args),
        **sampling,
    )
    if args.output.lower().endswith((".html", ".htm")):
        ins.report(args.output, max_memory=args.max_memory)
    elif args.output.lower().endswith(".parquet"):
        ins.to_parquet(args.output, max_memory=args.max_memory)
    else:
        ins.to_csv(args.output, max_memory=args.max_memory)
    part = ins.decoder if ins.is_encoder_decoder else ins
    meta = ins.metadata
    n_new = int(part.generation.generated_mask.sum())
    answer = " ".join(str(meta.get("generated_text", "")).split())
    if not answer:  # only special tokens: show them, readable
        answer = "".join(
            t
            for t, g in zip(part.readable_tokens, part.generation.generated_mask, strict=True)
            if g
        )
    stop = {"eos": "the end of sequence", "length": f"the {args.max_new_tokens}-token limit"}
    how = " (chat template)" if meta.get("chat") else ""
    return (
        f"{meta['model_name']}: {count(part.generation.prompt_length, 'prompt token')}{how} + "
        f"{count(n_new, 'generated token')}, stopped at "
        f"{stop.get(str(meta.get('stopped')), meta.get('stopped'))}: "
        f"{answer!r} -> {args.output}"
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
