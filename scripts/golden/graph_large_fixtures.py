#!/usr/bin/env python3
"""Captum's maps of the tiny VGG and of the tiny ResNet at 224x224 (tiny_models.py; their
state_dicts are crates/sanity-model/tests/fixtures/onnx/tiny-vgg.safetensors and
tiny-resnet.safetensors), for crates/sanity-attribution/tests/graph_methods.rs: the graph
presets' code builds both from their state_dicts and must give these maps.

- gradient: Saliency(abs=False); gradient_x_input: InputXGradient;
- integrated_gradients: IntegratedGradients, zero baseline, 16 steps, gausslegendre;
- guided_backprop: GuidedBackprop; deconvnet: Deconvolution;
- gradcam: LayerGradCam(relu_attributions=True) at the VGG's last conv block (`features.4`,
  the ReLU after the last convolution) and the ResNet's `layer2`, upsampled with
  LayerAttribution.interpolate(..., "bilinear").

The VGG explains the 2 images of tiny-vgg-input.npy (classes 2 and 4); the ResNet one seeded
uniform 224x224 image (class 2), written as resnet224-input.npy.

Pinned: torch==2.15.0 captum==0.9.0 safetensors==0.7.0 numpy==2.4.6. Run from the repository
root after onnx_fixtures.py:
    python3 scripts/golden/graph_large_fixtures.py
"""
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Saliency,
)
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_models import TinyResNet, TinyVGG  # noqa: E402

fixtures = pathlib.Path("crates/sanity-model/tests/fixtures/onnx")
out = pathlib.Path("crates/sanity-attribution/tests/fixtures/graph")
out.mkdir(parents=True, exist_ok=True)


def load(model, name):
    model.load_state_dict(load_file(fixtures / name), strict=False)
    for m in model.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
    return model.eval()


def maps(model, x, targets, layer):
    out = {
        "gradient": Saliency(model).attribute(x, target=targets, abs=False),
        "gradient_x_input": InputXGradient(model).attribute(x, target=targets),
        "integrated_gradients": IntegratedGradients(model).attribute(
            x, baselines=torch.zeros_like(x), target=targets, n_steps=16, method="gausslegendre"
        ),
        "guided_backprop": GuidedBackprop(model).attribute(x, target=targets),
        "deconvnet": Deconvolution(model).attribute(x, target=targets),
    }
    cam = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    out["gradcam"] = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
    return out


vgg = load(TinyVGG(), "tiny-vgg.safetensors")
x = torch.from_numpy(np.load(fixtures / "tiny-vgg-input.npy"))
targets = torch.tensor([2, 4])
np.save(out / "vgg-targets.npy", targets.numpy().astype(np.float64))
for name, m in maps(vgg, x, targets, vgg.features[4]).items():
    np.save(out / f"vgg-{name}.npy", m.detach().numpy().astype(np.float32))

resnet = load(TinyResNet(), "tiny-resnet.safetensors")
x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
np.save(out / "resnet224-input.npy", x.numpy())
for name, m in maps(resnet, x, torch.tensor([2]), resnet.layer2).items():
    np.save(out / f"resnet224-{name}.npy", m.detach().numpy().astype(np.float32))
print("wrote", sorted(p.name for p in out.iterdir()))
