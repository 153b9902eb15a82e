"""Parser assembly, logging set-up and error reporting for the ``mousecord`` command."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import warnings
from collections.abc import Iterator, Sequence
from types import FrameType

from mousecord import __version__
from mousecord.errors import MousecordError, MousecordWarning
from mousecord.options import command_line_terms

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


def add_backend_option(parser: argparse.ArgumentParser) -> None:
    """``--backend``; its default is ``$MOUSECORD_BACKEND`` when set (e.g. ``torch`` for nnU-Net-exact
    results everywhere), else "auto". Only the command line reads the environment."""
    from mousecord.options import BACKEND_ENVIRONMENT_VARIABLE, BACKENDS

    default = os.environ.get(BACKEND_ENVIRONMENT_VARIABLE, "auto")
    if default not in BACKENDS:
        default = "auto"
    parser.add_argument(
        "--backend",
        choices=BACKENDS,
        default=default,
        help="openvino: ~2x faster on a CPU; torch: nnU-Net's exact results; auto: openvino on an x86-64 "
        f"CPU when installed (default: ${BACKEND_ENVIRONMENT_VARIABLE} if set, else auto; now {default})",
    )


#: What measuring a segmentation takes without ``--voxel-size``.
SEGMENTED_VOXEL_SIZE = "the one mousecord segment was given, as its sidecar says, else the header's"
#: What ``--cord-axis auto`` does for a command that measures a segmentation.
SEGMENTED_AXIS = (
    "the axis mousecord segment used, as its sidecar says; without one, a single slice's normal, else the "
    "axis along which the labelled cord is a tube at least 3x longer than wide, else the header's "
    "superior-inferior axis"
)


def add_cord_axis_option(parser: argparse.ArgumentParser, *, what: str, auto: str) -> None:
    """``--cord-axis``: which axis of a file runs along the cord, ``what`` being done across it, ``auto``
    saying what the default does; read it with :func:`cord_axis_setting`."""
    from mousecord.options import CORD_AXIS_SETTINGS

    parser.add_argument(
        "--cord-axis",
        choices=tuple(str(setting) for setting in CORD_AXIS_SETTINGS),
        default="auto",
        help=f"the file's array axis along the cord ({what} across it): auto (default): {auto}; header: "
        "the header's superior-inferior axis; 0, 1, 2: array axis i, j or k",
    )


def add_voxel_size_option(parser: argparse.ArgumentParser, *, default: str) -> None:
    """``--voxel-size``: the true voxel size where a header's is wrong, ``default`` saying what applies
    without it; read it with :func:`voxel_size_setting`."""
    parser.add_argument(
        "--voxel-size",
        type=float,
        nargs="+",
        metavar="MM",
        help="override the header's voxel size: X Y Z in mm along the file's axes (X Y for 2D images, "
        f"whose slice thickness stays the header's); default: {default}",
    )


def voxel_size_setting(args: argparse.Namespace) -> tuple[float, ...] | None:
    """``--voxel-size`` as the Python settings take it (``voxel_size_mm``)."""
    return tuple(args.voxel_size) if args.voxel_size else None


def cord_axis_setting(args: argparse.Namespace) -> str | int:
    """``--cord-axis`` as the Python settings take it: "auto", "header" or a file axis 0, 1, 2."""
    return int(args.cord_axis) if args.cord_axis.isdigit() else args.cord_axis


class Terminated(KeyboardInterrupt):
    """Raised in the main thread when the process receives SIGTERM, so that it unwinds as on Ctrl-C."""


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``mousecord`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    A :class:`~mousecord.errors.MousecordError` becomes one red line on stderr and exit code 1; usage
    errors exit with 2 (argparse). SIGINT (Ctrl-C) and SIGTERM both stop the command the same way: partial
    outputs and temporary files are removed, "interrupted" is printed, and the exit code is 128 + the
    signal's number, as a shell reports a process the signal killed (130 for SIGINT, 143 for SIGTERM).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    _configure_logging(verbose=getattr(args, "verbose", False), quiet=getattr(args, "quiet", False))
    try:
        with warnings.catch_warnings(), _sigterm_interrupts():  # both put back on return (in-process calls)
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            result = args.handler(args)
    except MousecordError as error:
        _print_error(str(error))
        return 1
    except Terminated:
        _print_error("interrupted (SIGTERM)")
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        _print_error("interrupted")
        return 128 + signal.SIGINT
    return int(result or 0)


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """Turn SIGTERM into :class:`Terminated` while the block runs (main thread only, where Python can).

    Forked workers (a DataLoader's) inherit the handler; in them it falls back to SIGTERM's default action,
    so that terminating a worker still ends it at once.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()

    def terminate(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise Terminated

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a message comes, not to the stream of the first call: the
    handler outlives an in-process :func:`main` call, whose caller may have swapped stderr meanwhile."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


class _CommandLineFormatter(logging.Formatter):
    """Log records as one line in command-line terms (see :func:`command_line_terms`)."""

    def format(self, record: logging.LogRecord) -> str:
        return command_line_terms(super().format(record))


def _configure_logging(*, verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(_CommandLineFormatter("%(message)s"))
    package_logger = logging.getLogger("mousecord")
    package_logger.handlers[:] = [handler]
    package_logger.setLevel(level)
    package_logger.propagate = False


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Print mousecord's own warnings as one line (they name their file); others only with ``-v``."""
    logger = logging.getLogger("mousecord")
    if issubclass(category, MousecordWarning):
        logger.warning("%s", str(message))
    else:
        logger.debug("%s:%d: %s: %s", filename, lineno, category.__name__, message)


def _print_error(message: str) -> None:
    colour = sys.stderr.isatty()
    line = command_line_terms(message)  # always one line
    print(f"{_RED if colour else ''}mousecord: error: {line}{_RESET if colour else ''}", file=sys.stderr)


def show_progress(args: argparse.Namespace) -> bool:
    """Whether a command should draw progress bars: not with ``--quiet``, only on a terminal."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()
