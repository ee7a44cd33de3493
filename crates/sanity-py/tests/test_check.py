"""`sanity.check`: the one-call sanity check of a model on arrays in memory is a run of the
config it writes (the command line gives the same bytes from that config), resumable after
Ctrl-C; bad arrays raise `BadInput`."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

import sanity
from conftest import ONNX, run_cli, tiny_toml, with_value
from test_run import VERDICTS

METHODS = ["gradient", {"method": "gradcam", "layer": "layer2"}]


def arrays(n: int = 8, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((n, 3, 16, 16)).astype(np.float32), rng.integers(0, 4, n)


def test_check_is_a_run_of_the_config_it_writes(cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    x, y = arrays()
    result = sanity.check(ONNX / "tiny-resnet-ts.onnx", x, y, methods=METHODS, batch_size=2, progress=False)
    assert result.dir.parent == Path("results/check")
    summary = result.summary
    cascade = summary[summary.test == "cascading"]
    assert set(cascade.method) == {"gradient", "gradcam"}
    assert (cascade[cascade.method == "gradient"].n == 8 * 3).all()  # 8 images, 3 draws per stage
    # One verdict per method at the cascade's last stage: 2 methods, the preset's one metric.
    assert set(result.verdicts.verdict) <= VERDICTS and len(result.verdicts) == 2
    # The preset's comparison: |map| scaled by its maximum, Spearman.
    assert set(summary.postprocess) == {"abs+normalize_max_abs"}
    done = run_cli(cli, "run", str(result.dir / "config.resolved.toml"), "--out", "cli", "--threads", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ("scores.csv", "summary.csv", "verdicts.csv"):
        assert (tmp_path / "cli" / name).read_bytes() == (result.dir / name).read_bytes(), name


def test_safetensors_weights_with_their_preset(tmp_path):
    trained = sanity.run(tiny_toml(), out=tmp_path / "trained", model_cache=False, progress=False)
    rng = np.random.default_rng(1)
    x, y = rng.random((4, 1, 64, 64)).astype(np.float32), np.array([0, 1, 0, 1])
    result = sanity.check(
        trained.dir / "model.safetensors", x, y, arch="phantom-cnn", methods=["gradient"], out=tmp_path / "check",
        progress=False, class_names=["normal", "effusion"],
    )
    assert set(result.summary[result.summary.test == "cascading"].stage) >= {"conv1", "logit"}
    maps = sanity.attribute(trained.dir / "model.safetensors", x, "gradient", arch="phantom-cnn", targets=y)
    assert maps.shape == (4, 1, 64, 64)


def test_masks_give_the_localisation_test(tmp_path):
    x, y = arrays()
    masks = np.zeros((8, 16, 16), dtype=np.uint8)
    masks[:, 4:12, 4:12] = 1
    result = sanity.check(
        ONNX / "tiny-resnet-ts.onnx", x, y, methods=["gradient"], masks=masks, out=tmp_path / "run",
        tests=[{"kind": "cascading", "order": "top_down"}, {"kind": "localisation", "metrics": [{"metric": "pointing_game"}, {"metric": "auc"}]}],
        progress=False,
    )
    localised = result.summary[result.summary.test == "localisation"]
    assert set(localised.metric) >= {"pointing_game", "auc"}
    assert (localised[(localised.stage == "trained") & (localised.method == "gradient")].n == 8).all()


def test_ctrl_c_then_the_same_call_with_resume_finishes_the_check(tmp_path, ctrl_c):
    x, y = arrays()
    fired = []

    def progress(kind, text, count):
        if kind == "advance" and not fired:
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    call = dict(methods=METHODS, batch_size=2, out=tmp_path / "run")
    with pytest.raises(sanity.Interrupted):
        sanity.check(ONNX / "tiny-resnet-ts.onnx", x, y, progress=progress, **call)
    resumed = sanity.check(ONNX / "tiny-resnet-ts.onnx", x, y, resume=True, progress=False, **call)
    whole = sanity.check(ONNX / "tiny-resnet-ts.onnx", x, y, progress=False, **{**call, "out": tmp_path / "whole"})
    for name in ("scores.csv", "summary.csv", "verdicts.csv"):
        assert (resumed.dir / name).read_bytes() == (whole.dir / name).read_bytes(), name


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"y": lambda x, y: y[:5]}, r"labels-[0-9a-f]{16}\.npy: labels of shape \[5\]; expected \[8\], one per image"),
        ({"x": lambda x, y: with_value(x, (2, 1, 0, 0), np.inf)}, r"(?s)images.*not finite"),
        ({"x": lambda x, y: x.astype(str)}, r"x: dtype <U\d+; accepted: float32 or float64"),
        ({"x": lambda x, y: x[:, :1]}, r"x: images of shape \[1, 16, 16\], but .*tiny-resnet-ts.onnx takes \[3, 16, 16\]"),
        ({"y": lambda x, y: y.astype(np.float32) + 0.5}, r"labels-[0-9a-f]{16}\.npy: label \d\.5 at index 0; accepted: integers"),
        ({"methods": lambda x, y: ["gradientt"]}, r"gradientt"),
        ({"preset": lambda x, y: "quantuz"}, r"quantuz"),
        ({"model": lambda x, y: "nowhere.onnx"}, r"model: nowhere.onnx: no such file"),
    ],
)
def test_bad_arrays_raise_bad_input(tmp_path, change, message):
    x, y = arrays()
    call = {"model": ONNX / "tiny-resnet-ts.onnx", "x": x, "y": y, "methods": ["gradient"], "preset": "quantus"}
    for key, f in change.items():
        call[key] = f(x, y)
    with pytest.raises(sanity.BadInput, match=message) as raised:
        sanity.check(**call, out=tmp_path / "run", progress=False)
    assert raised.value.exit_code == 2


def test_labels_need_not_hold_every_class_of_the_model(tmp_path):
    x, _ = arrays()
    y = np.array([0, 1] * 4)  # the model has 4 outputs; the sample holds 2 classes
    result = sanity.check(ONNX / "tiny-resnet-ts.onnx", x, y, methods=["gradient"], out=tmp_path / "run", progress=False)
    assert "num_classes = 4" in (result.dir / "config.resolved.toml").read_text()


def test_a_lone_method_name_is_a_list_of_one(tmp_path):
    x, y = arrays()
    result = sanity.check(ONNX / "tiny-resnet-ts.onnx", x, y, methods="gradient", out=tmp_path / "run", progress=False)
    assert set(result.summary.method) == {"gradient"}
