#!/usr/bin/env python3
"""Golden fixtures for sanity-attribution, from Captum on PyTorch twins of our presets.

Pinned versions (crates/sanity-attribution/tests/fixtures/attribution.json was made with
exactly these):
    torch==2.15.0  captum==0.9.0  numpy==2.4.6  scipy==1.17.1

Run:  python3 scripts/golden/attribution_fixtures.py

The weights are not stored: both sides compute them from the same formula (`formula_weights`,
mirrored in crates/sanity-attribution/tests/golden.rs), in PyTorch's names and layouts:
    weight[j] = sqrt(3 / fan_in) * sin(0.7 j + 0.1 len(name))
    bias[j]   = 0.1 * cos(0.3 j + 0.1 len(name))
computed in float64 and rounded to float32. Inputs are seeded uniform [0, 1] images.
"""
import copy
import json
import math
import pathlib

import captum
import numpy as np
import scipy
import scipy.ndimage
import torch
import torch.nn as nn
import torch.nn.functional as F
from captum.attr import (Deconvolution, GuidedBackprop, GuidedGradCam, InputXGradient, IntegratedGradients,
                         LayerAttribution, LayerGradCam, Saliency)

from fixture_json import F32List, F64List, dumps  # noqa: E402
from tiny_models import AdebayoCNN  # noqa: E402

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/sanity-attribution/tests/fixtures/attribution.json"
torch.set_num_threads(1)


class PhantomCNN(nn.Module):
    """`phantom-cnn` (the lesson CNN scaled down), single logit."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.conv2 = nn.Conv2d(8, 12, 3, padding=1)
        self.conv3 = nn.Conv2d(12, 20, 5, padding=2)
        self.conv4 = nn.Conv2d(20, 50, 5, padding=2)
        self.relus = nn.ModuleList([nn.ReLU() for _ in range(6)])
        self.pools = nn.ModuleList([nn.MaxPool2d(2) for _ in range(3)])
        self.dense1 = nn.Linear(50, 64)
        self.dropout = nn.Dropout(0.5)
        self.dense2 = nn.Linear(64, 32)
        self.logit = nn.Linear(32, 1)

    def forward(self, x):
        for i, conv in enumerate([self.conv1, self.conv2, self.conv3]):
            x = self.pools[i](self.relus[i](conv(x)))
        x = self.relus[3](self.conv4(x)).mean(dim=(2, 3))
        x = self.dropout(self.relus[4](self.dense1(x)))
        return self.logit(self.relus[5](self.dense2(x)))


class LessonCNN(nn.Module):
    """`lesson-cnn`: conv1..conv7 (8, 8, 12, 12 3x3; 20, 20 5x5; 50 5x5), ReLU, max-pool 2 after
    conv1..conv6, global average pool, dense1 (50->128) ReLU, dropout, dense2 (->32) ReLU, logit."""

    def __init__(self):
        super().__init__()
        spec = [(8, 3), (8, 3), (12, 3), (12, 3), (20, 5), (20, 5), (50, 5)]
        convs, c = [], 1
        for out, k in spec:
            convs.append(nn.Conv2d(c, out, k, padding=k // 2))
            c = out
        for i, conv in enumerate(convs):
            setattr(self, f"conv{i + 1}", conv)
        self.dense1 = nn.Linear(50, 128)
        self.dropout = nn.Dropout(0.6)
        self.dense2 = nn.Linear(128, 32)
        self.logit = nn.Linear(32, 1)
        # Modules, not functional calls: Captum's guided backprop and deconvnet hook nn.ReLU.
        self.relus = nn.ModuleList([nn.ReLU() for _ in range(9)])
        self.pools = nn.ModuleList([nn.MaxPool2d(2) for _ in range(6)])
        # A module too (Captum's LRP gives nn.AdaptiveAvgPool2d its ε rule).
        self.gap = nn.AdaptiveAvgPool2d(1)

    def forward(self, x):
        for i in range(1, 8):
            x = self.relus[i - 1](getattr(self, f"conv{i}")(x))
            if i < 7:
                x = self.pools[i - 1](x)
        x = self.dropout(self.relus[7](self.dense1(self.gap(x).flatten(1))))
        return self.logit(self.relus[8](self.dense2(x)))


def formula_weights(model):
    state = {}
    for name, p in model.state_dict().items():
        j = np.arange(p.numel(), dtype=np.float64)
        phase = 0.1 * len(name)
        if name.endswith(".weight"):
            fan_in = p[0].numel()
            v = math.sqrt(3.0 / fan_in) * np.sin(0.7 * j + phase)
        else:
            v = 0.1 * np.cos(0.3 * j + phase)
        state[name] = torch.from_numpy(v.astype(np.float32).reshape(p.shape))
    model.load_state_dict(state)
    return model.eval()


def upsample(cam, size):
    return LayerAttribution.interpolate(cam, size, interpolate_mode="bilinear")


def model_case(preset, model, input_shape, targets, cam_layer, cam_layer_name, rng):
    x = torch.from_numpy(rng.random((len(targets), *input_shape)).astype(np.float32))
    t = torch.tensor(targets)
    size = input_shape[1:]
    methods = []

    def add(spec, attr):
        methods.append(dict(spec=spec, dtype="f32", values=F32List(attr.detach().numpy())))

    add({"method": "gradient"}, Saliency(model).attribute(x, target=t, abs=False))
    add({"method": "gradient_x_input"}, InputXGradient(model).attribute(x, target=t))
    captum_rules = {"riemann_right": "riemann_right", "riemann_left": "riemann_left",
                    "riemann_middle": "riemann_middle", "riemann_trapezoid": "riemann_trapezoid",
                    "gauss_legendre": "gausslegendre"}
    for ours, theirs in captum_rules.items():
        if ours == "gauss_legendre":
            continue
        attr = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), target=t, n_steps=20, method=theirs)
        add({"method": "integrated_gradients", "steps": 20, "rule": ours}, attr)
    # Gauss-Legendre puts a node at alpha = 0.0034, where max-pool windows of these inputs hold
    # near-ties that float32 rounding resolves differently in each implementation; in float64
    # both agree, so this case is computed (and checked) in float64.
    model64, x64 = copy.deepcopy(model).double(), x.double()
    attr = IntegratedGradients(model64).attribute(x64, baselines=torch.zeros_like(x64), target=t, n_steps=20,
                                                   method="gausslegendre")
    methods.append(dict(spec={"method": "integrated_gradients", "steps": 20, "rule": "gauss_legendre"},
                        dtype="f64", values=F64List(attr.detach().numpy())))
    attr = IntegratedGradients(model).attribute(x, baselines=0.5, target=t, n_steps=16, method="riemann_trapezoid")
    add({"method": "integrated_gradients", "steps": 16, "rule": "riemann_trapezoid",
         "baseline": {"kind": "constant", "value": 0.5}}, attr)
    blurred = torch.from_numpy(scipy.ndimage.gaussian_filter(x.numpy().astype(np.float64), sigma=(0, 0, 2.0, 2.0))
                               .astype(np.float32))
    attr = IntegratedGradients(model).attribute(x, baselines=blurred, target=t, n_steps=20, method="riemann_right")
    add({"method": "integrated_gradients", "steps": 20, "rule": "riemann_right",
         "baseline": {"kind": "blurred", "sigma": 2.0}}, attr)
    add({"method": "guided_backprop"}, GuidedBackprop(model).attribute(x, target=t))
    add({"method": "deconvnet"}, Deconvolution(model).attribute(x, target=t))
    cam = LayerGradCam(model, cam_layer).attribute(x, target=t, relu_attributions=True)
    add({"method": "gradcam", "layer": cam_layer_name}, upsample(cam, size))
    ggc = GuidedGradCam(model, cam_layer).attribute(x, target=t, interpolate_mode="bilinear")
    add({"method": "guided_gradcam", "layer": cam_layer_name}, ggc)
    with torch.no_grad():
        logits = model(x)
    return dict(preset=preset, input_shape=list(input_shape), inputs=F32List(x.numpy()), targets=targets,
                logits=F32List(logits.numpy()), methods=methods)


def main():
    rng = np.random.default_rng(1810_03292)
    adebayo, phantom = formula_weights(AdebayoCNN()), formula_weights(PhantomCNN())
    lesson = formula_weights(LessonCNN())
    cases = [
        model_case("adebayo-cnn", adebayo, (1, 28, 28), [3, 7, 0], adebayo.conv2, "conv2", rng),
        model_case("phantom-cnn", phantom, (1, 32, 32), [0, 0], phantom.conv4, "conv4", rng),
        model_case("lesson-cnn", lesson, (1, 64, 64), [0, 0], lesson.conv5, "conv5", rng),
    ]
    fixture = dict(generator="scripts/golden/attribution_fixtures.py",
                   versions=dict(torch=torch.__version__, captum=captum.__version__, numpy=np.__version__,
                                 scipy=scipy.__version__),
                   cases=cases)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
