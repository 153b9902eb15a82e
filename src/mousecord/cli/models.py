"""``mousecord models install|list``: manage installed segmentation models."""

from __future__ import annotations

import argparse
from pathlib import Path

from mousecord.cli.main import add_common_options


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("models", help="install or list segmentation models")
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION", required=True)
    install = actions.add_parser("install", help="install a model from a zip, a folder or a URL")
    install.add_argument("source", help="zip file, model folder (bundle or nnU-Net results) or http(s) URL")
    install.add_argument("--name", help="name to install under (default: from the source)")
    install.add_argument("--sha256", help="expected SHA-256 of the zip")
    install.add_argument("--overwrite", action="store_true", help="replace a model of the same name")
    install.add_argument("--models-dir", type=Path, help="install folder (default: user data dir)")
    add_common_options(install)
    install.set_defaults(handler=run_install)
    listing = actions.add_parser("list", help="list installed models")
    listing.add_argument("--models-dir", type=Path, help="models folder (default: user data dir)")
    add_common_options(listing)
    listing.set_defaults(handler=run_list)


def run_install(args: argparse.Namespace) -> int:
    from mousecord.models.registry import install_model

    path = install_model(
        args.source, sha256=args.sha256, name=args.name, models_dir=args.models_dir, overwrite=args.overwrite
    )
    print(path)
    return 0


def run_list(args: argparse.Namespace) -> int:
    from mousecord.models.registry import default_models_dir, list_models

    models = list_models(models_dir=args.models_dir)
    if not models:
        print(f"no models installed in {args.models_dir or default_models_dir()}")
    for model in models:
        print(f"{model.name}\t{model.kind}{' (shipped)' if model.shipped else ''}\t{model.path}")
    return 0
