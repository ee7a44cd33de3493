#!/usr/bin/env python3
"""PyTorch's side of scripts/bench/train.sh: trains `adebayo-cnn` or `adebayo-mlp` (docs/models.md;
the twins of scripts/golden/attribution_fixtures.py, initialised as the presets: truncated
normal std 0.1 weights, 0.1 biases) on the first N Fashion-MNIST training images (pixel / 255),
batch 64, AdamW (lr 1e-3, weight decay 1e-4, as `sanity train`'s defaults), shuffled each epoch,
on T threads. Times each epoch alone (the minibatches: forward, loss, backward, step), then
prints a JSON line with the epoch times, the final loss and the test accuracy.

Pinned: torch==2.15.0 numpy==2.4.6.
"""
import argparse
import json
import pathlib
import sys
import time

import numpy as np
import torch
import torch.nn as nn

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "golden"))
from attribution_fixtures import AdebayoCNN  # noqa: E402
from captum_cascade import read_idx  # noqa: E402


class AdebayoMLP(nn.Module):
    """docs/models.md, `adebayo-mlp`: 784 -> 2500 -> 1500 -> 500 -> 10, ReLU between."""

    def __init__(self):
        super().__init__()
        self.hidden1 = nn.Linear(784, 2500)
        self.hidden2 = nn.Linear(2500, 1500)
        self.hidden3 = nn.Linear(1500, 500)
        self.logits = nn.Linear(500, 10)

    def forward(self, x):
        x = torch.relu(self.hidden1(x.flatten(1)))
        x = torch.relu(self.hidden2(x))
        return self.logits(torch.relu(self.hidden3(x)))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--arch", choices=["adebayo-cnn", "adebayo-mlp"], default="adebayo-cnn")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--n-train", type=int, default=20000)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    d = pathlib.Path(a.data)
    x = torch.from_numpy(read_idx(d / "train-images-idx3-ubyte.gz")[: a.n_train].astype(np.float32) / 255.0)[:, None]
    y = torch.from_numpy(read_idx(d / "train-labels-idx1-ubyte.gz")[: a.n_train].astype(np.int64))
    xt = torch.from_numpy(read_idx(d / "t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0)[:, None]
    yt = torch.from_numpy(read_idx(d / "t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = AdebayoCNN() if a.arch == "adebayo-cnn" else AdebayoMLP()
    with torch.no_grad():
        for name, t in model.named_parameters():
            if name.endswith("weight"):
                nn.init.trunc_normal_(t, std=0.1, a=-0.2, b=0.2)
            else:
                t.fill_(0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    times, losses = [], []
    for _ in range(a.epochs):
        order = torch.randperm(len(x))
        model.train()
        start = time.perf_counter()
        total = 0.0
        for s in range(0, len(x), a.batch_size):
            idx = order[s:s + a.batch_size]
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
        times.append(time.perf_counter() - start)
        losses.append(total / ((len(x) + a.batch_size - 1) // a.batch_size))
    model.eval()
    with torch.no_grad():
        acc = sum((model(xt[s:s + 1000]).argmax(1) == yt[s:s + 1000]).sum().item() for s in range(0, len(xt), 1000))
    print(json.dumps({"epoch_s": times, "loss": losses, "test_accuracy": acc / len(xt)}))


if __name__ == "__main__":
    main()
