#!/usr/bin/env python3
"""A PyTorch-trained state_dict for crates/sanity-model/tests/pytorch_interop.rs: the
`phantom-cnn` twin (scripts/golden/attribution_fixtures.py) trained by PyTorch for 12 Adam steps
on noisy 32x32 images (which half is bright), its state_dict saved with safetensors (PyTorch names and layouts), a
batch of inputs and the model's logits on them in eval mode (dropout off).

Pinned: torch==2.15.0 safetensors==0.7.0 numpy==2.4.6. Run from the repository root:
    python3 scripts/golden/pytorch_trained_fixtures.py
"""
import pathlib
import sys

import numpy as np
import torch
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from attribution_fixtures import PhantomCNN  # noqa: E402

out = pathlib.Path("crates/sanity-model/tests/fixtures")
torch.manual_seed(0)
model = PhantomCNN()
optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
def images(n):
    """Noise plus a bright top half (class 1) or bottom half (class 0)."""
    y = (torch.rand(n) < 0.5).float()
    x = 0.3 * torch.rand(n, 1, 32, 32)
    x[:, :, :16] += 0.7 * y[:, None, None, None]
    x[:, :, 16:] += 0.7 * (1 - y)[:, None, None, None]
    return x, y


x_train, y_train = images(64)
model.train()
for step in range(12):
    batch = torch.randint(0, 64, (16,))
    loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x_train[batch]).squeeze(1), y_train[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
model.eval()
x, _ = images(8)
with torch.no_grad():
    logits = model(x)
save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "phantom-cnn-pytorch.safetensors")
np.save(out / "phantom-cnn-inputs.npy", x.numpy().astype(np.float32))
np.save(out / "phantom-cnn-logits.npy", logits.numpy().astype(np.float32))
print("final loss", loss.item(), "logits", logits.squeeze(1).tolist())


class BnNet(torch.nn.Module):
    """crates/sanity-model/tests/fixtures/bn-net.toml: conv1, bn1, relu, max-pool, flatten, fc."""

    def __init__(self):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = torch.nn.BatchNorm2d(4)
        self.fc = torch.nn.Linear(4 * 8 * 8, 3)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(torch.relu(self.bn1(self.conv1(x))), 2)
        return self.fc(x.flatten(1))


torch.manual_seed(1)
bn = BnNet()
with torch.no_grad():  # non-trivial affine parameters and running statistics
    bn.bn1.weight.uniform_(0.5, 1.5)
    bn.bn1.bias.uniform_(-0.2, 0.2)
    bn.bn1.running_mean.uniform_(-0.1, 0.1)
    bn.bn1.running_var.uniform_(0.5, 1.5)
state = {k: v.contiguous() for k, v in bn.state_dict().items()}
save_file(state, out / "bn-initial.safetensors")
x0 = torch.rand(6, 1, 16, 16)
bn.train()
with torch.no_grad():
    train_logits = bn(x0)  # batch statistics; updates the running ones
np.save(out / "bn-x0.npy", x0.numpy())
np.save(out / "bn-train-logits.npy", train_logits.numpy())
np.save(out / "bn-running-mean.npy", bn.bn1.running_mean.numpy())
np.save(out / "bn-running-var.npy", bn.bn1.running_var.numpy())
sgd = torch.optim.SGD(bn.parameters(), lr=0.05, momentum=0.9)
targets = torch.randint(0, 3, (32,))
inputs = torch.rand(32, 1, 16, 16)
for step in range(5):
    sgd.zero_grad()
    torch.nn.functional.cross_entropy(bn(inputs), targets).backward()
    sgd.step()
bn.eval()
x1 = torch.rand(5, 1, 16, 16)
with torch.no_grad():
    eval_logits = bn(x1)
save_file({k: v.contiguous() for k, v in bn.state_dict().items()}, out / "bn-trained.safetensors")
np.save(out / "bn-x1.npy", x1.numpy())
np.save(out / "bn-eval-logits.npy", eval_logits.numpy())
print("bn eval logits", eval_logits.tolist())
