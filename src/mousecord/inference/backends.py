"""Where the network runs: PyTorch on any device, or OpenVINO on a CPU.

OpenVINO's CPU plugin keeps the whole 3D U-Net in oneDNN's blocked layouts and fuses instance normalisation
with the activation; PyTorch's eager CPU kernels convert layouts at every layer. On the same two threads it
runs the nnU-Net reference network 1.8-2.2x and mousecord's default network 2x faster per tile, its outputs
within 1e-4 relative of PyTorch's (``benchmarks/segment.py --backend``). ONNX Runtime (0.9-1.5x depending on
the tile), TorchScript freezing, channels-last and ``torch.compile`` were measured too and gained far less.

``backend="auto"`` takes OpenVINO on an x86-64 CPU (where it was measured) when it is installed, PyTorch
otherwise; ``"torch"`` reproduces nnU-Net's own predictor bit for bit.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.util
import logging
import platform
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from mousecord.errors import ConfigError
from mousecord.models.bundle import Int8Network
from mousecord.options import BACKENDS

logger = logging.getLogger(__name__)


def openvino_available() -> bool:
    return importlib.util.find_spec("openvino") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """``"auto"`` -> ``"openvino"`` on an x86-64 CPU when OpenVINO is installed, else ``"torch"``.

    Raises:
        ConfigError: an unknown backend, or OpenVINO asked for on CUDA or without the package.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        x86 = platform.machine().lower() in ("x86_64", "amd64")
        return "openvino" if device.type == "cpu" and x86 and openvino_available() else "torch"
    if backend == "openvino":
        if device.type != "cpu":
            raise ConfigError(
                f"the openvino backend runs on the CPU, not on {device.type}; use backend 'torch'"
            )
        if not openvino_available():
            raise ConfigError("the openvino backend needs the openvino package (pip install openvino)")
    return backend


@functools.cache
def import_openvino() -> Any:
    """Import OpenVINO with its usage telemetry off.

    ``import openvino`` sends a usage event to Intel's analytics and writes ``~/intel/`` unless the user
    opted out beforehand; mousecord never contacts the network. With ``openvino_telemetry`` hidden during
    the import, OpenVINO's converter binds its own no-op telemetry stub for the rest of the process. Where
    something else imported OpenVINO first, its telemetry is as that import left it (a warning says so).
    """
    if "openvino" in sys.modules:
        logger.warning("OpenVINO was imported before mousecord; its usage telemetry follows its own settings")
        return sys.modules["openvino"]
    missing = object()
    previous = sys.modules.get("openvino_telemetry", missing)
    sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # makes its import fail
    try:
        import openvino
    finally:
        if previous is missing:
            del sys.modules["openvino_telemetry"]
        else:
            sys.modules["openvino_telemetry"] = previous  # type: ignore[assignment]
    return openvino


def smallest_input_shape(architecture: dict[str, Any]) -> tuple[int, ...]:
    """The smallest (z, y, x) that every stage of an nnU-Net-style U-Net halves evenly, doubled."""
    strides = architecture.get("arch_kwargs", {}).get("strides", ())
    shape = np.full(3, 2, dtype=int)
    for stride in strides:
        stride = np.atleast_1d(np.asarray(stride, dtype=int))
        if stride.size == 2:  # a 2D network, run on one-slice-deep tiles (see InPlaneNetwork)
            stride = np.concatenate([[1], stride])
        shape *= np.broadcast_to(stride, (3,))
    if len(strides) and np.atleast_1d(strides[0]).size == 2:
        shape[0] = 1
    return tuple(int(size) for size in shape)


class OpenVinoNetwork:
    """A PyTorch network compiled by OpenVINO for the CPU, called like the network on (b, c, z, y, x) tiles;
    or, given an :class:`~mousecord.models.bundle.Int8Network`, that int8 IR compiled instead.

    The network is traced once on a small input (tracing on a full tile takes a minute for the reference
    network) with batch and spatial sizes left dynamic, so tiles and stage-1 slabs of any shape run on the
    one compiled model. Precision is forced to float32: OpenVINO would pick bfloat16 on CPUs that have it.
    Threads are not pinned to cores, so that several mousecord processes on one node (a job array) do not
    all pile onto the same cores.

    Raises:
        ConfigError: OpenVINO cannot be imported or cannot convert or compile the network.
    """

    def __init__(
        self,
        network: torch.nn.Module | Int8Network,
        *,
        input_channels: int,
        example_shape_vox: Sequence[int],
        threads: int,
    ) -> None:
        try:
            openvino = import_openvino()
            if isinstance(network, Int8Network):
                model = openvino.Core().read_model(
                    network.xml.decode(), openvino.Tensor(np.frombuffer(network.weights, dtype=np.uint8))
                )
            else:
                model = convert_network(network, input_channels, example_shape_vox)
            self._request = _compile(model, threads)
        except Exception as error:  # OpenVINO raises plain RuntimeErrors from C++, or ImportError
            raise ConfigError(
                f"OpenVINO could not run this network ({type(error).__name__}: "
                f"{(str(error).splitlines() or [''])[0]}); use backend 'torch'"
            ) from error

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(tiles.detach().to("cpu", torch.float32).numpy())
        # Copies both ways (milliseconds per tile): the request then never points at memory that Python frees,
        # and callers may weight the result in place and keep it across the next call.
        outputs = self._request.infer({0: array}, share_inputs=False, share_outputs=False)
        return torch.from_numpy(outputs[0])


def convert_network(network: torch.nn.Module, input_channels: int, example_shape_vox: Sequence[int]) -> Any:
    """An OpenVINO model of ``network`` on (b, c, z, y, x) tiles, batch and spatial sizes dynamic (what
    :class:`OpenVinoNetwork` compiles, and what an int8 network is quantised from)."""
    openvino = import_openvino()
    example = torch.zeros((1, input_channels, *example_shape_vox))
    # TorchScript tracing, as OpenVINO's own PyTorch frontend does: converting through torch.export took
    # 5x longer. Tracing without torch's re-run check (what convert_model would do) halves the conversion.
    # Its warnings (shape checks become constants: the sizes are left dynamic below; TorchScript is
    # deprecated) are not the user's concern.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        traced = torch.jit.trace(network.eval(), example, check_trace=False)
        return openvino.convert_model(traced, example_input=example, input=[(-1, input_channels, -1, -1, -1)])


def _compile(model: Any, threads: int) -> Any:
    openvino = import_openvino()
    with caller_signal_stack_kept():
        compiled = openvino.Core().compile_model(
            model,
            "CPU",
            {
                "INFERENCE_NUM_THREADS": int(threads),
                "PERFORMANCE_HINT": "LATENCY",
                "INFERENCE_PRECISION_HINT": "f32",
                "ENABLE_CPU_PINNING": False,
            },
        )
    return compiled.create_infer_request()


class _SignalStack(ctypes.Structure):
    """``stack_t`` of ``sigaltstack(2)`` (Linux)."""

    _fields_ = (("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t))


@contextlib.contextmanager
def caller_signal_stack_kept() -> Iterator[None]:
    """Put back the calling thread's alternate signal stack after the block (Linux; elsewhere a no-op).

    OpenVINO's CPU plugin installs an alternate signal stack of its own when it compiles a model, and puts
    back the one it replaced when that model is destroyed. Two models destroyed in the order they were made
    leave a freed stack installed, and the next Python signal handler to run (SIGCHLD when a DataLoader
    worker or a subprocess exits, Ctrl-C) kills the process with SIGSEGV. Kept from the caller, every
    model replaces, and later puts back, the caller's own stack.
    """
    if sys.platform != "linux":
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    saved = _SignalStack()
    if libc.sigaltstack(None, ctypes.byref(saved)) != 0:
        yield
        return
    try:
        yield
    finally:
        if libc.sigaltstack(ctypes.byref(saved), None) != 0:
            logger.warning(
                "could not restore the signal stack after OpenVINO compiled a model (errno %d); a later "
                "signal may crash this process: use backend 'torch' if it does",
                ctypes.get_errno(),
            )


__all__ = [
    "OpenVinoNetwork",
    "convert_network",
    "import_openvino",
    "openvino_available",
    "resolve_backend",
    "smallest_input_shape",
]
