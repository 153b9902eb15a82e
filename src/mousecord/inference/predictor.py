"""``Predictor``: load a model bundle once, then segment arrays, volumes or files.

Layers, as in nnU-Net's ``nnUNetPredictor`` (each callable alone): :meth:`Predictor.preprocess` (canonical
array -> network-space, cropped, normalised, resampled), :meth:`Predictor.predict_logits` (sliding window over
all folds), :meth:`Predictor.export` (logits -> label map and probabilities in canonical space), and
:meth:`Predictor.predict_array` / :meth:`Predictor.predict_volume` doing all three.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from mousecord.errors import ConfigError
from mousecord.inference import preprocessing as prep
from mousecord.inference.backends import OpenVinoNetwork, resolve_backend, smallest_input_shape
from mousecord.inference.config import InferenceConfig
from mousecord.inference.cord_roi import CordCoverage, CordRoi, locate_cord, predict_cord_logits
from mousecord.inference.memory import available_memory_bytes, estimate_peak_bytes, slab_slices_that_fit
from mousecord.inference.model_settings import ModelInferenceSettings
from mousecord.inference.postprocessing import (
    drop_short_cord,
    keep_largest_component,
    smooth_logits_along_slices,
)
from mousecord.inference.preprocessing import PreprocessedImage
from mousecord.inference.slabs import (
    context_slices,
    network_geometry,
    nonzero_crop_shape,
    predict_in_slabs,
)
from mousecord.inference.sliding_window import (
    PredictFn,
    TileSettings,
    cord_probability_from_logits,
    labels_from_logits,
    sliding_window,
)
from mousecord.io.orientation import invert_transform, orientation_to, reorient
from mousecord.io.volume import Volume
from mousecord.models.bundle import ModelBundle
from mousecord.models.network import InPlaneNetwork, build_network, load_weights
from mousecord.models.registry import resolve_model
from mousecord.options import DEVICES

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class Prediction:
    """Result on the grid given: ``label_map`` (x, y, z) uint8; ``probabilities`` (k, x, y, z); on the cord
    ROI path, ``roi`` is the cord tube stage 1 found (in the network's axes of the preprocessed crop)."""

    label_map: np.ndarray
    probabilities: np.ndarray | None = None
    roi: CordRoi | None = None

    def __repr__(self) -> str:  # a notebook shows this: shapes and counts, not the arrays
        counts = np.bincount(self.label_map.ravel(), minlength=3)
        probabilities = "None" if self.probabilities is None else f"array{self.probabilities.shape}"
        return (
            f"Prediction(label_map=array{self.label_map.shape} with GM {counts[1]}, WM {counts[2]} voxels, "
            f"probabilities={probabilities}, roi={'found' if self.roi is not None else 'None'})"
        )


def _labels_and_softmax(logits: torch.Tensor, probabilities: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """(k, z, y, x) logits -> their uint8 label map and, if ``probabilities``, their float32 softmax."""
    return labels_from_logits(logits), torch.softmax(logits.float(), dim=0).numpy() if probabilities else None


class Predictor:
    """A model bundle loaded for inference: one network per fold, built and loaded once.

    Args:
        bundle: a loaded :class:`~mousecord.models.bundle.ModelBundle`, or what ``mousecord segment
            --model`` takes: an installed model's name ("default"), a bundle folder or an nnU-Net results
            folder (:func:`~mousecord.models.registry.resolve_model`).
        config: how to run it (default :class:`InferenceConfig`).

    Example:
        >>> predictor = Predictor("default", InferenceConfig(device="cpu"))  # doctest: +SKIP
        >>> prediction = predictor.predict_volume(load_nifti("cord.nii.gz").volume)  # doctest: +SKIP
    """

    def __init__(self, bundle: ModelBundle | str | Path, config: InferenceConfig | None = None) -> None:
        if not isinstance(bundle, ModelBundle):
            bundle = resolve_model(bundle)
        self.bundle = bundle
        self.config = config or InferenceConfig()
        openvino_asked = self.config.backend == "openvino" and self.config.device == "auto"
        self.device = resolve_device("cpu" if openvino_asked else self.config.device)
        #: "torch" or "openvino" ("auto" falls back to "torch" if OpenVINO cannot compile; see prepare).
        self.backend = resolve_backend(self.config.backend, self.device)
        #: "float32" or "int8" (the bundle's int8 networks, on OpenVINO); see :meth:`_resolve_precision`.
        self.precision = self._resolve_precision()
        self.networks = [self._load_fold(weights) for weights in bundle.fold_weights]
        self._runners: list[PredictFn] | None = None
        #: What the model asks of inference (its bundle's metadata["inference"]), parsed once.
        self.model_settings = ModelInferenceSettings.from_metadata(
            bundle.metadata.get("inference", {}), name=bundle.name
        )
        self.roi_settings = self.model_settings.cord_roi
        self.roi = self.model_settings.roi if self.config.roi == "auto" else self.config.roi
        self.keep_largest_component = (
            self.model_settings.keep_largest_component
            if self.config.keep_largest_component is None
            else self.config.keep_largest_component
        )
        self.mirroring = (
            self.model_settings.mirroring if self.config.mirroring is None else self.config.mirroring
        )
        #: The sliding window's settings: the model's patch and mirror axes, the configuration's step,
        #: blend, batch and precision.
        self.tiles = TileSettings(
            bundle.patch_size_vox,
            step_fraction=self.config.tile_step_fraction,
            blend=self.config.blend,
            mirror_axes=bundle.mirror_axes if self.mirroring else (),
            batch_size=self.batch_size_tiles,
            accumulate_dtype=getattr(torch, self.config.accumulate_dtype),
        )

    def _resolve_precision(self) -> str:
        """int8 where asked for or, with "auto", where the backend is OpenVINO and the bundle's int8 networks
        were quantised from its weights (int8 networks of other weights are ignored, with a warning)."""
        asked = self.config.precision
        if asked == "float32" or (asked == "auto" and not self.bundle.int8_networks):
            return "float32"
        matches = self.bundle.int8_matches_weights  # hashes the weights: once
        problem = None
        if not self.bundle.int8_networks:
            problem = "has no int8 networks"
        elif self.backend != "openvino":
            problem = f"runs int8 networks on the OpenVINO backend only, not {self.backend!r}"
        elif not matches:
            problem = "has int8 networks quantised from other weights than its own"
        if problem is None:
            return "int8"
        if asked == "int8":
            raise ConfigError(f"model {self.bundle.name} {problem}; use precision 'float32'")
        if self.backend == "openvino" and not matches:
            logger.warning("model %s %s; running in float32", self.bundle.name, problem)
        return "float32"

    def _load_fold(self, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
        network = build_network(
            self.bundle.architecture,
            input_channels=self.bundle.network_channels,
            num_classes=self.bundle.num_classes,
        )
        load_weights(network, weights)
        if self.bundle.in_plane:
            network = InPlaneNetwork(network)
        return network.to(self.device).eval()

    @property
    def batch_size_tiles(self) -> int:
        """Tiles per network call: the configuration's, else 16 slices in-plane and 1 tile in 3D."""
        if self.config.batch_size_tiles is not None:
            return self.config.batch_size_tiles
        return 16 if self.bundle.in_plane else 1

    def prepare(self) -> list[PredictFn]:
        """Make the network ready on the backend (compile for OpenVINO); returns one callable per fold.

        Called by the first prediction; call it earlier to keep the OpenVINO conversion (seconds) out of
        the first image's timing, or to see a compile failure before any output is written.

        Raises:
            ConfigError: backend "openvino" and OpenVINO cannot compile the network, or precision "int8"
                and it cannot compile the int8 networks. With backend "auto" the predictor falls back to
                torch instead, with a warning; with precision "auto", int8 falls back to float32.
        """
        if self._runners is not None:
            return self._runners
        if self.backend == "torch":
            self._runners = self.networks
            return self._runners
        example = smallest_input_shape(self.bundle.architecture)
        threads = self.config.threads or torch.get_num_threads()

        def compiled(networks) -> list[PredictFn]:
            return [
                OpenVinoNetwork(
                    network,
                    input_channels=self.bundle.network_channels,
                    example_shape_vox=example,
                    threads=threads,
                )
                for network in networks
            ]

        runners = None
        if self.precision == "int8":
            try:
                runners = compiled(self.bundle.int8_networks)
            except ConfigError as error:
                if self.config.precision == "int8":
                    raise ConfigError(f"model {self.bundle.name}: int8 networks: {error}") from error
                logger.warning("model %s: int8 networks: %s; running in float32", self.bundle.name, error)
                self.precision = "float32"
        if runners is None:
            try:
                runners = compiled(self.networks)
            except ConfigError as error:
                if self.config.backend != "auto":
                    raise ConfigError(f"model {self.bundle.name}: {error}") from error
                logger.warning("model %s: %s; running on torch instead", self.bundle.name, error)
                self.backend, self.precision = "torch", "float32"
                self._runners = self.networks
                return self._runners
        self._runners = runners
        self.networks = []  # the compiled models hold their own weights
        return self._runners

    # ----------------------------------------------------------------------------------------------- layers
    def preprocess(self, image: np.ndarray, voxel_size_mm) -> PreprocessedImage:
        """Canonical (x, y, z) or (c, x, y, z) image -> network space, as nnU-Net's ``run_case_npy``
        (see :func:`mousecord.inference.preprocessing.preprocess_image`, which training uses too)."""
        return prep.preprocess_image(
            image,
            voxel_size_mm,
            self.bundle.input_spec,
            max_network_voxels=self.config.max_network_voxels,
            max_memory_bytes=available_memory_bytes() if self.config.check_memory else None,
            max_upsampling=self.config.max_upsampling,
        )

    def predict_logits(
        self, data: np.ndarray | torch.Tensor, spacing_mm: tuple[float, float, float] | None = None
    ) -> torch.Tensor:
        """Sliding-window logits of a preprocessed (c, z, y, x) array: (k, z, y, x) float32.

        ``spacing_mm`` is the voxel size of ``data`` (:attr:`PreprocessedImage.network_spacing_mm`; default
        the model's), which the cord ROI path measures its distances in.

        Each fold runs its own sliding window and the folds' logits are averaged, in the accumulation
        precision, exactly as nnU-Net does (averaging per tile would round differently in float16).
        """
        return self.predict_logits_and_roi(data, spacing_mm)[0]

    def predict_logits_and_roi(
        self, data: np.ndarray | torch.Tensor, spacing_mm: tuple[float, float, float] | None = None
    ) -> tuple[torch.Tensor, CordRoi | None]:
        """:meth:`predict_logits` and the cord tube the cord ROI path found (None on the dense path)."""
        runners = self.prepare()
        if self.bundle.in_plane and spacing_mm is None and self.roi == "cord":
            raise ConfigError(
                f"model {self.bundle.name} is in-plane: give the data's spacing_mm (its slices keep the "
                "image's own thickness, which the cord ROI path measures distances in)"
            )
        image = self._network_input(data)
        if self.roi == "cord":
            spacing = spacing_mm or tuple(float(value) for value in self.bundle.spacing_mm)
            return self._predict_cord_logits(image, runners, spacing)
        total = None
        with self._threads(), torch.inference_mode():
            for network in runners:
                logits = sliding_window(
                    image,
                    network,
                    self.tiles,
                    num_classes=self.bundle.num_classes,
                    window_device=self.device,
                    output_device="cpu",
                    autocast=self.device.type == "cuda",
                    progress=self.config.progress,
                ).to(self.tiles.accumulate_dtype)
                total = logits if total is None else total.add_(logits)
            assert total is not None
            if len(runners) > 1:
                total /= len(runners)
        return total.float(), None

    def _network_input(self, data: np.ndarray | torch.Tensor) -> torch.Tensor:
        """A preprocessed (c, z, y, x) array as the networks take it: an in-plane model's slab channels."""
        if not self.bundle.in_plane:
            return torch.as_tensor(np.ascontiguousarray(data), dtype=torch.float32)
        array = data.cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)
        channels = prep.slab_channels(np.ascontiguousarray(array, dtype=np.float32), self.bundle.slab_slices)
        # the channels may be a view sharing memory (see slab_channels): tiles are cut from it, never
        # written; torch warns about any read-only array, which this one is by design
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
            return torch.as_tensor(channels)

    @staticmethod
    def _fold_average(runners: list[PredictFn]) -> PredictFn:
        """One tile function for the cord ROI path: per tile, the folds' logits averaged."""

        def predict_fn(tiles: torch.Tensor) -> torch.Tensor:
            total = runners[0](tiles).float()
            for network in runners[1:]:
                total = total + network(tiles).float()
            return total / len(runners)

        return predict_fn

    def _predict_cord_logits(
        self,
        image: torch.Tensor,
        runners: list[PredictFn],
        spacing_mm: tuple[float, float, float],
    ) -> tuple[torch.Tensor, CordRoi]:
        """The cord ROI path: per tile, the folds' logits are averaged; mirroring applies to stage 2."""
        with self._threads(), torch.inference_mode():
            logits, roi = predict_cord_logits(
                image,
                self._fold_average(runners),
                self.tiles,
                spacing_mm=spacing_mm,
                num_classes=self.bundle.num_classes,
                settings=self.roi_settings,
                window_device=self.device,
                autocast=self.device.type == "cuda",
                progress=self.config.progress,
            )
        return logits, roi

    def export(
        self,
        logits: torch.Tensor,
        preprocessed: PreprocessedImage,
        *,
        probabilities: bool = False,
        roi: CordRoi | None = None,
    ) -> Prediction:
        """Logits in network space -> canonical (x, y, z) label map (and (k, x, y, z) probabilities):
        :meth:`crop_logits`, its labels, then :meth:`paste`, which may ask those logits which cord component
        the network is surest of."""
        crop_logits = self.crop_logits(logits, preprocessed, roi=roi)
        label_crop, probability_crop = _labels_and_softmax(crop_logits, probabilities)
        return self.paste(
            label_crop,
            probability_crop,
            preprocessed.full_shape,
            preprocessed.bounding_box,
            cord_probability=lambda box: cord_probability_from_logits(crop_logits[(slice(None), *box)]),
        )

    def crop_labels(
        self,
        logits: torch.Tensor,
        preprocessed: PreprocessedImage,
        *,
        probabilities: bool = False,
        roi: CordRoi | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Logits -> the (z, y, x) uint8 label map of the crop (network axes, the crop's own grid) and, if
        asked, its (k, z, y, x) softmax (of :meth:`crop_logits`); no clean-up yet."""
        return _labels_and_softmax(self.crop_logits(logits, preprocessed, roi=roi), probabilities)

    def crop_logits(
        self, logits: torch.Tensor, preprocessed: PreprocessedImage, *, roi: CordRoi | None = None
    ) -> torch.Tensor:
        """Network-space logits -> (k, z, y, x) logits on the crop's own grid (network axes).

        An in-plane model whose settings ask for ``z_smoothing_mm`` has its logits smoothed along the
        slices first (a Gaussian of that standard deviation): each slice was predicted on its own, and
        the cord changes little over a few tenths of a millimetre, so this removes slice-to-slice
        jitter. On the cord ROI path (``roi``, the tube the logits came with) only the tube is smoothed,
        from the tube alone. The smoothing is done in place (``logits`` changes), so that no second copy
        of them is held.
        """
        smoothing_mm = self.model_settings.z_smoothing_mm
        if self.bundle.in_plane and smoothing_mm > 0 and logits.shape[1] > 1:
            smooth_logits_along_slices(
                logits.numpy(),
                smoothing_mm / float(preprocessed.network_spacing_mm[0]),
                predicted=None if roi is None else roi.mask(tuple(logits.shape[1:])),
            )
        if preprocessed.resampled:
            logits_array = prep.resample(
                logits.numpy(),
                preprocessed.cropped_shape,
                spacing_mm=preprocessed.network_spacing_mm,
                new_spacing_mm=preprocessed.spacing_mm,
                order=1,
            )
            logits = torch.from_numpy(logits_array)
        return logits

    def paste(
        self,
        label_crop: np.ndarray,
        probability_crop: np.ndarray | None,
        full_shape: tuple[int, int, int],
        bounding_box: tuple[slice, slice, slice],
        *,
        cord_probability: Callable[[tuple[slice, ...]], np.ndarray] | None = None,
    ) -> Prediction:
        """The crop's labels (and probabilities) -> the whole canonical (x, y, z) grid: the model's clean-ups
        (largest component, or the surest of the large ones given ``cord_probability``, see
        :func:`~mousecord.inference.postprocessing.keep_largest_component`; shortest cord), pasted into
        background, axes restored."""
        if self.keep_largest_component:
            label_crop = keep_largest_component(label_crop, cord_probability=cord_probability)
            if self.model_settings.min_cord_slices:
                label_crop = drop_short_cord(
                    label_crop, min_slices=self.model_settings.min_cord_slices, axis=0
                )
        label_map = np.zeros(full_shape, dtype=np.uint8)
        label_map[bounding_box] = label_crop
        label_map = prep.from_network_axes(label_map, self.bundle.transpose_forward)
        result_probabilities = None
        if probability_crop is not None:
            full = np.zeros((probability_crop.shape[0], *full_shape), dtype=np.float32)
            full[0] = 1.0  # background outside the crop, as nnU-Net's revert_cropping_on_probabilities
            full[(slice(None), *bounding_box)] = probability_crop
            result_probabilities = prep.from_network_axes(full, self.bundle.transpose_forward)
        return Prediction(np.ascontiguousarray(label_map), result_probabilities)

    # ---------------------------------------------------------------------------------------------- whole
    def predict_array(self, image: np.ndarray, voxel_size_mm, *, probabilities: bool = False) -> Prediction:
        """Segment a canonical (x, y, z) array already in the model's orientation.

        An in-plane model segments an image that would not fit in the memory available slab by slab
        (:mod:`mousecord.inference.slabs`); the prediction's ``roi`` is then None.
        """
        slab_depth = self._slab_depth(image, voxel_size_mm, probabilities)
        if slab_depth is not None:
            return predict_in_slabs(self, image, voxel_size_mm, slab_depth, probabilities=probabilities)
        preprocessed = self.preprocess(image, voxel_size_mm)
        logits, roi = self.predict_logits_and_roi(preprocessed.data, preprocessed.network_spacing_mm)
        return replace(self.export(logits, preprocessed, probabilities=probabilities, roi=roi), roi=roi)

    def predict_volume(
        self,
        volume: Volume | nib.spatialimages.SpatialImage,
        *,
        probabilities: bool = False,
        cord_axis: int | None = None,
    ) -> Prediction:
        """Segment a :class:`Volume` of any orientation; results come back on the volume's own grid.

        Args:
            volume: a :class:`Volume`, or a nibabel image in memory (:meth:`Volume.from_image`; a 2D one
                comes back one slice deep). For a file, :func:`mousecord.segment` writes SCT's outputs
                and :func:`mousecord.load_nifti` reads it with its header checked.
            cord_axis: the volume's array axis that runs along the cord, whatever its header says (see
                :meth:`~mousecord.io.nifti.LoadedImage.cord_axis`); None: its header's
                superior-inferior axis, as nnU-Net reads an image.

        Raises:
            TypeError: ``volume`` is neither (a numpy array: :meth:`predict_array` takes it).
        """
        if not isinstance(volume, Volume):
            if isinstance(volume, np.ndarray):
                raise TypeError(
                    "predict_volume takes a Volume or a nibabel image; an array goes to "
                    "predict_array(array, voxel_size_mm)"
                )
            volume = Volume.from_image(volume)
        transform, oriented = self._oriented(volume, cord_axis)
        prediction = self.predict_array(oriented.data, oriented.voxel_size_mm, probabilities=probabilities)
        back = invert_transform(transform)
        import nibabel.orientations as nio

        label_map = np.ascontiguousarray(nio.apply_orientation(prediction.label_map, back))
        result_probabilities = None
        if prediction.probabilities is not None:
            moved = np.moveaxis(prediction.probabilities, 0, -1)
            result_probabilities = np.moveaxis(nio.apply_orientation(moved, back), -1, 0)
        return replace(prediction, label_map=label_map, probabilities=result_probabilities)

    def cord_coverage(self, volume: Volume, cord_axis: int | None = None) -> CordCoverage | None:
        """How far stage 1 finds one continuous cord through ``volume`` across ``cord_axis``.

        Its share of slabs is about 1 along a cord, low across one, whose longitudinal sections look
        cord-like in a few slabs at most (the cord is 2-3 mm wide, the default model's slabs half a
        millimetre apart). Costs stage 1 alone (0.2-2.7 s per axis for the default model on the volumes of
        ``benchmarks/cord_axis.py``, 2 cores); the pipeline asks it where a file's grid and header disagree
        on the cord's axis (``SegmentOptions.cord_axis``).

        Args:
            cord_axis: as in :meth:`predict_volume`.

        Returns:
            The coverage; None for an image that would be segmented slab by slab to fit in memory (too
            large to search whole).

        Raises:
            ConfigError: the model has no cord search (``roi`` "full": an nnU-Net folder, ``--roi full``).
            ImageFormatError: as :meth:`preprocess`.
        """
        if self.roi != "cord":
            raise ConfigError(f"model {self.bundle.name} runs densely (roi 'full'): it has no cord search")
        oriented = self._oriented(volume, cord_axis)[1]
        if self._slab_depth(oriented.data, oriented.voxel_size_mm, False) is not None:
            return None
        preprocessed = self.preprocess(oriented.data, oriented.voxel_size_mm)
        with self._threads(), torch.inference_mode():
            return locate_cord(
                self._network_input(preprocessed.data),
                self._fold_average(self.prepare()),
                self.tiles,
                spacing_mm=preprocessed.network_spacing_mm,
                settings=self.roi_settings,
                window_device=self.device,
            )

    def _oriented(self, volume: Volume, cord_axis: int | None) -> tuple[np.ndarray, Volume]:
        """The orientation transform to the model's axes (``cord_axis`` as in :meth:`predict_volume`) and
        ``volume`` in them."""
        transform = orientation_to(volume.affine, tuple(self.bundle.orientation), cord_axis=cord_axis)
        return transform, reorient(volume, transform)

    def _slab_depth(self, image: np.ndarray, voxel_size_mm, probabilities: bool) -> int | None:
        """Slices per slab where an in-plane model's image would not fit in memory whole; None where it
        fits, where the whole-image path must refuse it (more voxels than ``max_network_voxels``: most
        likely a wrong header voxel size), where even one slice per slab would not fit (the whole-image
        path then refuses with the estimate), or where normalisation needs the whole image's mask."""
        spec = self.bundle.input_spec
        if not (self.bundle.in_plane and self.config.check_memory):
            return None
        if any(entry.use_mask for entry in spec.normalization):
            return None
        available = available_memory_bytes()
        if available is None:
            return None
        shape, spacing = network_geometry(self, np.shape(image), voxel_size_mm)
        if estimate_peak_bytes(math.prod(prep.network_grid(shape, spacing, spec)[1])) <= available:
            return None
        crop = nonzero_crop_shape(self, image, voxel_size_mm)  # what the whole-image path would hold
        _, crop_grid = prep.network_grid(crop, spacing, spec)
        per_slice = math.prod(crop_grid[1:])
        network_voxels = crop_grid[0] * per_slice
        too_many = network_voxels > self.config.max_network_voxels
        if too_many or estimate_peak_bytes(network_voxels) <= available:
            return None
        # whole-image arrays alongside the slabs: the reference copy (its peak), the label map's crop and grid
        resident = math.prod(shape) * (
            4 * spec.input_channels + 2 + (8 * self.bundle.num_classes if probabilities else 0)
        )
        slices = slab_slices_that_fit(
            available,
            voxels_per_slice=per_slice,
            resident_bytes=resident,
            context_slices=context_slices(self, spacing[0]),
        )
        return int(slices) if slices >= 1 else None

    def resolved_settings(self) -> dict:
        """The inference settings as given and as this predictor resolved them (for sidecars)."""
        return {
            **self.config.to_dict(),
            "backend_resolved": self.backend,
            "roi_resolved": self.roi,
            "keep_largest_component_resolved": self.keep_largest_component,
            "mirroring_resolved": self.mirroring,
            "precision_resolved": self.precision,
            **({"cord_roi": self.roi_settings.to_dict()} if self.roi == "cord" else {}),
        }

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if self.config.threads is None:
            yield
            return
        previous = torch.get_num_threads()
        torch.set_num_threads(self.config.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def resolve_device(device: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; ``"cuda"`` without CUDA is a :class:`ConfigError`."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use device 'cpu'")
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"device must be one of {DEVICES}, got {device!r}")
    return torch.device(device)


__all__ = ["InferenceConfig", "Prediction", "Predictor", "PreprocessedImage", "resolve_device"]
