"""mousecord's own model bundle: network description, weights, preprocessing and a model card.

On disk a bundle is a folder::

    <name>/
      model.json        ModelBundle fields except weights (nnU-Net plans vocabulary for the network);
                        ``metadata.weights_sha256`` records the weights file's SHA-256
      weights.safetensors  one state dict per fold, keys prefixed "fold_<k>."
      MODEL_CARD.md     training data, recipe, metrics, limits
      int8/fold_<k>.xml, int8/fold_<k>.bin   optional: each fold's network as an OpenVINO IR quantised to
                        int8 (``metadata.int8`` records their SHA-256 and the weights they were made from)

safetensors holds tensors only, so loading a bundle can never execute code (unlike a pickled checkpoint).
Loading checks the weights against the recorded SHA-256, so a corrupt or swapped file is refused instead of
segmenting with garbage weights.

Axis convention (the same as nnU-Net on an image SCT reoriented to RAS): the network sees the canonical RAS
array transposed to (z, y, x); ``spacing_mm`` and ``patch_size_vox`` are given in that order.

In-plane models (``slab_slices`` > 0) hold a 2D network that segments one axial slice at a time from a slab
of ``slab_slices`` adjacent slices given as channels (1: 2D, 3 or more: 2.5D). They are resampled in-plane
only, so a thick-slice or single-slice image keeps its slices; their ``patch_size_vox`` is one slice deep.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from mousecord.errors import ConfigError, ModelFolderError
from mousecord.io.atomic import replace_folder
from mousecord.labels import DATASET_JSON_LABELS

#: 2 added ``slab_slices`` (in-plane networks); version 1 bundles are 3D and still read.
BUNDLE_FORMAT_VERSION = 2
MODEL_JSON = "model.json"
WEIGHTS_FILE = "weights.safetensors"
MODEL_CARD = "MODEL_CARD.md"
#: ``metadata`` key of ``{file name: hex SHA-256}`` for the weights (also what segment sidecars report).
WEIGHTS_SHA256 = "weights_sha256"
#: Folder of the int8 networks, and the ``metadata`` key that describes them.
INT8_FOLDER = "int8"
INT8_METADATA = "int8"

#: Supported intensity normalisations: z-score (optionally inside the non-zero mask) and nnU-Net's CT scheme.
NORMALIZATION_SCHEMES = ("ZScoreNormalization", "CTNormalization", "NoNormalization")


@dataclass(frozen=True)
class Normalization:
    """How image intensities are normalised before the network, per channel (nnU-Net semantics)."""

    scheme: str = "ZScoreNormalization"
    use_mask: bool = False
    #: CT only: dataset foreground ``mean``, ``std``, ``percentile_00_5``, ``percentile_99_5``.
    intensity_properties: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.scheme not in NORMALIZATION_SCHEMES:
            raise ConfigError(
                f"unknown normalization {self.scheme!r}; expected one of {NORMALIZATION_SCHEMES}"
            )


@dataclass(frozen=True)
class InputSpec:
    """What a network expects of its input image: the one description inference and training preprocess by.

    Attributes:
        name: the model's name, for messages.
        spacing_mm: (z, y, x) voxel size the network works at (in-plane models keep the image's z).
        normalization: one entry per image channel.
        transpose_forward: nnU-Net's axis permutation after the (x, y, z) -> (z, y, x) reversal.
        slab_slices: 0 for a 3D network, else the adjacent slices an in-plane network sees.
        input_channels: image channels (1: one contrast).
    """

    name: str
    spacing_mm: tuple[float, float, float]
    normalization: tuple[Normalization, ...] = (Normalization(),)
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    slab_slices: int = 0
    input_channels: int = 1

    @property
    def in_plane(self) -> bool:
        return self.slab_slices > 0


@dataclass(frozen=True)
class Int8Network:
    """One fold's network as an OpenVINO IR with int8 weights and activations, on (b, c, z, y, x) tiles like
    the network it was quantised from (see ``tools/quantize_default_model.py``).

    Attributes:
        xml: the IR's model description. weights: its ``.bin`` file.
    """

    xml: bytes
    weights: bytes


@dataclass(frozen=True, eq=False)
class ModelBundle:
    """A trained segmentation model, ready for inference, whatever format it came from.

    Attributes:
        name: short identifier shown in sidecars and ``models list``.
        architecture: nnU-Net ``architecture`` description (see :mod:`mousecord.models.network`).
        spacing_mm: (3,) voxel size the network was trained at, in network axis order (z, y, x).
        patch_size_vox: (3,) sliding-window tile size, in network axis order.
        fold_weights: one state dict per fold; inference averages the folds' logits.
        labels: ``{"background": 0, "GM": 1, "WM": 2}`` as in nnU-Net's dataset.json.
        normalization: one entry per input channel.
        transpose_forward: nnU-Net's axis permutation applied after the (x, y, z) -> (z, y, x) reversal.
        mirror_axes: axes (network order) allowed for mirroring test-time augmentation.
        orientation: axis codes the image is reoriented to before the reversal.
        channel_names: ``{"0": "T1w"}``.
        slab_slices: 0 for a 3D network; else the network is 2D and sees this many adjacent axial slices
            (an odd number, the centre one segmented) as channels.
        model_card: free-text card (Markdown), and ``metadata`` any JSON-serialisable facts.
        int8_networks: empty, or one :class:`Int8Network` per fold, quantised from ``fold_weights``
            (``metadata["int8"]["weights_content_sha256"]`` is :func:`weights_content_sha256` of the weights
            they were made from; :attr:`int8_matches_weights` says whether those are these weights).
        source: where the bundle was read from (not saved).
        installed_name: the name it was found under among the installed models (``default`` for the shipped
            default model when none is given, else the name given; not saved), or None where it was read
            from a folder.
    """

    name: str
    architecture: dict[str, Any]
    spacing_mm: tuple[float, float, float]
    patch_size_vox: tuple[int, int, int]
    fold_weights: tuple[dict[str, torch.Tensor], ...]
    labels: dict[str, int] = field(default_factory=lambda: dict(DATASET_JSON_LABELS))
    normalization: tuple[Normalization, ...] = (Normalization(),)
    transpose_forward: tuple[int, int, int] = (0, 1, 2)
    mirror_axes: tuple[int, ...] = (0, 1, 2)
    orientation: str = "RAS"
    channel_names: dict[str, str] = field(default_factory=lambda: {"0": "T1w"})
    slab_slices: int = 0
    model_card: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    int8_networks: tuple[Int8Network, ...] = ()
    source: Path | None = None
    installed_name: str | None = None

    def __post_init__(self) -> None:
        if len(self.spacing_mm) != 3 or any(float(value) <= 0 for value in self.spacing_mm):
            raise ConfigError(
                f"model {self.name}: spacing_mm must be three positive numbers, got {self.spacing_mm}"
            )
        if len(self.patch_size_vox) != 3 or any(int(value) < 1 for value in self.patch_size_vox):
            raise ConfigError(
                f"model {self.name}: patch_size_vox must be three positive integers, "
                f"got {self.patch_size_vox}"
            )
        if not self.fold_weights:
            raise ConfigError(f"model {self.name}: no fold weights")
        if sorted(self.labels.values()) != list(range(len(self.labels))):
            raise ConfigError(f"model {self.name}: labels must be 0..N-1, got {self.labels}")
        if self.slab_slices < 0 or (self.slab_slices and self.slab_slices % 2 == 0):
            raise ConfigError(f"model {self.name}: slab_slices must be 0 or odd, got {self.slab_slices}")
        from mousecord.models.network import network_dimension

        if network_dimension(self.architecture) != (2 if self.in_plane else 3):
            raise ConfigError(
                f"model {self.name}: a {network_dimension(self.architecture)}D network needs slab_slices "
                f"{'> 0' if network_dimension(self.architecture) == 2 else '0'}, got {self.slab_slices}"
            )
        if self.in_plane and int(self.patch_size_vox[0]) != 1:
            raise ConfigError(
                f"model {self.name}: an in-plane model's patch is one slice deep, got {self.patch_size_vox}"
            )
        if self.int8_networks and len(self.int8_networks) != len(self.fold_weights):
            raise ConfigError(
                f"model {self.name}: {len(self.int8_networks)} int8 networks for "
                f"{len(self.fold_weights)} folds"
            )

    @property
    def int8_matches_weights(self) -> bool:
        """Whether the bundle has int8 networks and they were quantised from these very weights."""
        record = self.metadata.get(INT8_METADATA)
        return bool(
            self.int8_networks
            and isinstance(record, dict)
            and record.get("weights_content_sha256") == weights_content_sha256(self.fold_weights)
        )

    @property
    def in_plane(self) -> bool:
        """Whether the network is 2D, run slice by slice (see ``slab_slices``)."""
        return self.slab_slices > 0

    @property
    def input_spec(self) -> InputSpec:
        """The input this model expects (see :func:`mousecord.inference.preprocessing.preprocess_image`)."""
        return InputSpec(
            self.name,
            tuple(float(value) for value in self.spacing_mm),
            self.normalization,
            self.transpose_forward,
            self.slab_slices,
            self.input_channels,
        )

    @property
    def network_channels(self) -> int:
        """Input channels of the network itself: image channels, times the slab's slices in-plane."""
        return self.input_channels * max(self.slab_slices, 1)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    @property
    def input_channels(self) -> int:
        return len(self.channel_names)

    def description(self) -> dict[str, Any]:
        """Every field but the weights, as JSON-serialisable data (what ``model.json`` holds)."""
        return {
            "format_version": BUNDLE_FORMAT_VERSION,
            "name": self.name,
            "architecture": self.architecture,
            "spacing_mm": [float(value) for value in self.spacing_mm],
            "patch_size_vox": [int(value) for value in self.patch_size_vox],
            "num_folds": len(self.fold_weights),
            "labels": self.labels,
            "normalization": [asdict(entry) for entry in self.normalization],
            "transpose_forward": list(self.transpose_forward),
            "mirror_axes": list(self.mirror_axes),
            "orientation": self.orientation,
            "channel_names": self.channel_names,
            "slab_slices": self.slab_slices,
            "metadata": self.metadata,
        }


def save_bundle(bundle: ModelBundle, folder: Path | str, *, overwrite: bool = False) -> Path:
    """Write ``bundle`` as a folder (model.json, weights.safetensors, MODEL_CARD.md, and its int8 networks
    when they were quantised from its weights; otherwise they and their record are left out).

    ``metadata["weights_sha256"]`` in model.json is the SHA-256 of the weights file just written, whatever
    ``bundle.metadata`` held under that key (a loaded bundle's record describes its old weights).

    Raises:
        ModelFolderError: ``folder`` exists and ``overwrite`` is false.
    """
    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise ModelFolderError(f"{folder}: already exists; choose another folder or allow overwriting")
    staging = folder.with_name(f".{folder.name}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        tensors = {
            f"fold_{fold}.{key}": value.detach().cpu().contiguous()
            for fold, state_dict in enumerate(bundle.fold_weights)
            for key, value in unique_tensors(state_dict).items()
        }
        save_file(tensors, staging / WEIGHTS_FILE, metadata={"format": "pt", "mousecord_bundle": bundle.name})
        _permissions_from_umask(staging / WEIGHTS_FILE)
        description = bundle.description()
        description["metadata"] = {
            **bundle.metadata,
            WEIGHTS_SHA256: {WEIGHTS_FILE: file_sha256(staging / WEIGHTS_FILE)},
        }
        if bundle.int8_matches_weights:
            _write_int8(bundle, staging, description["metadata"])
        else:  # int8 networks of other weights (a fine-tune's starting model) would not be this model
            description["metadata"].pop(INT8_METADATA, None)
        (staging / MODEL_JSON).write_text(json.dumps(description, indent=2) + "\n")
        (staging / MODEL_CARD).write_text(
            bundle.model_card or f"# {bundle.name}\n\nNo model card was written.\n"
        )
        replace_folder(staging, folder)  # a kill never leaves a half-deleted bundle
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _write_int8(bundle: ModelBundle, staging: Path, metadata: dict[str, Any]) -> None:
    """Write the int8 networks into ``staging`` and record their SHA-256 in ``metadata["int8"]``."""
    (staging / INT8_FOLDER).mkdir()
    files = {}
    for fold, network in enumerate(bundle.int8_networks):
        for suffix, content in ((".xml", network.xml), (".bin", network.weights)):
            name = f"{INT8_FOLDER}/fold_{fold}{suffix}"
            (staging / name).write_bytes(content)
            files[name] = hashlib.sha256(content).hexdigest()
    metadata[INT8_METADATA] = {**bundle.metadata.get(INT8_METADATA, {}), "sha256": files}


def _read_int8(folder: Path, metadata: dict[str, Any], num_folds: int) -> tuple[Int8Network, ...]:
    """The int8 networks ``metadata["int8"]`` lists, each file checked against its SHA-256 (none: ())."""
    record = metadata.get(INT8_METADATA)
    if not isinstance(record, dict) or not record.get("sha256"):
        return ()
    expected = {
        f"{INT8_FOLDER}/fold_{fold}{suffix}" for fold in range(num_folds) for suffix in (".xml", ".bin")
    }
    if not isinstance(record["sha256"], dict) or set(record["sha256"]) != expected:
        raise ModelFolderError(
            f"{folder / MODEL_JSON}: metadata.int8.sha256 must map exactly {sorted(expected)} to SHA-256s"
        )
    contents = {}
    for name, recorded in record["sha256"].items():
        path = folder / name
        if not path.is_file():
            raise ModelFolderError(f"{path}: missing; {MODEL_JSON} lists it among the int8 networks")
        content = path.read_bytes()
        if hashlib.sha256(content).hexdigest() != str(recorded).lower():
            raise ModelFolderError(
                f"{path}: does not match the sha256 recorded in {MODEL_JSON}: the file is corrupt or was "
                "replaced; reinstall the model"
            )
        contents[name] = content
    return tuple(
        Int8Network(contents[f"{INT8_FOLDER}/fold_{fold}.xml"], contents[f"{INT8_FOLDER}/fold_{fold}.bin"])
        for fold in range(num_folds)
    )


def _permissions_from_umask(path: Path) -> None:
    """Give ``path`` the mode a plain ``open()`` would: safetensors writes its file owner-only (0600),
    which would hide a bundle installed for a lab group from everyone else."""
    path.chmod(0o666 & ~_umask())


def _umask() -> int:
    # Linux reports the umask without changing it; elsewhere set-and-restore (briefly process-wide).
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    umask = os.umask(0)
    os.umask(umask)
    return umask


def load_bundle(folder: Path | str) -> ModelBundle:
    """Read a bundle folder written by :func:`save_bundle`, verifying its weights' SHA-256.

    A bundle saved before model.json recorded the hash (no ``metadata["weights_sha256"]`` entry for
    weights.safetensors) loads silently without the check: the hash guards against corruption and mix-ups,
    not tampering (whoever can replace the weights can edit model.json too), so a warning on every run
    would not make such a bundle safer; saving it again records the hash. Either way the returned
    bundle's ``metadata["weights_sha256"]`` holds the digest of the weights actually read.

    Raises:
        ModelFolderError: missing files, unreadable JSON, weights that do not match the recorded SHA-256,
            corrupt weights, or a fold count mismatch.
    """
    folder = Path(folder)
    model_json, weights_file = folder / MODEL_JSON, folder / WEIGHTS_FILE
    for required in (model_json, weights_file):
        if not required.is_file():
            raise ModelFolderError(f"{folder}: not a mousecord model bundle ({required.name} missing)")
    try:
        description = json.loads(model_json.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ModelFolderError(f"{model_json}: invalid JSON ({error})") from error
    version = description.get("format_version", 1) if isinstance(description, dict) else None
    if not isinstance(version, int) or not 1 <= version <= BUNDLE_FORMAT_VERSION:
        raise ModelFolderError(
            f"{model_json}: bundle format version {version!r} is not one this mousecord reads "
            f"(1 to {BUNDLE_FORMAT_VERSION}); a newer mousecord may read it"
        )
    metadata = description.get("metadata", {})
    digest = _verified_sha256(weights_file, metadata)
    try:
        tensors = load_file(weights_file)
    except (SafetensorError, OSError, ValueError) as error:
        raise ModelFolderError(f"{weights_file}: corrupt weights file ({error})") from error
    num_folds = int(description.get("num_folds", 0))
    fold_weights: list[dict[str, torch.Tensor]] = [{} for _ in range(num_folds)]
    for key, tensor in tensors.items():
        prefix, _, parameter = key.partition(".")
        fold = int(prefix.removeprefix("fold_")) if prefix.startswith("fold_") else -1
        if not 0 <= fold < num_folds:
            raise ModelFolderError(f"{weights_file}: tensor {key!r} belongs to no declared fold")
        fold_weights[fold][parameter] = tensor
    card = folder / MODEL_CARD
    try:
        return ModelBundle(
            name=description["name"],
            architecture=description["architecture"],
            spacing_mm=tuple(description["spacing_mm"]),
            patch_size_vox=tuple(description["patch_size_vox"]),
            fold_weights=tuple(fold_weights),
            labels=description["labels"],
            normalization=tuple(Normalization(**entry) for entry in description["normalization"]),
            transpose_forward=tuple(description["transpose_forward"]),
            mirror_axes=tuple(description["mirror_axes"]),
            orientation=description["orientation"],
            channel_names=description["channel_names"],
            slab_slices=int(description.get("slab_slices", 0)),
            model_card=card.read_text() if card.is_file() else "",
            metadata={**metadata, WEIGHTS_SHA256: {WEIGHTS_FILE: digest}},
            int8_networks=_read_int8(folder, metadata, num_folds),
            source=folder.resolve(),
        )
    except (KeyError, TypeError, ConfigError) as error:
        raise ModelFolderError(f"{model_json}: invalid model description ({error})") from error


def _verified_sha256(weights_file: Path, metadata: Any) -> str:
    """The weights file's SHA-256, checked against ``metadata``'s record when model.json has one."""
    digest = file_sha256(weights_file)
    record = metadata.get(WEIGHTS_SHA256) if isinstance(metadata, dict) else None
    # a record without this file's name (an nnU-Net checkpoint list carried over) is no record of it
    recorded = record.get(WEIGHTS_FILE) if isinstance(record, dict) else None
    if recorded is not None and str(recorded).lower() != digest:
        raise ModelFolderError(
            f"{weights_file}: weights do not match the sha256 recorded in {MODEL_JSON} "
            f"(recorded {recorded}, file has {digest}): the file is corrupt or was replaced; "
            "reinstall the model"
        )
    return digest


def unique_tensors(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop keys whose tensor shares storage with another key's.

    dynamic-network-architectures registers each layer under several names (``conv`` and
    ``all_modules.0``, ``encoder`` and ``decoder.encoder``); safetensors refuses shared tensors, and storing
    each copy would quadruple the file. The shortest name of each group is kept;
    :func:`~mousecord.models.network.load_weights` restores the aliases.
    """
    kept: dict[tuple[int, int, tuple[int, ...]], str] = {}
    for key in sorted(state_dict, key=lambda name: (len(name), name)):
        tensor = state_dict[key]
        identity = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape))
        kept.setdefault(identity, key)
    return {key: state_dict[key] for key in sorted(kept.values())}


def weights_content_sha256(fold_weights: Sequence[dict[str, torch.Tensor]]) -> str:
    """Hex SHA-256 of the weights' keys, dtypes, shapes and values (of the tensors a bundle stores), whatever
    file they came from: the weights file's own hash changes with the bundle's name in its header."""
    digest = hashlib.sha256()
    for fold, state_dict in enumerate(fold_weights):
        for key, tensor in unique_tensors(state_dict).items():
            value = tensor.detach().cpu().contiguous()
            digest.update(f"{fold}.{key}:{value.dtype}:{tuple(value.shape)};".encode())
            digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def file_sha256(path: Path | str) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for chunk in iter(lambda: stream.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


__all__ = [
    "INT8_METADATA",
    "InputSpec",
    "Int8Network",
    "ModelBundle",
    "Normalization",
    "WEIGHTS_SHA256",
    "file_sha256",
    "load_bundle",
    "save_bundle",
    "unique_tensors",
    "weights_content_sha256",
]
