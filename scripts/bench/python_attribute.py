#!/usr/bin/env python3
"""Side by side, from Python: `sanity.attribute` on a torch.nn.Module against Captum on the same
module, for the adebayo-cnn shape (Fashion-MNIST's 1x28x28, two conv-ReLU-max-pool blocks),
64 images, both on the same thread count. Three ways to call sanity: with the module (exported
to ONNX and loaded at every call), with the ONNX file (loaded at every call), and with a
`sanity.load`ed model (loaded once). Each includes the NPY copies across the boundary.

    python3 scripts/bench/python_attribute.py [THREADS] [REPEATS]

Pinned: torch==2.15.0 captum==0.9.0 onnx==1.23.2, the package built in release mode
(`pip install ./crates/sanity-py` or `maturin develop --release -m crates/sanity-py/Cargo.toml`).
Prints the best of REPEATS (default 5) per method and the ratio sanity / Captum.
"""
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, Saliency

import sanity
from sanity._models import export_onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))
from tiny_models import AdebayoCNN  # noqa: E402


def best(f, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        f()
        times.append(time.perf_counter() - started)
    return min(times)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    repeats = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = AdebayoCNN().eval()
    rng = np.random.default_rng(0)
    x = rng.random((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    captum = {
        "gradient": lambda: Saliency(model).attribute(xt, target=yt, abs=False),
        "integrated_gradients": lambda: IntegratedGradients(model).attribute(
            xt, baselines=xt * 0, target=yt, n_steps=50, internal_batch_size=64
        ),
        "gradcam": lambda: LayerAttribution.interpolate(
            LayerGradCam(model, model.conv2).attribute(xt, target=yt, relu_attributions=True), (28, 28), "bilinear"
        ),
    }
    params = {"gradient": {}, "integrated_gradients": {"steps": 50}, "gradcam": {"layer": "conv2"}}
    with tempfile.TemporaryDirectory() as folder:
        export = best(lambda: export_onnx(model, x, Path(folder)), repeats)
        onnx = export_onnx(model, x, Path(folder))
        print(f"{threads} threads, 64 images 1x28x28, best of {repeats}; export to ONNX {export * 1000:.0f} ms")
        loaded = sanity.load(onnx)
        load_time = best(lambda: sanity.load(onnx), repeats)
        print(f"loading the ONNX file (sanity.load) {load_time * 1000:.0f} ms")
        header = ["Captum", "module", "ratio", "ONNX file", "ratio", "loaded", "ratio"]
        print(f"{'method':<22}" + "".join(f"{h:>11}" for h in header))
        for method, run_captum in captum.items():
            theirs = best(run_captum, repeats)
            ours_module = best(lambda: sanity.attribute(model, x, method, targets=y, threads=threads, **params[method]), repeats)
            ours_onnx = best(lambda: sanity.attribute(onnx, x, method, targets=y, threads=threads, **params[method]), repeats)
            ours_loaded = best(
                lambda: sanity.attribute(loaded, x, method, targets=y, threads=threads, **params[method]), repeats
            )
            cells = [f"{theirs * 1000:.0f} ms"]
            for ours in (ours_module, ours_onnx, ours_loaded):
                cells += [f"{ours * 1000:.0f} ms", f"{ours / theirs:.2f}"]
            print(f"{method:<22}" + "".join(f"{c:>11}" for c in cells))


if __name__ == "__main__":
    main()
