#!/usr/bin/env python3
"""The reference workload of docs/performance.md written with the Python stack, for comparison
with `sanity run experiments/bench-cascade.toml` on the same weights and images.

Pinned versions: torch==2.15.0 captum==0.9.0 scipy==1.17.1 scikit-image==0.26.0 numpy==2.4.6
safetensors==0.7.0.

adebayo-cnn (weights from the safetensors file `sanity train` writes, PyTorch names), the first
100 Fashion-MNIST test images, their true labels as targets; methods gradient,
gradient_x_input, integrated_gradients (50 steps, riemann_right, zero baseline),
smoothgrad (50 samples, noise 0.15 of the batch's range), guided_backprop, gradcam (conv2,
bilinear upsampling), guided_gradcam (conv2); top-down cascade over logits, fc1, conv2, conv1
(truncated normal std 0.1, bias 0.1, as the preset's initialiser); abs + min-max maps compared
with the originals by Spearman (scipy) and SSIM (scikit-image, Gaussian window, data_range 1).
Prints a JSON line with the phase timings.
"""
import argparse
import copy
import gzip
import json
import pathlib
import sys
import time

import numpy as np
import scipy.stats
import torch
import torch.nn as nn
from captum.attr import (GuidedBackprop, GuidedGradCam, InputXGradient, IntegratedGradients, LayerAttribution,
                         LayerGradCam, NoiseTunnel, Saliency)
from safetensors.torch import load_file
from skimage.metrics import structural_similarity

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
from attribution_fixtures import AdebayoCNN  # noqa: E402  (the same PyTorch twin as the fixtures)


def read_idx(path):
    data = gzip.open(path).read() if str(path).endswith(".gz") else open(path, "rb").read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def maps(model, x, y, batch):
    out = {}
    for name in ["gradient", "gradient_x_input", "integrated_gradients", "smoothgrad", "guided_backprop", "gradcam",
                 "guided_gradcam"]:
        parts = []
        for s in range(0, len(x), batch):
            xb, yb = x[s:s + batch], y[s:s + batch]
            if name == "gradient":
                a = Saliency(model).attribute(xb, target=yb, abs=False)
            elif name == "gradient_x_input":
                a = InputXGradient(model).attribute(xb, target=yb)
            elif name == "integrated_gradients":
                a = IntegratedGradients(model).attribute(xb, baselines=torch.zeros_like(xb), target=yb, n_steps=50,
                                                         method="riemann_right", internal_batch_size=100)
            elif name == "smoothgrad":
                stdev = 0.15 * float(xb.max() - xb.min())
                a = NoiseTunnel(Saliency(model)).attribute(xb, nt_type="smoothgrad", nt_samples=50,
                                                           nt_samples_batch_size=100, stdevs=stdev, target=yb,
                                                           abs=False)
            elif name == "guided_backprop":
                a = GuidedBackprop(model).attribute(xb, target=yb)
            elif name == "gradcam":
                cam = LayerGradCam(model, model.conv2).attribute(xb, target=yb, relu_attributions=True)
                a = LayerAttribution.interpolate(cam, xb.shape[2:], interpolate_mode="bilinear")
            else:
                a = GuidedGradCam(model, model.conv2).attribute(xb, target=yb, interpolate_mode="bilinear")
            parts.append(a.detach())
        out[name] = torch.cat(parts).numpy()
    return out


def postprocess(m):
    m = np.abs(m).reshape(len(m), -1, m.shape[-2], m.shape[-1]).sum(axis=1) if m.shape[1] > 1 else np.abs(m[:, 0])
    lo = m.min(axis=(1, 2), keepdims=True)
    hi = m.max(axis=(1, 2), keepdims=True)
    return (m - lo) / np.where(hi > lo, hi - lo, 1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch", type=int, default=50)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = pathlib.Path(args.data)
    images = read_idx(data / "t10k-images-idx3-ubyte.gz")[:args.n].astype(np.float32) / 255.0
    labels = read_idx(data / "t10k-labels-idx1-ubyte.gz")[:args.n].astype(np.int64)
    x, y = torch.from_numpy(images[:, None]), torch.from_numpy(labels)
    model = AdebayoCNN()
    model.load_state_dict(load_file(args.weights))
    model.eval()

    t0 = time.perf_counter()
    original = {k: postprocess(v) for k, v in maps(model, x, y, args.batch).items()}
    t1 = time.perf_counter()
    rows = 0
    metrics_s = 0.0
    randomized = copy.deepcopy(model)
    for stage in ["logits", "fc1", "conv2", "conv1"]:
        layer = getattr(randomized, stage)
        with torch.no_grad():
            nn.init.trunc_normal_(layer.weight, std=0.1, a=-0.2, b=0.2)
            nn.init.constant_(layer.bias, 0.1)
        current = {k: postprocess(v) for k, v in maps(randomized, x, y, args.batch).items()}
        m0 = time.perf_counter()
        for name, m in current.items():
            for i in range(len(m)):
                scipy.stats.spearmanr(original[name][i].ravel(), m[i].ravel())
                structural_similarity(original[name][i], m[i], gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=True, data_range=1.0)
                rows += 2
        metrics_s += time.perf_counter() - m0
    t2 = time.perf_counter()
    print(json.dumps({"threads": args.threads, "original_maps_s": t1 - t0, "cascade_s": t2 - t1, "total_s": t2 - t0,
                      "metrics_s": metrics_s, "scores": rows}))


if __name__ == "__main__":
    main()
