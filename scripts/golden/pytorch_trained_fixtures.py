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
