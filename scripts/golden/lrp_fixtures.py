#!/usr/bin/env python3
"""Golden fixtures for `lrp_epsilon` and `lrp_alpha_beta`, from Captum's LRP on the PyTorch
twins of `adebayo-cnn` and `lesson-cnn` with the formula weights of attribution_fixtures.py.

Pinned versions (crates/sanity-attribution/tests/fixtures/lrp.json was made with exactly these):
    torch==2.15.0  captum==0.9.0  numpy==2.4.6

Run:  python3 scripts/golden/lrp_fixtures.py

The rule is set on every conv and linear layer; poolings keep Captum's default (ε = 1e-9).
Captum's Alpha1_Beta0_Rule keeps the whole bias in z+, ours (Bach et al.'s α-β) only its
positive part: the α-β case uses |bias| (entry "biases": "abs"), where the two agree.
"""
import copy
import pathlib

import captum
import numpy as np
import torch
from captum.attr import LRP
from captum.attr._utils.lrp_rules import Alpha1_Beta0_Rule, EpsilonRule

from attribution_fixtures import AdebayoCNN, LessonCNN, formula_weights
from fixture_json import F32List, dumps

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/sanity-attribution/tests/fixtures/lrp.json"
torch.set_num_threads(1)


def lrp(model, x, targets, rule):
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    for layer in layers:
        layer.rule = rule()
    attr = LRP(model).attribute(x, target=torch.tensor(targets))
    for layer in layers:
        if hasattr(layer, "rule"):
            del layer.rule
    return attr.detach().numpy()


def abs_biases(model):
    model = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(".bias"):
                p.abs_()
    return model


def case(preset, model, input_shape, targets, rng):
    x = torch.from_numpy(rng.random((len(targets), *input_shape)).astype(np.float32))
    methods = [
        dict(spec={"method": "lrp_epsilon"}, values=F32List(lrp(model, x, targets, lambda: EpsilonRule(1e-9)))),
        dict(spec={"method": "lrp_epsilon", "epsilon": 0.25},
             values=F32List(lrp(model, x, targets, lambda: EpsilonRule(0.25)))),
        dict(spec={"method": "lrp_alpha_beta"}, biases="abs",
             values=F32List(lrp(abs_biases(model), x, targets, Alpha1_Beta0_Rule))),
    ]
    return dict(preset=preset, input_shape=list(input_shape), inputs=F32List(x.numpy()), targets=targets,
                methods=methods)


def main():
    rng = np.random.default_rng(1_504_1009)
    cases = [
        case("adebayo-cnn", formula_weights(AdebayoCNN()), (1, 28, 28), [3, 7, 0], rng),
        case("lesson-cnn", formula_weights(LessonCNN()), (1, 64, 64), [0, 0], rng),
    ]
    fixture = dict(generator="scripts/golden/lrp_fixtures.py",
                   versions=dict(torch=torch.__version__, captum=captum.__version__, numpy=np.__version__),
                   cases=cases)
    OUT.write_text(dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
