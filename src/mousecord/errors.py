"""Exceptions and warnings raised by mousecord.

Every error a user can cause derives from :class:`MousecordError`; its message names the file, what was
expected, what was found and, where one exists, a hint. The CLI prints it as one line and exits with 1.
"""

from __future__ import annotations


class MousecordError(Exception):
    """Base class for errors caused by input, configuration or environment (not by a bug)."""


class ImageFormatError(MousecordError):
    """A file is not a readable 3D NIfTI image, or its data cannot be used."""


class HeaderError(ImageFormatError):
    """A NIfTI header is inconsistent (qform/sform disagree, bad voxel size...)."""


class NotAnImageError(ImageFormatError):
    """A file found among a folder's images holds only label values: a mask beside its image."""


class OrientationError(MousecordError):
    """An affine or orientation code cannot be interpreted."""


class OutputError(MousecordError):
    """An output cannot be written (unwritable folder, would overwrite an input...)."""


class ConfigError(MousecordError):
    """A parameter or configuration value is out of range or inconsistent."""


class ModelFolderError(MousecordError):
    """A model bundle or nnU-Net results folder is missing, incomplete or unsafe."""


class DatasetError(MousecordError):
    """A dataset folder (BIDS or nnU-Net raw) is malformed."""


class MousecordWarning(UserWarning):
    """Something is suspicious but processing can go on (e.g. an implausible voxel size)."""
