"""`sanity.attribute`: Captum's maps of the tiny ResNet's ONNX export (the goldens of
crates/sanity-attribution/tests/graph_methods.rs, made by scripts/golden/), the command line's
bytes, and bad inputs as exceptions."""

from __future__ import annotations

import numpy as np
import pytest

import sanity
from conftest import CAPTUM, ONNX, run_cli, with_value


def relative_l2(ours: np.ndarray, theirs: np.ndarray) -> float:
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("gradient", {}),
        ("gradient_x_input", {}),
        ("integrated_gradients", {"steps": 16}),
        ("guided_backprop", {}),
        ("gradcam", {"layer": "layer2"}),
    ],
)
def test_maps_are_captum_s(tiny_resnet, method, params):
    model, x, targets = tiny_resnet
    maps = sanity.attribute(model, x, method, targets=targets, **params)
    golden = np.load(CAPTUM / f"{method}.npy")
    assert maps.dtype == np.float32 and maps.shape == golden.shape
    assert relative_l2(maps, golden) < 1e-4


def test_maps_are_the_command_line_s_bytes(cli, tiny_resnet, tmp_path):
    model, x, targets = tiny_resnet
    np.save(tmp_path / "x.npy", x)
    done = run_cli(
        cli, "attribute", "--onnx", str(model), "--input", "x.npy", "--method", "integrated_gradients",
        "--set", "steps=8", "--out", "maps.npy", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    ours = sanity.attribute(model, x, "integrated_gradients", steps=8)
    assert ours.tobytes() == np.load(tmp_path / "maps.npy").tobytes()


def test_one_target_for_all_images_and_the_prediction_by_default(tiny_resnet):
    model, x, _ = tiny_resnet
    both = sanity.attribute(model, x, "gradient", targets=2)
    each = np.concatenate([sanity.attribute(model, x[i : i + 1], "gradient", targets=[2]) for i in range(2)])
    assert np.allclose(both, each, atol=1e-6)
    logits = np.load(ONNX / "tiny-resnet-logits.npy")
    predicted = sanity.attribute(model, x, "gradient")
    assert np.array_equal(predicted, sanity.attribute(model, x, "gradient", targets=logits.argmax(1)))


def test_the_thread_count_does_not_change_the_maps(tiny_resnet):
    model, x, targets = tiny_resnet
    one = sanity.attribute(model, x, "integrated_gradients", targets=targets, steps=8, threads=1)
    two = sanity.attribute(model, x, "integrated_gradients", targets=targets, steps=8, threads=2)
    assert one.tobytes() == two.tobytes()


def test_a_preset_with_safetensors_weights_needs_its_arch(tiny_resnet, tmp_path):
    _, x, _ = tiny_resnet
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(sanity.BadInput, match="arch: missing for the weights"):
        sanity.attribute(weights, x, "gradient")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # Flat index of (1, 0, 3, 4) in (2, 3, 16, 16): 1 * 768 + 3 * 16 + 4 = 820.
        ({"x": lambda x: with_value(x, (1, 0, 3, 4), np.nan)}, r"x: value NaN at flat index 820 is not finite \(1 such values\); accepted: finite image values"),
        ({"x": lambda x: x.astype(np.int32)}, r"x: dtype <i4; accepted: float32 or float64"),
        ({"x": lambda x: x[0]}, r"x: shape \[3, 16, 16\]; accepted: \[n, c, h, w\]"),
        ({"x": lambda x: x[:, :1]}, r"x: images of shape \[1, 16, 16\], but .*tiny-resnet-ts.onnx takes \[3, 16, 16\]"),
        ({"x": lambda x: x.astype(object)}, r"x: dtype object; accepted"),
        ({"targets": [0, 9]}, r"targets: target 9 at index 1; accepted: integers in 0\.\.4"),
        ({"targets": [0, 1, 2]}, r"targets: 3 targets for 2 images"),
        ({"targets": 7}, r"targets: target 7 at index 0"),
        ({"method": "integrated_gradient"}, r"method: .*integrated_gradient.*integrated_gradients"),
        ({"params": {"steps": 0}}, r"integrated_gradients: steps = 0; accepted: >= 1"),
        ({"params": {"stepz": 4}}, r"method: unknown field `stepz`.*did you mean `steps`"),
        ({"params": {"layer": "layer9"}, "method": "gradcam"}, r"layer `layer9` not found; this model has: conv1"),
        ({"model": "missing.onnx"}, r"model: missing.onnx: no such file"),
        ({"model": 42}, r"model: int; accepted: an ONNX file, a safetensors file"),
        ({"batch": 0}, r"batch: 0; accepted: a whole number from 1"),
    ],
)
def test_bad_input_raises_bad_input_naming_the_argument(tiny_resnet, change, message):
    model, x, _ = tiny_resnet
    kwargs = {"model": model, "x": x, "method": "integrated_gradients", "targets": None, "batch": 32, "params": {}}
    for key, value in change.items():
        kwargs[key] = value(x) if key == "x" else value
    params = kwargs.pop("params")
    with pytest.raises(sanity.BadInput, match=message) as raised:
        sanity.attribute(**kwargs, **params)
    assert raised.value.exit_code == 2


def test_an_op_the_engine_does_not_run_is_refused_by_name_with_the_ops_it_runs(tiny_resnet):
    _, x, _ = tiny_resnet
    with pytest.raises(sanity.BadInput, match=r"bad-op.onnx.*op `Resize` is not supported; supported: Conv, Gemm"):
        sanity.attribute(ONNX / "bad-op.onnx", x, "gradient")
    assert "Conv" in sanity._native.onnx_ops()


def test_a_corrupt_onnx_file_is_bad_input_naming_it(tiny_resnet):
    _, x, _ = tiny_resnet
    with pytest.raises(sanity.BadInput, match="bad-truncated.onnx") as raised:
        sanity.attribute(ONNX / "bad-truncated.onnx", x, "gradient")
    assert raised.value.exit_code == 2


def test_a_model_loaded_once_gives_the_same_maps(tiny_resnet):
    model, x, targets = tiny_resnet
    loaded = sanity.load(model)
    assert (loaded.input, loaded.outputs, loaded.arch, loaded.path) == ((3, 16, 16), 4, None, model)
    assert "tiny-resnet-ts.onnx" in repr(loaded)
    for method in ("gradient", "integrated_gradients"):
        assert sanity.attribute(loaded, x, method, targets=targets).tobytes() == sanity.attribute(
            model, x, method, targets=targets
        ).tobytes()
    with pytest.raises(sanity.BadInput, match=r"x: images of shape \[1, 16, 16\], but .* takes \[3, 16, 16\]"):
        sanity.attribute(loaded, x[:, :1], "gradient")
    with pytest.raises(sanity.BadInput, match=r"x: images of shape \[3, 8, 8\], but .* takes \[3, 16, 16\]"):
        sanity.load(model, input=(3, 8, 8))


def test_a_preset_s_weights_need_the_image_shape(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    with pytest.raises(sanity.BadInput, match=r"input: missing for the preset `phantom-cnn`"):
        sanity.load(weights, arch="phantom-cnn")
    with pytest.raises(sanity.BadInput, match=r"input: \(1, 64\); accepted: \(c, h, w\)"):
        sanity.load(weights, arch="phantom-cnn", input=(1, 64))


def test_a_loaded_model_keeps_its_arch_and_parameters_name_their_argument(tiny_resnet):
    model, x, _ = tiny_resnet
    loaded = sanity.load(model)
    with pytest.raises(sanity.BadInput, match=r"arch: given with a loaded model"):
        sanity.attribute(loaded, x, "gradient", arch="phantom-cnn")
    with pytest.raises(sanity.BadInput, match=r"^method: array\(\[3\]\) of type ndarray; accepted"):
        sanity.attribute(loaded, x, "integrated_gradients", steps=np.array([3]))
    for bad in ({"batch": -1}, {"threads": 0}, {"batch": True}):
        with pytest.raises(sanity.BadInput, match=f"{next(iter(bad))}: "):
            sanity.attribute(loaded, x, "gradient", **bad)
    with pytest.raises(sanity.BadInput, match=r"input: \(3, -16, 16\)"):
        sanity.load(model, input=(3, -16, 16))
