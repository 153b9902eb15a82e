"""Parser assembly, logging set-up and error reporting for the ``mousecord`` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings
from collections.abc import Sequence

from mousecord import __version__
from mousecord.errors import MousecordError

#: Modules of ``mousecord.cli`` that each register one or more subcommands, in help order.
COMMAND_MODULES: tuple[str, ...] = (
    "demo",
    "segment",
    "models",
    "phantom",
    "evaluate",
    "morphometrics",
    "qc",
    "train",
    "datatools",
)

_RED = "\033[31m"
_RESET = "\033[0m"


def build_parser() -> argparse.ArgumentParser:
    """The full ``mousecord`` argument parser, one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="mousecord",
        description="White and grey matter segmentation of ex vivo mouse spinal cord MRI.",
    )
    parser.add_argument("--version", action="version", version=f"mousecord {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(f"mousecord.cli.{module_name}").register(subparsers)
    return parser


def add_common_options(parser: argparse.ArgumentParser) -> None:
    """Options every command takes: ``-v`` for debug logging, ``--quiet`` to hide progress bars."""
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug messages")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, only warnings and errors")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mousecord`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    A :class:`~mousecord.errors.MousecordError` becomes one red line on stderr and exit code 1; usage
    errors exit with 2 (argparse).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _configure_logging(verbose=getattr(args, "verbose", False), quiet=getattr(args, "quiet", False))
    try:
        result = args.handler(args)
    except MousecordError as error:
        _print_error(str(error))
        return 1
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 130
    return int(result or 0)


def _configure_logging(*, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    package_logger = logging.getLogger("mousecord")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False
    logging.captureWarnings(True)
    warnings.simplefilter("default")


def _print_error(message: str) -> None:
    colour = sys.stderr.isatty()
    line = " ".join(message.split())  # always one line
    print(f"{_RED if colour else ''}mousecord: error: {line}{_RESET if colour else ''}", file=sys.stderr)


def show_progress(args: argparse.Namespace) -> bool:
    """Whether a command should draw progress bars: not with ``--quiet``, only on a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()
