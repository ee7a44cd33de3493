"""Shared fixtures of the Python package's tests: the repository's files and the command line
built by `cargo test` (target/debug/sanity, or $SANITY_BIN), which the package must agree with
byte for byte."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
ONNX = ROOT / "crates/sanity-model/tests/fixtures/onnx"
CAPTUM = ROOT / "crates/sanity-attribution/tests/fixtures/graph"

#: The embedded quick experiment, shrunk to a second: 4 batches of 2 images.
TINY_OVERRIDES = {
    "training.epochs": 1,
    "data.n_train": 120,
    "data.n_test": 40,
    "attribution.n_images": 8,
    "attribution.batch_size": 2,
    "report.examples": 1,
}


def tiny_toml() -> str:
    """experiments/quick.toml with the tiny overrides written into it."""
    text = (ROOT / "experiments/quick.toml").read_text()
    text = text.replace("n_train = 1200", "n_train = 120").replace("n_test = 300", "n_test = 40")
    text = text.replace("epochs = 12", "epochs = 1").replace("n_images = 32", "n_images = 8\nbatch_size = 2")
    return text + "\n[report]\nexamples = 1\n"


@pytest.fixture(scope="session")
def cli() -> Path:
    """The `sanity` binary the package is compared with."""
    path = Path(os.environ.get("SANITY_BIN", ROOT / "target/debug/sanity"))
    assert path.exists(), f"{path}: build it first (cargo build -p sanity-cli) or set SANITY_BIN"
    return path


def run_cli(cli: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The command line, run to the end; its output kept."""
    return subprocess.run([str(cli), *args], cwd=cwd, capture_output=True, text=True)


@pytest.fixture(scope="session")
def tiny_resnet():
    """The tiny ResNet's ONNX export, two input images and Captum's targets."""
    x = np.load(ONNX / "tiny-resnet-input.npy")
    targets = np.load(CAPTUM / "targets.npy").astype(np.int64)
    return ONNX / "tiny-resnet-ts.onnx", x, targets


def with_value(x: np.ndarray, index: tuple, value: float) -> np.ndarray:
    """A copy of `x` with one value changed (a NaN, an infinity)."""
    x = x.copy()
    x[index] = value
    return x


@pytest.fixture
def ctrl_c():
    """Python's own Ctrl-C handler, as a terminal or a notebook has it: a process started in the
    background of a non-interactive shell (as CI may be) ignores SIGINT from the start, and
    Python then keeps ignoring it."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)
