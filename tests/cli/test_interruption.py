"""``mousecord segment`` and ``mousecord train`` stopped by SIGINT, SIGTERM or SIGKILL at seeded moments.

Each command runs in a subprocess (``python -m mousecord``) on tiny inputs: synthetic phantoms and a tiny
model bundle for segment, a three-subject dataset and a tiny network for train. A signal is sent at a
seeded moment between two progress lines of an uninterrupted run (from the command taking control, i.e.
installing its SIGTERM handler, to the first image segmented or epoch done, or from one to the next),
counted in the command's CPU time. Then: every output left either is complete and loads, or is absent;
SIGINT and SIGTERM exit with 130 and 143 and a message; the same command run again (``train --resume``)
succeeds, gives what the uninterrupted run gave (the same label maps; the same per-epoch history on CPU)
and leaves no temporary file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from mousecord.io.atomic import STALE_TEMPORARY_AGE_S
from mousecord.models import load_bundle
from mousecord.training.loop import load_checkpoint
from tests.inference.helpers import tiny_bundle_folder
from tests.training.synthetic import save, synthetic_case, write_bids_dataset

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/status").exists(), reason="readiness is read from /proc/<pid>/status (Linux)"
)

#: Options that keep segment small and deterministic.
SEGMENT_OPTIONS = ["--threads", "1", "--backend", "torch", "--device", "cpu"]
#: The progress lines each command logs: one per segmented image, one per epoch.
SEGMENT_PROGRESS = re.compile(r": segmented in [\d.]+ s$")
TRAIN_PROGRESS = re.compile(r"^epoch \d+/\d+: loss")
#: What atomic_output names its temporary files (mousecord.io.atomic).
TEMPORARY = re.compile(r"\..+\.[0-9a-f]{8}\.tmp.*")
#: The folder a model bundle is written into before it is renamed (mousecord.models.bundle).
STAGING = re.compile(r"\..+\.staging")
#: Wall-clock seconds any one command may take (a busy 2-core machine is slow to import torch).
COMMAND_TIMEOUT_S = 1200
SUFFIXES = ("_seg.json", "_seg.nii.gz", "_GM_seg.nii.gz", "_WM_seg.nii.gz")
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143, signal.SIGKILL: -signal.SIGKILL}
MESSAGES = {
    signal.SIGINT: "mousecord: error: interrupted",
    signal.SIGTERM: "mousecord: error: interrupted (SIGTERM)",
}
#: A tiny 3D network that trains a few epochs in seconds (as in tests/training/test_train.py).
TRAIN_CONFIG = {
    "features_per_stage": [4, 8],
    "strides": [[1, 1, 1], [2, 2, 2]],
    "patch_size_vox": [8, 16, 16],
    "epochs": 4,
    "iterations_per_epoch": 6,
    "batch_size": 1,
    "seed": 3,
}


@dataclass
class Run:
    """A finished command: exit status, stderr, the CPU seconds at which each progress line appeared
    (counted from the moment it took control), and whether the signal stopped it (a command that
    finished first exits with 0)."""

    returncode: int
    stderr: str
    marks: list[float]
    signalled: bool


@dataclass(frozen=True)
class Moment:
    """When to send a signal: ``cpu_s`` seconds of the command's CPU time after its ``after``-th progress
    line (0: after it took control)."""

    after: int
    cpu_s: float


def _state(pid: int) -> tuple[bool, float]:
    """Whether ``python -m mousecord`` catches SIGTERM yet (its main installs the handler before running a
    command), and the CPU seconds it has used. An exited process counts as ready."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return True, 0.0
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime
    if command[1:3] != [b"-m", b"mousecord"]:
        return False, cpu  # still the test's own process, between fork and exec
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1), cpu


def _run(
    arguments: list[str],
    log: Path,
    progress: re.Pattern,
    *,
    signum: int | None = None,
    moment: Moment = Moment(0, 0.0),
) -> Run:
    """Run ``python -m mousecord ARGUMENTS``; with ``signum``, send it at ``moment`` (unless the command
    has exited by then). Lines of its stderr matching ``progress`` mark its progress.

    Moments count in the command's CPU time from a point of its progress, not in wall time, so that they
    fall at the same point of the work however busy the machine is.
    """
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "mousecord", *arguments],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            # a background job may inherit SIGINT ignored, and Python then keeps it ignored
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            deadline = time.monotonic() + COMMAND_TIMEOUT_S
            ready, start = _state(process.pid)
            while not ready and time.monotonic() < deadline:
                time.sleep(0.005)
                ready, start = _state(process.pid)
            used, marks, sent = 0.0, [], False
            while process.poll() is None and time.monotonic() < deadline:
                used = max(used, _state(process.pid)[1] - start)
                lines = log.read_text().splitlines(keepends=True)
                done = sum(1 for line in lines if line.endswith("\n") and progress.search(line))
                marks += [used] * (done - len(marks))
                reached = moment.after <= len(marks)
                anchor = marks[moment.after - 1] if moment.after and reached else 0.0
                if signum is not None and not sent and reached and used - anchor >= moment.cpu_s:
                    process.send_signal(signum)
                    sent = True
                time.sleep(0.005)
            process.wait(timeout=max(deadline - time.monotonic(), 1))
        finally:
            process.kill()
            process.wait()
    text = log.read_text()
    marks += [used] * (sum(1 for line in text.splitlines() if progress.search(line)) - len(marks))
    return Run(process.returncode, text, marks, sent and process.returncode != 0)


def _moments(seed: int, count: int, reference: Run) -> list[Moment]:
    """Seeded moments inside the stretches between an uninterrupted run's progress lines (from taking
    control to the first line, then from each line to the next; never after the last one, where only the
    exit is left)."""
    rng = np.random.default_rng(seed)
    starts = [0.0, *reference.marks]
    moments = []
    for _ in range(count):
        after = int(rng.integers(0, len(reference.marks)))
        moments.append(Moment(after, float(rng.uniform(0.05, 0.95)) * (starts[after + 1] - starts[after])))
    return moments


def _hidden(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob(".*"))


def _killed_leftovers(folder: Path) -> list[Path]:
    """What a SIGKILL may leave: temporary files, which this makes as old as the next write's clean-up
    requires (the later run is taken to come after :data:`STALE_TEMPORARY_AGE_S`), and a model bundle's
    staging folder (the next export starts by removing it). Anything else hidden is an error."""
    leftovers = [path for path in _hidden(folder) if not STAGING.fullmatch(path.name) or not path.is_dir()]
    assert all(TEMPORARY.fullmatch(path.name) and path.is_file() for path in leftovers), leftovers
    old = time.time() - 2 * STALE_TEMPORARY_AGE_S
    for path in leftovers:
        os.utime(path, (old, old))
    return leftovers


def _leftovers(folder: Path, signum: int) -> None:
    """What a stopped run left hidden: nothing after SIGINT and SIGTERM (see :func:`_killed_leftovers`)."""
    if signum == signal.SIGKILL:
        _killed_leftovers(folder)
    else:
        assert not _hidden(folder), _hidden(folder)


def _assert_stopped_by(run: Run, signum: int) -> None:
    if not run.signalled:  # the command finished first: it must have succeeded
        assert run.returncode == 0, run.stderr
        return
    assert run.returncode == EXIT_CODES[signum], run.stderr
    if signum in MESSAGES:
        assert run.stderr.strip().splitlines()[-1] == MESSAGES[signum], run.stderr
        assert "Traceback" not in run.stderr


# --- segment ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle_folder(tmp_path_factory.mktemp("models") / "tiny", spacing_mm=(0.05, 0.05, 0.05))


def _phantoms(folder: Path, count: int, shape: tuple[int, int, int]) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    for index in range(count):
        save(synthetic_case(shape, rng=rng)[0], folder / f"case{index}.nii.gz")
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _segment_arguments(inputs: Path, output: Path, model: Path, extra: list[str]) -> list[str]:
    return ["segment", "-i", str(inputs), "-o", str(output), "--model", str(model), *SEGMENT_OPTIONS, *extra]


def _segment_outputs(folder: Path) -> dict[str, np.ndarray | dict]:
    """Every visible output, read in full (a partial file fails here): image data, or the JSON sidecar."""
    outputs: dict[str, np.ndarray | dict] = {}
    for path in sorted(folder.glob("[!.]*")):
        if path.name.endswith(".nii.gz"):
            outputs[path.name] = np.asanyarray(nib.load(path).dataobj)
        else:
            assert path.suffix == ".json", path
            outputs[path.name] = json.loads(path.read_text())
    return outputs


def _interrupt_segment(
    tmp_path: Path, model: Path, signals: list[int], *, seed: int, cases: int, shape: tuple, extra: list[str]
) -> None:
    inputs = tmp_path / "in"
    originals = _phantoms(inputs, cases, shape)
    reference_folder = tmp_path / "reference"
    arguments = _segment_arguments(inputs, reference_folder, model, extra)
    reference = _run(arguments, tmp_path / "reference.log", SEGMENT_PROGRESS)
    assert reference.returncode == 0, reference.stderr
    assert len(reference.marks) == cases, reference.stderr
    expected = {
        name: value for name, value in _segment_outputs(reference_folder).items() if name.endswith(".gz")
    }
    assert len(expected) == 3 * cases

    interrupted = 0
    for index, (signum, moment) in enumerate(
        zip(signals, _moments(seed, len(signals), reference), strict=True)
    ):
        output = tmp_path / f"run{index}"
        arguments = _segment_arguments(inputs, output, model, extra)
        run = _run(arguments, tmp_path / f"run{index}.log", SEGMENT_PROGRESS, signum=signum, moment=moment)
        _assert_stopped_by(run, signum)
        interrupted += run.signalled
        if output.exists():
            left = _segment_outputs(output)  # what is there is complete
            for name, data in left.items():
                if name in expected:
                    np.testing.assert_array_equal(data, expected[name])
            _leftovers(output, signum)
            if signum != signal.SIGKILL:  # finished cases complete, the one in progress removed whole
                done = {name.removesuffix("_seg.json") for name in left if name.endswith(".json")}
                assert sorted(left) == sorted(f"{case}{suffix}" for case in done for suffix in SUFFIXES)

        again = _run(arguments, tmp_path / f"again{index}.log", SEGMENT_PROGRESS)
        assert again.returncode == 0, again.stderr
        final = _segment_outputs(output)
        assert sorted(name for name in final if name.endswith(".gz")) == sorted(expected)
        for name, data in expected.items():
            np.testing.assert_array_equal(final[name], data)
        assert not _hidden(output)
        assert {path.name: path.read_bytes() for path in sorted(inputs.iterdir())} == originals
    assert interrupted, "every run finished before its signal"


def test_segment_killed_at_a_random_moment_then_run_again(model_folder: Path, tmp_path: Path) -> None:
    _interrupt_segment(
        tmp_path, model_folder, [signal.SIGKILL], seed=0, cases=2, shape=(32, 32, 24), extra=[]
    )


@pytest.mark.slow
def test_segment_interrupted_by_each_signal_at_random_moments(model_folder: Path, tmp_path: Path) -> None:
    signals = [signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGKILL]
    _interrupt_segment(tmp_path, model_folder, signals, seed=1, cases=3, shape=(48, 48, 40), extra=["--tta"])


# --- train -----------------------------------------------------------------------------------------------


def _train_files_are_complete(output: Path) -> int:
    """Every file a stopped training run left reads in full; returns the epoch its last checkpoint ends."""
    epoch = 0
    for path in sorted(output.rglob("*")):
        parts = path.relative_to(output).parts
        if path.is_dir() or parts[0] == "model" or any(part.startswith(".") for part in parts):
            continue  # the bundle is read whole below; hidden leftovers are checked apart
        if path.suffix == ".pt":
            checkpoint = load_checkpoint(path)
            if path.name == "checkpoint_last.pt":
                epoch = int(checkpoint["epoch"])
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".png":
            content = path.read_bytes()
            assert content.startswith(b"\x89PNG\r\n\x1a\n") and content.endswith(b"IEND\xaeB`\x82"), path
        else:
            assert path.suffix in (".csv", ".md"), path
    if (output / "model").exists():
        load_bundle(output / "model")
    return epoch


def _history(output: Path) -> dict[str, list]:
    history = json.loads((output / "fold_0" / "history.json").read_text())
    history.pop("seconds")  # wall time, the only thing that may differ
    return history


@pytest.mark.slow
def test_train_interrupted_by_each_signal_then_resumed_gives_the_same_history(tmp_path: Path) -> None:
    dataset = tmp_path / "dataset"
    write_bids_dataset(dataset, n_subjects=3, shape=(24, 24, 20), annotated_slices=3, seed=1)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(TRAIN_CONFIG))

    def arguments(output: Path, *extra: str) -> list[str]:
        return ["train", str(dataset), "-o", str(output), "--config", str(config), "--device", "cpu", *extra]

    reference = _run(arguments(tmp_path / "reference"), tmp_path / "reference.log", TRAIN_PROGRESS)
    assert reference.returncode == 0, reference.stderr
    expected = _history(tmp_path / "reference")
    assert len(expected["train_loss"]) == TRAIN_CONFIG["epochs"]

    signals = [signal.SIGINT, signal.SIGKILL, signal.SIGTERM, signal.SIGKILL]
    moments = _moments(2, len(signals), reference)
    interrupted = resumed_after_kill = 0
    for index, (signum, moment) in enumerate(zip(signals, moments, strict=True)):
        output = tmp_path / f"run{index}"
        run = _run(
            arguments(output),
            tmp_path / f"run{index}.log",
            TRAIN_PROGRESS,
            signum=signum,
            moment=moment,
        )
        _assert_stopped_by(run, signum)
        interrupted += run.signalled
        epoch = _train_files_are_complete(output) if output.exists() else 0
        if output.exists():
            _leftovers(output, signum)

        resumed = _run(arguments(output, "--resume"), tmp_path / f"resumed{index}.log", TRAIN_PROGRESS)
        assert resumed.returncode == 0, resumed.stderr
        if epoch:  # it went on from the last checkpoint, not from scratch
            assert f"resuming {output / 'fold_0'} at epoch {epoch}" in resumed.stderr, resumed.stderr
            resumed_after_kill += signum == signal.SIGKILL and epoch < TRAIN_CONFIG["epochs"]
        assert _history(output) == expected
        _train_files_are_complete(output)
        assert not _hidden(output)
        shutil.rmtree(output)
    assert interrupted, "every run finished before its signal"
    assert resumed_after_kill, "no SIGKILL came between two epochs' checkpoints"
