"""Installed models: install from a zip, folder or URL; list; resolve a name or path to a ModelBundle.

Models live in one folder per model under the user data directory (``~/.local/share/mousecord/models`` on
Linux, ``~/Library/Application Support/mousecord/models`` on macOS, ``%LOCALAPPDATA%\\mousecord\\models`` on
Windows), or any folder passed as ``models_dir``. A bundle shipped inside the package at
``mousecord/models/default/`` is found as "default" when present. Nothing is read at import time.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
import warnings
import zipfile
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath

from mousecord.errors import ConfigError, ModelFolderError, MousecordWarning
from mousecord.io.atomic import replace_folder
from mousecord.models.bundle import MODEL_JSON, ModelBundle, file_sha256, load_bundle
from mousecord.models.nnunet_layout import is_results_folder, results_folder_children

logger = logging.getLogger(__name__)

DEFAULT_MODEL_NAME = "default"
SHIPPED_MODELS_DIR = Path(__file__).resolve().parent  # mousecord/models/<name>/ holds shipped bundles


@dataclass(frozen=True)
class InstalledModel:
    """A model found on disk: ``kind`` is "bundle" or "nnunet"; ``shipped`` if it comes with the package."""

    name: str
    path: Path
    kind: str
    shipped: bool = False


def default_models_dir() -> Path:
    """Per-user model folder (platformdirs' ``user_data_dir("mousecord") / "models"`` logic)."""
    home = Path.home()
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or home / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = home / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share")
    return base / "mousecord" / "models"


def model_kind(folder: Path) -> str | None:
    """ "bundle" (model.json), "nnunet" (an nnU-Net results folder or its parent), or None."""
    if (folder / MODEL_JSON).is_file():
        return "bundle"
    if is_results_folder(folder) or results_folder_children(folder):
        return "nnunet"
    return None


def list_models(*, models_dir: Path | str | None = None) -> list[InstalledModel]:
    """Installed models, sorted by name, plus the shipped "default" bundle if the package has one."""
    folder = Path(models_dir) if models_dir is not None else default_models_dir()
    found = []
    if folder.is_dir():
        for child in sorted(folder.iterdir()):
            kind = model_kind(child) if child.is_dir() and not child.name.startswith(".") else None
            if kind:
                found.append(InstalledModel(child.name, child, kind))
    shipped = SHIPPED_MODELS_DIR / DEFAULT_MODEL_NAME
    if (shipped / MODEL_JSON).is_file() and all(model.name != DEFAULT_MODEL_NAME for model in found):
        found.append(InstalledModel(DEFAULT_MODEL_NAME, shipped, "bundle", shipped=True))
    return sorted(found, key=lambda model: model.name)


def resolve_model(
    name_or_path: str | Path | None,
    *,
    models_dir: Path | str | None = None,
    folds: tuple[int | str, ...] | None = None,
    checkpoint: str = "auto",
) -> ModelBundle:
    """Load a model given as a bundle folder, an nnU-Net results folder, or an installed name.

    ``None`` means "default": an installed or shipped model of that name.

    Raises:
        ModelFolderError: nothing found under that name or path (one line, with a hint).
    """
    name = DEFAULT_MODEL_NAME if name_or_path is None else str(name_or_path)
    path = Path(name)
    if not path.exists():
        installed = {model.name: model for model in list_models(models_dir=models_dir)}
        if name not in installed:
            known = ", ".join(sorted(installed)) or "none installed"
            if name_or_path is None:
                raise ModelFolderError(
                    "no model given and no default model is installed; give a model name or folder "
                    f"(installed: {known}; install one with mousecord.models.install_model)"
                )
            raise ModelFolderError(f"{name}: unknown model, not a folder either (installed: {known})")
        bundle = load_model_folder(installed[name].path, folds=folds, checkpoint=checkpoint)
        return replace(bundle, installed_name=name)
    return load_model_folder(path, folds=folds, checkpoint=checkpoint)


def load_model_folder(path: Path, *, folds=None, checkpoint: str = "auto") -> ModelBundle:
    """A bundle (its weights checked against model.json's SHA-256) or nnU-Net folder.

    Either way ``metadata["weights_sha256"]`` holds the digests of the weight files read.
    """
    kind = model_kind(path) if path.is_dir() else None
    if kind == "bundle":
        return load_bundle(path)
    if kind == "nnunet":
        from mousecord.models.nnunet import read_model_folder

        return read_model_folder(path, folds=folds, checkpoint=checkpoint)
    if path.is_file() and zipfile.is_zipfile(path):
        raise ModelFolderError(
            f"{path}: a model archive: install it first (mousecord.models.install_model), then give its name"
        )
    raise ModelFolderError(
        f"{path}: not a model (expected a mousecord bundle with {MODEL_JSON}, or an nnU-Net results folder)"
    )


def install_model(
    path_or_url: str | Path,
    *,
    sha256: str | None = None,
    name: str | None = None,
    models_dir: Path | str | None = None,
    overwrite: bool = False,
) -> Path:
    """Install a model from a zip file, a folder or an http(s) URL of a zip; returns the installed folder.

    The archive is checked (``sha256`` if given; every entry must stay inside the target folder), extracted
    to a temporary folder beside the destination, validated by loading it, then renamed into place, so a
    failure installs nothing.

    Raises:
        ModelFolderError: download failure, checksum mismatch, unsafe or invalid archive, invalid model,
            or a model of that name already installed (without ``overwrite``).
    """
    target_root = Path(models_dir) if models_dir is not None else default_models_dir()
    target_root.mkdir(parents=True, exist_ok=True)
    source = str(path_or_url)
    staging = target_root / f".install-{uuid.uuid4().hex[:8]}"
    downloaded: Path | None = None
    try:
        if source.startswith(("http://", "https://")):
            downloaded = _download(source, target_root)
            source_path = downloaded
            default_name = Path(urllib.request.url2pathname(source.rsplit("/", 1)[-1])).name
        else:
            source_path = Path(source)
            default_name = source_path.name
        if not source_path.exists():
            raise ModelFolderError(f"{source_path}: file or folder not found")
        if sha256 is not None:
            if source_path.is_dir():
                raise ConfigError("sha256 checks an archive; it cannot be used with a folder")
            actual = file_sha256(source_path)
            if actual.lower() != sha256.lower():
                raise ModelFolderError(f"{source}: sha256 mismatch (expected {sha256}, got {actual})")
        if source_path.is_dir():
            shutil.copytree(source_path, staging)
        else:
            _safe_extract(source_path, staging)
        model_root = _model_root(staging, source)
        try:
            bundle = load_model_folder(model_root)  # validates before anything is installed
        except ModelFolderError as error:  # name the user's file, not its staged copy (removed below)
            raise ModelFolderError(str(error).replace(str(staging), source)) from error
        model_name = name if name is not None else _name_from(model_root, staging, default_name, bundle.name)
        _check_name(model_name)
        destination = target_root / model_name
        if destination.exists() and not overwrite:
            raise ModelFolderError(
                f"{destination}: a model named {model_name!r} is already installed; install this one under "
                "another name (name=NAME) or replace it (overwrite=True)"
            )
        if model_name == DEFAULT_MODEL_NAME:
            warnings.warn(
                f"{source}: installed as {DEFAULT_MODEL_NAME!r}, so segment uses it wherever no model is "
                "given, in place of the model shipped with mousecord",
                MousecordWarning,
                stacklevel=2,
            )
        replace_folder(model_root, destination)
        logger.info("installed model %s at %s", model_name, destination)
        return destination
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if downloaded is not None:
            downloaded.unlink(missing_ok=True)


def _download(url: str, folder: Path) -> Path:
    handle, name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=folder)
    os.close(handle)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(name, "wb") as stream:
            shutil.copyfileobj(response, stream, 1 << 20)
    except (urllib.error.URLError, OSError, ValueError) as error:
        Path(name).unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise ModelFolderError(
            f"{url}: download failed ({reason}); download it yourself and install the file"
        ) from error
    return Path(name)


def _safe_extract(archive: Path, destination: Path) -> None:
    """Extract a zip, refusing any entry that would land outside ``destination`` (zip-slip) or is a link."""
    try:
        with zipfile.ZipFile(archive) as zipped:
            for entry in zipped.infolist():
                reason = _unsafe_entry_reason(entry)
                if reason:
                    raise ModelFolderError(
                        f"{archive}: unsafe entry {entry.filename!r} ({reason}); nothing installed"
                    )
            destination.mkdir(parents=True)
            zipped.extractall(destination)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as error:
        raise ModelFolderError(f"{archive}: not a valid zip archive ({error})") from error


def _unsafe_entry_reason(entry: zipfile.ZipInfo) -> str:
    """Why extracting ``entry`` could write outside the target folder ("" if it cannot)."""
    member = PurePosixPath(entry.filename.replace("\\", "/"))
    if member.is_absolute():
        return "an absolute path"
    if ":" in entry.filename:
        return "a drive letter or ':' in the name"
    if ".." in member.parts:
        return "a '..' component"
    if (entry.external_attr >> 16) & 0o170000 == 0o120000:
        return "a symbolic link"
    return ""


def _model_root(staging: Path, source: str) -> Path:
    """The model folder inside an extracted archive: the top level or its single sub-folder."""
    if model_kind(staging):
        return staging
    children = [
        child for child in staging.iterdir() if child.is_dir() and not child.name.startswith(("__", "."))
    ]
    if len(children) == 1 and model_kind(children[0]):
        return children[0]
    raise ModelFolderError(
        f"{source}: holds no model (no {MODEL_JSON}, plans.json or nnUNetTrainer*/ folder)"
    )


#: What an installed model's name may hold: it is a folder name and a word on the command line.
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _name_from(model_root: Path, staging: Path, default_name: str, bundle_name: str) -> str:
    """The name to install under: the folder or archive's, except a training run's bundle folder
    ``RUN/model``, which takes the name its ``model.json`` gives (``bundle_name``, the run's)."""
    name = model_root.name if model_root != staging else default_name
    for suffix in (".zip",):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
    if name == "model" and (model_root / MODEL_JSON).is_file():
        # a run folder's name as a model name: spaces and the like made safe; nothing safe, "model"
        name = re.sub(r"[^A-Za-z0-9._-]+", "-", bundle_name).strip("-.") or name
    return name


def _check_name(name: str) -> None:
    if not _MODEL_NAME.fullmatch(name):
        raise ConfigError(
            f"invalid model name {name!r}: letters, digits, '.', '-' and '_', starting with a letter or "
            "digit (give one with name=NAME)"
        )


__all__ = [
    "DEFAULT_MODEL_NAME",
    "InstalledModel",
    "default_models_dir",
    "install_model",
    "list_models",
    "load_model_folder",
    "resolve_model",
]
