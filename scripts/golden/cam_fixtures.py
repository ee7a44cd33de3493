#!/usr/bin/env python3
"""Golden fixtures for the class-activation-map family, from pytorch-grad-cam on PyTorch twins
of our presets (the weights come from the same formula as attribution_fixtures.py).

Pinned versions (crates/sanity-attribution/tests/fixtures/cams.json was made with exactly
these):
    torch==2.15.0  grad-cam==1.5.7  opencv-python-headless==5.0.0.93  numpy==2.4.6

Run:  python3 scripts/golden/cam_fixtures.py

pytorch-grad-cam's output is min-max scaled at the layer's resolution, resized with cv2 (bilinear,
pixel centres) and min-max scaled again; the Rust test (tests/cams.rs) applies min-max scaling
to our raw, upsampled maps and compares.
"""
import importlib.metadata
import pathlib

import cv2
import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from attribution_fixtures import AdebayoCNN, LessonCNN, PhantomCNN, formula_weights
from fixture_json import F32List, dumps

OUT = pathlib.Path(__file__).resolve().parents[2] / "crates/sanity-attribution/tests/fixtures/cams.json"
torch.set_num_threads(1)

METHODS = {"gradcam": GradCAM, "gradcam_plus_plus": GradCAMPlusPlus, "xgradcam": XGradCAM, "layercam": LayerCAM,
           "scorecam": ScoreCAM}


def case(preset, model, input_shape, targets, layers, rng):
    x = torch.from_numpy(rng.random((len(targets), *input_shape)).astype(np.float32))
    methods = []
    for layer_name in layers:
        layer = getattr(model, layer_name)
        for method, cls in METHODS.items():
            with cls(model=model, target_layers=[layer]) as cam:
                cam.batch_size = 16
                maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(t) for t in targets])
            methods.append(dict(spec={"method": method, "layer": layer_name}, values=F32List(np.asarray(maps))))
    return dict(preset=preset, input_shape=list(input_shape), inputs=F32List(x.numpy()), targets=targets,
                methods=methods)


def main():
    rng = np.random.default_rng(1610_02391)
    adebayo, phantom, lesson = (formula_weights(AdebayoCNN()), formula_weights(PhantomCNN()),
                                formula_weights(LessonCNN()))
    cases = [
        case("adebayo-cnn", adebayo, (1, 28, 28), [3, 7, 0], ["conv2", "conv1"], rng),
        case("phantom-cnn", phantom, (1, 32, 32), [0, 0], ["conv4"], rng),
        case("lesson-cnn", lesson, (1, 64, 64), [0, 0], ["conv5"], rng),
    ]
    fixture = dict(generator="scripts/golden/cam_fixtures.py",
                   versions=dict(torch=torch.__version__, grad_cam=importlib.metadata.version("grad-cam"), opencv=cv2.__version__,
                                 numpy=np.__version__),
                   cases=cases)
    OUT.write_text(dumps(fixture))
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
