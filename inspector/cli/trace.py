"""The ``trace`` command: why a model predicts a token (direct logit attribution and the route
graph of the prediction, one HTML page)."""

from __future__ import annotations

import argparse

from .common import (
    Command,
    add_length,
    add_memory,
    add_model,
    add_output,
    check_output,
    label,
    length_options,
    load_model,
)


def _threshold(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not 0.0 <= number < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return number


def _args_trace(p: argparse.ArgumentParser) -> None:
    p.description = (
        "Why MODEL predicts the next token after TEXT: which heads and MLPs wrote its logit "
        "(direct logit attribution, exact), which tokens those heads read, and the route of "
        "the prediction through the layers (Ferrando & Voita 2024). Example: inspector trace "
        "smollm2 'The capital of France is' --token ' Paris' -o reports/trace.html"
    )
    add_model(p)
    p.add_argument("text", help="the input text")
    add_length(p)
    p.add_argument(
        "--token",
        metavar="T",
        help="the token to explain, one token such as ' Paris' or an id (default: the predicted "
        "one)",
    )
    p.add_argument(
        "--against", metavar="T", help="explain the logit difference to this token (default: none)"
    )
    p.add_argument(
        "--threshold",
        type=_threshold,
        default=0.04,
        help="contributions below it are cut from the route graph",
    )
    p.add_argument(
        "--position",
        type=int,
        default=None,
        help="the position whose next-token prediction is traced (negative: from the end; "
        "default: the last); on an encoder, the position whose final representation is traced "
        "(default: the mean-pooled embedding)",
    )
    add_memory(p)
    add_output(p, "the page to write: trace.html")


def _token(value: str | None) -> str | int | None:
    return int(value) if value is not None and value.isdigit() else value


def cmd_trace(args: argparse.Namespace) -> str:
    check_output(args.output, ".html", ".htm", args=args)
    ins = load_model(args).inspect(
        args.text, layers=[0], heads=[0], max_memory=args.max_memory, **length_options(args)
    )
    routes = ins.explain.information_flow(
        token=_token(args.token),
        against=_token(args.against),
        threshold=args.threshold,
        position=args.position,
        max_memory=args.max_memory,
    )
    routes.report(args.output)
    lines = [routes.answer()]
    if routes.attribution is not None:  # an encoder's representation has no logit
        frame = routes.attribution.frame
        heads = frame[frame["kind"] == "head"].sort_values("attribution", ascending=False)
        lines.append("heads that write it (logit attribution):")
        for key, value in heads["attribution"].iloc[:5].items():
            lines.append(f"  {label(*key)}  {value:+.3f}")
    lines.append(
        f"route: {len(routes.nodes)} nodes, {len(routes.edges)} edges above {args.threshold} "
        f"-> {args.output}"
    )
    return "\n".join(lines)


COMMANDS: dict[str, Command] = {
    "trace": Command(
        "why the model predicts a token: heads, source tokens and the route (HTML)",
        _args_trace,
        cmd_trace,
    ),
}
