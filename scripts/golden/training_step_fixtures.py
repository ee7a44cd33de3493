#!/usr/bin/env python3
"""PyTorch's training steps for crates/sanity-model/tests/training_step.rs: the network of
crates/sanity-model/tests/fixtures/train-step-net.toml (convolutions with padding, a batch norm
in training mode, max pooling over ReLUs, linear layers; no dropout, whose masks come from
another generator) with PyTorch's default initialisation, one batch of 8 images and labels:
- the loss and every parameter's gradient of one forward and backward in training mode;
- the state_dict after 3 steps of AdamW (lr 1e-2, weight decay 1e-2) on that batch, and after
  3 steps of SGD (lr 0.05, momentum 0.9, weight decay 1e-3), each from the initial weights
  (running statistics included).
Saved with safetensors under PyTorch's names.

Pinned: torch==2.15.0 safetensors==0.7.0 numpy==2.4.6. Run from the repository root:
    python3 scripts/golden/training_step_fixtures.py
"""
import copy
import pathlib

import numpy as np
import torch
import torch.nn as nn
from safetensors.torch import save_file

out = pathlib.Path("crates/sanity-model/tests/fixtures")


class TrainStepNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.fc1 = nn.Linear(96, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        x = nn.functional.max_pool2d(self.bn1(torch.relu(self.conv1(x))), 2)
        x = nn.functional.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def state(model):
    return {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}


torch.manual_seed(3)
initial = TrainStepNet()
x = torch.rand(8, 1, 16, 16)
y = torch.randint(0, 3, (8,))
save_file(state(initial), out / "train-step-initial.safetensors")
np.save(out / "train-step-x.npy", x.numpy())
np.save(out / "train-step-y.npy", y.numpy().astype(np.int64))

model = copy.deepcopy(initial).train()
loss = nn.functional.cross_entropy(model(x), y)
loss.backward()
save_file({k: p.grad.contiguous() for k, p in model.named_parameters()}, out / "train-step-grads.safetensors")
np.save(out / "train-step-loss.npy", np.array([loss.item()], dtype=np.float64))

for name, make in [("adamw", lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=1e-2)),
                   ("sgd", lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3))]:
    model = copy.deepcopy(initial).train()
    optimizer = make(model.parameters())
    for _ in range(3):
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    save_file(state(model), out / f"train-step-{name}.safetensors")
print("loss", loss.item())
