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
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from . import corpus, faithfulness, long, single
from .common import EXIT_ERROR, EXIT_INTERRUPTED, Command, Terminated, UsageError, interrupted

#: Every sub-command, in the order ``inspector --help`` lists them.
COMMANDS: dict[str, Command] = {
    **single.COMMANDS,
    **corpus.COMMANDS,
    **faithfulness.COMMANDS,
    **long.COMMANDS,
}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("attention-inspector")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "unknown"


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default: ``(default: 20)``, ``(default: off)`` for a
    flag; options without a value (``None``) state theirs in words in their help text."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        if (
            not action.option_strings
            or action.required
            or action.default is argparse.SUPPRESS
            or "default" in text
        ):
            return text
        if isinstance(action, argparse._StoreTrueAction):
            return f"{text} (default: off)"
        if action.default is None:
            return text
        return f"{text} (default: %(default)s)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="Capture, tabulate and render the attention of Hugging Face transformers.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"inspector {_version()}",
        help="print the version and exit",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, command in COMMANDS.items():
        p = sub.add_parser(
            name,
            help=command.help,
            description=command.help,
            formatter_class=HelpFormatter,
        )
        command.arguments(p)
        p.set_defaults(func=command.run)
    return parser


#: Signals that stop a command the way Ctrl-C does: files stay whole, checkpoints are saved.
STOP_SIGNALS = ("SIGTERM", "SIGHUP")


def _raise_terminated(signum: int, _frame: object) -> None:
    raise Terminated(signum)


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`Terminated` (a ``KeyboardInterrupt``) while inside."""
    previous: dict[int, object] = {}
    try:
        for name in STOP_SIGNALS:
            signum = getattr(signal, name, None)
            if signum is not None:
                previous[signum] = signal.signal(signum, _raise_terminated)
    except ValueError:  # not the main thread: leave signals to whoever owns them
        pass
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with _stop_signals_interrupt(), _our_warnings_as_lines():
            _quiet_libraries()
            message = args.func(args)
    except KeyboardInterrupt as exc:
        code, what = interrupted(exc)
        note = getattr(exc, "inspector_note", None) or "no partial output was written"
        _say(f"inspector: {what}; {note}")
        return code
    except Exception as exc:  # one readable line, never a traceback (unless --debug)
        if args.debug:
            raise
        _say(f"inspector: error: {_one_line(exc, args)}")
        return EXIT_ERROR
    if message:
        print(_printable(message, sys.stdout))
    return 0


@contextlib.contextmanager
def _our_warnings_as_lines() -> Iterator[None]:
    """inspector's own warnings print as one ``inspector: warning: ...`` line each."""
    from ..api import InspectorWarning

    original = warnings.showwarning

    def show(message: Any, category: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(category, type) and issubclass(category, InspectorWarning):
            _say(f"inspector: warning: {' '.join(str(message).split())}")
        else:
            original(message, category, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("always", InspectorWarning)
        warnings.showwarning = show
        yield


def _printable(text: str, stream: object) -> str:
    """``text`` as ``stream`` can encode it (lone surrogates from argv become escapes)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    return text.encode(encoding, "backslashreplace").decode(encoding)


def _say(line: str) -> None:
    print(_printable(line, sys.stderr), file=sys.stderr)


def _one_line(exc: BaseException, args: argparse.Namespace | None = None) -> str:
    from ..api import InspectorError

    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, InspectorError | UsageError):
        return text
    if isinstance(exc, MemoryError):
        return (
            "out of memory; keep less with --layers/--heads, use --dtype float16, or a "
            "shorter input"
        )
    # Not one of ours: say which command on which input failed, and what to do about it.
    return (
        f"{_context(args)} failed with {type(exc).__name__}: {text[:400]}; this is not an "
        f"error inspector knows: rerun with --debug for the traceback and report it"
    )


def _context(args: argparse.Namespace | None) -> str:
    """``inspect on minilm, 'The cat sat…'``: the command and its main inputs, shortened."""
    if args is None:
        return "the command"
    parts = [str(getattr(args, "model", "") or "")]
    for name in ("text", "prompt", "texts", "treebank", "file"):
        value = getattr(args, name, None)
        if isinstance(value, str) and value:
            parts.append(repr(value if len(value) <= 40 else value[:40] + "…"))
            break
    inputs = ", ".join(p for p in parts if p)
    return f"{args.command} on {inputs}" if inputs else str(args.command)


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
    "STOP_SIGNALS",
    "Command",
    "HelpFormatter",
    "Terminated",
    "UsageError",
    "build_parser",
    "main",
]
