"""Command-line interface: ``mousecord <command>``, a thin map of the Python API.

Each command lives in its own module of this package, which defines ``register(subparsers)``; the
command's handler imports the heavy parts (torch, matplotlib) only when it runs.
"""

from mousecord.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
