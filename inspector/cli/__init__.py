"""Command line: parse arguments, call the Python API, print a short summary. The last consumer.

Every command is one entry of a command table (its arguments and the function that runs it):
:mod:`.single` (one input), :mod:`.trace` (why a token), :mod:`.corpus` (many),
:mod:`.scan` (long inputs: scan, retrieval);
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
import shlex
import signal
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from . import corpus, faithfulness, scan, single, trace
from .common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    Command,
    Terminated,
    UsageError,
    flag,
    interrupted,
)

#: Every sub-command, in the order ``inspector --help`` lists them.
COMMANDS: dict[str, Command] = {
    **single.COMMANDS,
    **trace.COMMANDS,
    **corpus.COMMANDS,
    **faithfulness.COMMANDS,
    **scan.COMMANDS,
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


class Parser(argparse.ArgumentParser):
    """An argument error is one line, ``inspector: error: ...``, like every other error (exit
    2), with where to read the usage instead of the usage itself."""

    def error(self, message: str) -> NoReturn:
        _say(f"inspector: error: {message}; see {self.prog} --help")
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
    flag(parser, "--debug", help="show tracebacks on errors")
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
        # --debug works after the command too (SUPPRESS: not given there keeps the global value)
        p.add_argument(
            "--debug",
            action="store_true",
            default=argparse.SUPPRESS,
            help="show tracebacks on errors (default: off; also before the command)",
        )
        p.set_defaults(func=command.run)
    return parser


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _check_options_before_the_command(parser: argparse.ArgumentParser, argv: list[str]) -> None:
    """``inspector -q report ...``: a command's option given before the command says where it
    goes (only ``--debug``, ``--version`` and ``--help`` come before the command)."""
    commands = _subparsers(parser)
    at = next((i for i, token in enumerate(argv) if token in commands), None)
    if at is None:
        return
    own = set(parser._option_string_actions)
    sub = commands[argv[at]]
    for token in argv[:at]:
        option = token.split("=", 1)[0]
        if option.startswith("-") and option not in own and option in sub._option_string_actions:
            sub.error(
                f"{option} is an option of the command, so it goes after it: inspector "
                f"{argv[at]} ... {token}{' VALUE' if _takes_value(sub, option, token) else ''} "
                f"(before the command only --debug, --version and --help)"
            )


def _takes_value(parser: argparse.ArgumentParser, option: str, token: str) -> bool:
    return "=" not in token and parser._option_string_actions[option].nargs != 0


def _refuse_extra(parser: argparse.ArgumentParser, command: str, extra: list[str]) -> None:
    """Arguments the command does not take; a second text is pointed to ``--pair`` (a sentence
    pair) and ``inspector compare`` (two inputs), or ``compare``'s ``--text-b``."""
    sub = _subparsers(parser).get(command, parser)
    words = [t for t in extra if not t.startswith("-")]
    if not words or len(words) != len(extra):
        sub.error(f"unrecognized arguments: {' '.join(extra)}")

    def where(text: str) -> str:
        if "--pair" in sub._option_string_actions:
            return (
                f"--pair {text} (a sentence pair, one input), or compare two inputs with: "
                f"inspector compare MODEL TEXT --text-b {text}"
            )
        if "--text-b" in sub._option_string_actions:
            return f"--text-b {text}"
        return ""

    shown = " ".join(shlex.quote(w) for w in words)
    if len(words) == 1 and any(c.isspace() for c in words[0]) and where(shown):
        sub.error(
            f"{command} takes one TEXT, and {shown} is a second one: give it as {where(shown)}"
        )
    hint = "a TEXT is one argument: put a text with spaces in quotes ('The cat sat.')"
    if where("TEXT"):
        hint += f"; a second text goes in {where('TEXT')}"
    sub.error(f"unrecognized arguments: {' '.join(words)}; {hint}")


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
    tokens = list(sys.argv[1:] if argv is None else argv)
    _check_options_before_the_command(parser, tokens)
    args, extra = parser.parse_known_args(tokens)
    if extra:
        _refuse_extra(parser, args.command, extra)
    try:
        with _stop_signals_interrupt(), _our_warnings_as_lines(), _force(args):
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


@contextlib.contextmanager
def _force(args: argparse.Namespace) -> Iterator[None]:
    """``--force``: every write of the command may replace a read-only output."""
    if not getattr(args, "force", False):
        yield
        return
    from ..api import replacing_read_only

    with replacing_read_only():
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
