"""What every command shares: the model and input options, loading, output checks, labels.

Imports nothing but :mod:`inspector.api` (lazily, inside functions).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130

MODEL_HELP = (
    "'minilm' or 'smollm2' (embedded), a model folder, a .gguf file, or a Hugging Face hub id"
)


class UsageError(Exception):
    """A command-line argument is unusable; the message says how to fix it."""


def int_list(value: str) -> list[int]:
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers such as 0,1,5, got {value!r}"
        ) from None


def names(value: str) -> list[str]:
    return [v for v in value.replace(" ", "").split(",") if v]


# ------------------------------------------------------------------------------ shared options


def add_model(p: argparse.ArgumentParser, help: str = MODEL_HELP) -> None:
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


def add_length(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--truncate",
        action="store_true",
        help="cut inputs longer than the model's limit instead of failing",
    )
    p.add_argument("--max-length", type=int, metavar="N", help="a lower token limit")


def add_text(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", help="the input text")
    p.add_argument("--pair", metavar="TEXT", help="second text of a sentence pair")
    p.add_argument("--target", metavar="TEXT", help="decoder text (encoder-decoder models)")
    add_length(p)


def add_selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("--layers", type=int_list, help="layer indexes to keep, e.g. 0,1 (all)")
    p.add_argument("--heads", type=int_list, help="head indexes to keep, e.g. 0,3 (all)")


def add_memory(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory budget, e.g. 4GB (default: what is available); refused before running "
        "when the estimate does not fit",
    )


def load_model(args: argparse.Namespace, model: str | None = None) -> Any:
    from ..api import load

    return load(
        model or args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        gguf_file=args.gguf_file,
        allow_pickle=args.allow_pickle,
    )


def inspect_text(args: argparse.Namespace, **extra: Any) -> Any:
    return load_model(args).inspect(
        args.text,
        args.pair,
        target=args.target,
        truncation=args.truncate,
        max_length=args.max_length,
        **extra,
    )


def check_output(path: str | None, *suffixes: str) -> None:
    """Check an output path before any model work (a usage error names the suffixes)."""
    if path is None:
        return
    from ..api import check_output as api_check_output

    api_check_output(path, suffixes)


def read_texts(args: argparse.Namespace) -> list[str]:
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


def label(*head: Any) -> str:
    """A head's display label, ``layer.head`` (e.g. ``5.3``): the one notation of every output."""
    return ".".join(str(int(x)) for x in head)


def count(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def shape(part: Any) -> str:
    """``6 layers x 12 heads``: what an inspection kept."""
    return f"{count(len(part.layers), 'layer')} x {count(len(part.heads), 'head')}"


@dataclass(frozen=True)
class Command:
    """One sub-command: its help line, its arguments and the function that runs it."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], str]
