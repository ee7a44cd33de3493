#!/usr/bin/env python3
"""The ResNet benchmark of issue 19 written with the Python stack, for comparison with
`sanity run experiments/bench-resnet18.toml` on the same weights and images.

Pinned versions: torch==2.15.0 torchvision==0.29.2 captum==0.9.0 scipy==1.17.1
scikit-image==0.26.0 numpy==2.4.6 safetensors==0.7.0.

`--make DIR` writes the inputs both sides read: torchvision's ResNet-18 (10 classes, seeded
random weights, batch norms with random running statistics so that activations stay in range)
as DIR/resnet18.safetensors, and 16 seeded images 3x224x224 with labels 0..9 as
DIR/resnet18-images.npy / -labels.npy. Without `--make` it runs the workload: gradient,
integrated gradients (16 Gauss-Legendre steps, zero baseline), guided backprop and Grad-CAM at
layer4 (bilinear upsampling) of the 16 images, their true labels as targets; a top-down cascade
by blocks (fc, layer4.1, layer4.0, ..., layer1.0, bn1, conv1; each layer re-drawn by its
`reset_parameters()`, batch norms reset); abs, channel sum and min-max maps compared with the
originals by Spearman (scipy) and SSIM (scikit-image, Gaussian window, data_range 1). Prints a
JSON line with the phase timings and the peak RSS.
"""
import argparse
import copy
import json
import pathlib
import resource
import time

import numpy as np
import scipy.stats
import torch
import torchvision
from captum.attr import GuidedBackprop, IntegratedGradients, LayerAttribution, LayerGradCam, Saliency
from safetensors.torch import load_file, save_file
from skimage.metrics import structural_similarity

STAGES = ["fc", "layer4.1", "layer4.0", "layer3.1", "layer3.0", "layer2.1", "layer2.0", "layer1.1", "layer1.0", "bn1",
          "conv1"]


def make(out):
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    state = {k: v.contiguous() for k, v in model.state_dict().items() if "num_batches" not in k}
    save_file(state, out / "resnet18.safetensors")
    rng = np.random.default_rng(0)
    np.save(out / "resnet18-images.npy", rng.uniform(0.0, 1.0, (16, 3, 224, 224)).astype(np.float32))
    np.save(out / "resnet18-labels.npy", (np.arange(16) % 10).astype(np.int64))


def maps(model, x, y):
    out = {}
    out["gradient"] = Saliency(model).attribute(x, target=y, abs=False)
    out["integrated_gradients"] = IntegratedGradients(model).attribute(
        x, baselines=torch.zeros_like(x), target=y, n_steps=16, method="gausslegendre", internal_batch_size=16)
    out["guided_backprop"] = GuidedBackprop(model).attribute(x, target=y)
    cam = LayerGradCam(model, model.layer4).attribute(x, target=y, relu_attributions=True)
    out["gradcam"] = LayerAttribution.interpolate(cam, x.shape[2:], interpolate_mode="bilinear")
    return {k: v.detach().numpy() for k, v in out.items()}


def postprocess(m):
    m = np.abs(m).sum(axis=1)
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    return (m - lo) / np.where(hi > lo, hi - lo, 1.0)


def reset(model, stage):
    for name, module in model.named_modules():
        if (name == stage or name.startswith(stage + ".")) and hasattr(module, "reset_parameters"):
            module.reset_parameters()
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", default="target/bench")
    ap.add_argument("--make", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    out = pathlib.Path(args.dir)
    if args.make:
        make(out)
        return
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.from_numpy(np.load(out / "resnet18-images.npy"))
    y = torch.from_numpy(np.load(out / "resnet18-labels.npy"))
    model = torchvision.models.resnet18(num_classes=10)
    model.load_state_dict(load_file(out / "resnet18.safetensors"), strict=False)
    model.eval()

    t0 = time.perf_counter()
    original = {k: postprocess(v) for k, v in maps(model, x, y).items()}
    t1 = time.perf_counter()
    rows, metrics_s = 0, 0.0
    randomized = copy.deepcopy(model)
    for stage in STAGES:
        reset(randomized, stage)
        randomized.eval()
        current = {k: postprocess(v) for k, v in maps(randomized, x, y).items()}
        m0 = time.perf_counter()
        for name, m in current.items():
            for i in range(len(m)):
                scipy.stats.spearmanr(original[name][i].ravel(), m[i].ravel())
                structural_similarity(original[name][i], m[i], gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=True, data_range=1.0)
                rows += 2
        metrics_s += time.perf_counter() - m0
    t2 = time.perf_counter()
    rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"threads": args.threads, "original_maps_s": t1 - t0, "cascade_s": t2 - t1, "total_s": t2 - t0,
                      "metrics_s": metrics_s, "scores": rows, "peak_rss_mib": rss_mib}))


if __name__ == "__main__":
    main()
