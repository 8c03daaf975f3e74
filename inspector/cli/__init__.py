"""Command line: parse arguments, call the Python API, print a short summary. The last consumer.

Every command is one entry of a command table (its arguments and the function that runs it):
:mod:`.single` (one input), :mod:`.corpus` (many), :mod:`.long` (long inputs);
:data:`COMMANDS` joins them in the order
``inspector --help`` lists them. Commands import nothing but :mod:`inspector.api`, lazily, so
``inspector --help`` does not import torch. Errors print one readable line
(``inspector: error: ...``) and exit non-zero; no output file is left behind because every
writer is atomic.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from . import corpus, long, single
from .common import EXIT_ERROR, EXIT_INTERRUPTED, Command, UsageError

#: Every sub-command, in the order ``inspector --help`` lists them.
COMMANDS: dict[str, Command] = {**single.COMMANDS, **corpus.COMMANDS, **long.COMMANDS}


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
    from ..api import InspectorError

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


__all__ = [
    "COMMANDS",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "Command",
    "UsageError",
    "build_parser",
    "main",
]
