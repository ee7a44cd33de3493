#!/usr/bin/env python3
"""Captum's LRP maps of the tiny VGG (tiny_models.py; its state_dict is
crates/sanity-model/tests/fixtures/onnx/tiny-vgg.safetensors), for
crates/sanity-attribution/tests/graph_methods.rs: the VGG preset's graph built from that
state_dict must give these relevances (`lrp_epsilon`, ε = 1e-9 and ε = 0.25).

Captum's `LRP` with its default rules: `EpsilonRule` (its ε) on every Conv2d and Linear,
ε = 1e-9 on the max poolings and the adaptive average pooling, ReLU and Dropout passing the
relevance on. The ReLUs are made out-of-place, as Captum's hooks need.

Pinned: torch==2.15.0 captum==0.9.0 safetensors==0.7.0 numpy==2.4.6. Run from the repository
root after onnx_fixtures.py:
    python3 scripts/golden/graph_lrp_fixtures.py
"""
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
from captum.attr import LRP
from captum.attr._utils.lrp_rules import EpsilonRule
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_models import TinyVGG  # noqa: E402

fixtures = pathlib.Path("crates/sanity-model/tests/fixtures/onnx")
out = pathlib.Path("crates/sanity-attribution/tests/fixtures/graph")

x = torch.from_numpy(np.load(fixtures / "tiny-vgg-input.npy")).double()
targets = torch.tensor([2, 4])
for name, epsilon in [("lrp_epsilon", None), ("lrp_epsilon_0.25", 0.25)]:
    vgg = TinyVGG()
    vgg.load_state_dict(load_file(fixtures / "tiny-vgg.safetensors"), strict=False)
    vgg = vgg.double().eval()
    for m in vgg.modules():
        if isinstance(m, nn.ReLU):
            m.inplace = False
        if epsilon is not None and isinstance(m, (nn.Conv2d, nn.Linear)):
            m.rule = EpsilonRule(epsilon=epsilon)
    relevance = LRP(vgg).attribute(x, target=targets)
    np.save(out / f"vgg-{name}.npy", relevance.detach().numpy())
