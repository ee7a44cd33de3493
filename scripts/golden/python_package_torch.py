#!/usr/bin/env python3
"""The Python package's torch path against Captum: a `torch.nn.Module` handed to
`sanity.attribute` and `sanity.check` is exported to ONNX behind the scenes and explained by the
engine; its maps must be Captum's on the module itself. Not run by CI (torch is several GB);
its numbers are in the issue's closing note and docs/python.md.

- `sanity.attribute(module, x, m)` for gradient (Saliency, abs=False), gradient_x_input
  (InputXGradient), integrated_gradients (IntegratedGradients: zero baseline, 50 steps,
  gausslegendre, both tools' defaults), guided_backprop (GuidedBackprop) and gradcam at `conv2`
  (LayerGradCam, relu_attributions=True, upsampled bilinearly with align_corners=False);
- `sanity.check(module, x, y)` with the quantus preset (given labels explained): the trained
  model's maps of the example images, kept in the run's `maps/image-N/original.METHOD.npy`,
  against Captum's for the same image and label; then the run's verdicts are printed.

Pinned: torch==2.15.0 captum==0.9.0 onnx==1.23.2 numpy==2.4.6, with the package installed
(`pip install ./crates/sanity-py` or `maturin develop -m crates/sanity-py/Cargo.toml`). Run from
the repository root:
    python3 scripts/golden/python_package_torch.py
Exits 1 when any relative L2 error is 1e-4 or more.
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
from captum.attr import GuidedBackprop, InputXGradient, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

import sanity

TOLERANCE = 1e-4


class SmallCnn(nn.Module):
    """A Fashion-MNIST-sized CNN: two conv-ReLU-max-pool blocks, a hidden layer, ten logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 5, padding=2)
        self.relu1 = nn.ReLU()
        self.pool1 = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool2 = nn.MaxPool2d(2)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 7 * 7, 32)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x):
        x = self.pool1(self.relu1(self.conv1(x)))
        x = self.pool2(self.relu2(self.conv2(x)))
        return self.fc2(self.relu3(self.fc1(self.flatten(x))))


def captum_maps(model, x, targets):
    """Captum's maps of each method, float32 numpy."""
    x = torch.from_numpy(x)
    t = torch.from_numpy(targets)
    cam = LayerGradCam(model, model.conv2).attribute(x, target=t, relu_attributions=True)
    maps = {
        "gradient": Saliency(model).attribute(x, target=t, abs=False),
        "gradient_x_input": InputXGradient(model).attribute(x, target=t),
        "integrated_gradients": IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=t, n_steps=50, method="gausslegendre"
        ),
        "guided_backprop": GuidedBackprop(model).attribute(x, target=t),
        "gradcam": LayerAttribution.interpolate(cam, x.shape[2:], "bilinear"),
    }
    return {k: v.detach().numpy().astype(np.float32) for k, v in maps.items()}


def relative_l2(ours, theirs):
    return float(np.linalg.norm(ours - theirs) / np.linalg.norm(theirs))


def main():
    torch.manual_seed(0)
    model = SmallCnn().eval()
    rng = np.random.default_rng(0)
    x = rng.random((8, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    golden = captum_maps(model, x, y)
    worst = 0.0
    print("sanity.attribute(module, ...) against Captum, relative L2 over 8 images:")
    for method, theirs in golden.items():
        params = {"layer": "conv2"} if method == "gradcam" else {}
        ours = sanity.attribute(model, x, method, targets=y, **params)
        error = relative_l2(ours, theirs)
        worst = max(worst, error)
        print(f"  {method:<22} {error:.3e}")
    with tempfile.TemporaryDirectory() as out:
        methods = ["gradient", "integrated_gradients", {"method": "gradcam", "layer": "conv2"}]
        result = sanity.check(model, x, y, methods=methods, out=Path(out) / "run", progress=False)
        print("sanity.check(module, ...): the trained model's example maps against Captum, relative L2:")
        for i in range(4):
            for method in ("gradient", "integrated_gradients", "gradcam"):
                ours = np.load(result.dir / "maps" / f"image-{i:04}" / f"original.{method}.npy")
                error = relative_l2(ours, golden[method][i])
                worst = max(worst, error)
                print(f"  image {i} {method:<22} {error:.3e}")
        verdicts = result.verdicts
        print(verdicts[["stage", "method", "metric", "n_pairs", "mean", "floor_mean", "verdict"]].to_string())
    print(f"worst relative L2: {worst:.3e} (tolerance {TOLERANCE:g})")
    return 0 if worst < TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
