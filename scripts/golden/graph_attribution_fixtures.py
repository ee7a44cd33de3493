#!/usr/bin/env python3
"""Maps of the tiny ResNet (tiny_models.py; its ONNX exports and state_dict are
crates/sanity-model/tests/fixtures/onnx/tiny-resnet-*) by Captum, for
crates/sanity-attribution/tests/graph_methods.rs: the methods `sanity attribute --onnx` runs on a
model graph. ReLUs are made not in-place for Captum's hooks (the values are the same).

- gradient: Saliency(abs=False); gradient_x_input: InputXGradient;
- integrated_gradients: IntegratedGradients, zero baseline, 16 steps, gausslegendre;
- guided_backprop: GuidedBackprop; deconvnet: Deconvolution;
- gradcam at `layer2` (the block's output): LayerGradCam(relu_attributions=True), upsampled
  with LayerAttribution.interpolate(..., "bilinear") (align_corners=False: pixel centres);
- gradcam_plus_plus, xgradcam, layercam, scorecam at `layer2`: pytorch-grad-cam's maps (min-max
  scaled; the test scales ours the same way, as tests/cams.rs does);
- occlusion: Occlusion with 4x4 windows (all channels) at stride 2, baseline 0.

Pinned: torch==2.15.0 captum==0.9.0 grad-cam==1.5.7 opencv-python-headless==5.0.0.93
safetensors==0.7.0 numpy==2.4.6. Run from the repository
root after onnx_fixtures.py:
    python3 scripts/golden/graph_attribution_fixtures.py
"""
import pathlib
import sys

import numpy as np
import torch
import torch.nn as nn
from captum.attr import (
    Deconvolution,
    GuidedBackprop,
    Occlusion,
    InputXGradient,
    IntegratedGradients,
    LayerAttribution,
    LayerGradCam,
    Saliency,
)
from pytorch_grad_cam import GradCAMPlusPlus, LayerCAM, ScoreCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from safetensors.torch import load_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_models import TinyResNet  # noqa: E402

fixtures = pathlib.Path("crates/sanity-model/tests/fixtures/onnx")
out = pathlib.Path("crates/sanity-attribution/tests/fixtures/graph")
out.mkdir(parents=True, exist_ok=True)
model = TinyResNet()
model.load_state_dict(load_file(fixtures / "tiny-resnet.safetensors"), strict=False)
for m in model.modules():
    if isinstance(m, nn.ReLU):
        m.inplace = False
model.eval()
x = torch.from_numpy(np.load(fixtures / "tiny-resnet-input.npy"))
targets = torch.tensor([1, 3])
np.save(out / "targets.npy", targets.numpy().astype(np.float64))
maps = {
    "gradient": Saliency(model).attribute(x, target=targets, abs=False),
    "gradient_x_input": InputXGradient(model).attribute(x, target=targets),
    "integrated_gradients": IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=targets, n_steps=16, method="gausslegendre"
    ),
    "guided_backprop": GuidedBackprop(model).attribute(x, target=targets),
    "deconvnet": Deconvolution(model).attribute(x, target=targets),
}
cam = LayerGradCam(model, model.layer2).attribute(x, target=targets, relu_attributions=True)
maps["gradcam"] = LayerAttribution.interpolate(cam, (16, 16), interpolate_mode="bilinear")
maps["occlusion"] = Occlusion(model).attribute(
    x, target=targets, sliding_window_shapes=(3, 4, 4), strides=(3, 2, 2), baselines=0.0
)
for name, method in [("gradcam_plus_plus", GradCAMPlusPlus), ("xgradcam", XGradCAM), ("layercam", LayerCAM), ("scorecam", ScoreCAM)]:
    with method(model=model, target_layers=[model.layer2]) as cam:
        scaled = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    maps[name] = torch.from_numpy(np.asarray(scaled, dtype=np.float32))[:, None]
for name, m in maps.items():
    np.save(out / f"{name}.npy", m.detach().numpy().astype(np.float32))
print("wrote", sorted(p.name for p in out.iterdir()))
