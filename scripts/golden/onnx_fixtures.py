#!/usr/bin/env python3
"""ONNX fixtures for crates/sanity-model/tests/onnx_import.rs: small PyTorch models exported by
both of torch's exporters, and broken models the importer must refuse.

- `tiny-resnet`: a ResNet in miniature, torchvision's code and module names with narrower
  layers (a 7x7 stride-2 stem conv + BatchNorm + ReLU + max pool, a basic block, a strided
  block with a downsample branch, adaptive average pooling, fc), BatchNorm statistics randomised so that folding is visible; exported with
  `dynamo=False` (TorchScript) and `dynamo=True` (which writes its larger tensors to
  `<file>.onnx.data`, as it does by default). Beside them: its state_dict (safetensors), an
  input batch and the eval-mode logits, and `tiny-resnet-names.json`, the layer names both
  imports must give.
- `tiny-ops`: the other ops: a depthwise and a dilated conv, average pooling with ceil mode and
  without padded zeros, LeakyReLU, GELU, Sigmoid, Tanh, a multiplication by a constant, a
  concatenation of two branches, dropout, a matmul by a weight plus a bias, and a trailing
  softmax.
- `tiny-vgg`: torchvision's VGG code and names with narrower layers (features of convs, ReLUs
  and max pools, adaptive average pooling to 7x7 of a 4x4 map, the classifier's three linear
  layers with ReLU and dropout): state_dict, input and logits, for the graph presets.
- `torchvision-shapes.json`: the state_dict names and shapes of torchvision 0.29.2's
  resnet18, resnet34, resnet50, vgg11 and vgg16 (10 classes), which the graph presets must match.
- Broken: `bad-truncated.onnx` (the first half of tiny-resnet's file), `bad-op.onnx` (a Resize
  from `F.interpolate`), `bad-dynamic.onnx` (height and width as dynamic axes),
  `bad-cycle.onnx` (a node reading a later node's output), `bad-weight-input.onnx` (a conv
  weight given as a graph input, not an initialiser).

Pinned: torch==2.15.0 torchvision==0.29.2 onnx==1.23.2 onnxscript==0.7.2 safetensors==0.7.0 numpy==2.4.6. Run
from the repository root:
    python3 scripts/golden/onnx_fixtures.py
"""
import json
import pathlib
import sys

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import helper
from safetensors.torch import save_file

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from tiny_models import TinyResNet, TinyVGG  # noqa: E402

out = pathlib.Path("crates/sanity-model/tests/fixtures/onnx")
out.mkdir(parents=True, exist_ok=True)
torch.manual_seed(0)


class TinyOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 6, 3, 1, 1)
        self.depthwise = nn.Conv2d(6, 6, 3, 1, 1, groups=6)
        self.dilated = nn.Conv2d(6, 4, 3, 1, 2, dilation=2)
        self.act = nn.LeakyReLU(0.2)
        self.gelu = nn.GELU()
        self.pool = nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)
        self.drop = nn.Dropout(0.5)
        self.weight = nn.Parameter(torch.randn(10 * 5 * 5, 3) * 0.1)
        self.bias = nn.Parameter(torch.randn(3) * 0.1)

    def forward(self, x):
        x = self.act(self.conv(x))
        a = torch.sigmoid(self.depthwise(x))
        b = torch.tanh(self.dilated(x)) * 0.5
        x = self.pool(self.gelu(torch.cat([a, b], 1)))
        x = self.drop(torch.flatten(x, 1))
        return torch.softmax(x @ self.weight + self.bias, 1)


def randomise_batch_norms(model):
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)


def export(model, x, name):
    """Both exporters at opset 20 (the first with a Gelu op; the dynamo exporter's default)."""
    for dynamo in (False, True):
        path = out / f"{name}-{'dynamo' if dynamo else 'ts'}.onnx"
        torch.onnx.export(model, (x,), str(path), dynamo=dynamo, input_names=["x"], opset_version=20)


resnet = TinyResNet()
randomise_batch_norms(resnet)
resnet.eval()
x = torch.rand(2, 3, 16, 16)
with torch.no_grad():
    logits = resnet(x)
export(resnet, x, "tiny-resnet")
np.save(out / "tiny-resnet-input.npy", x.numpy())
np.save(out / "tiny-resnet-logits.npy", logits.numpy())
save_file({k: v.contiguous() for k, v in resnet.state_dict().items() if "num_batches" not in k}, out / "tiny-resnet.safetensors")
names = [
    "conv1", "relu", "maxpool",
    "layer1.0.conv1", "layer1.0.relu", "layer1.0.conv2", "layer1.0.add", "layer1.0.relu_1",
    "layer2.0.conv1", "layer2.0.relu", "layer2.0.conv2", "layer2.0.downsample.0", "layer2.0.add", "layer2.0.relu_1",
    "avgpool", "flatten", "fc",
]
(out / "tiny-resnet-names.json").write_text(json.dumps(names, indent=1) + "\n")

vgg = TinyVGG().eval()
x = torch.rand(2, 3, 16, 16)
with torch.no_grad():
    logits = vgg(x)
np.save(out / "tiny-vgg-input.npy", x.numpy())
np.save(out / "tiny-vgg-logits.npy", logits.numpy())
save_file({k: v.contiguous() for k, v in vgg.state_dict().items()}, out / "tiny-vgg.safetensors")

import torchvision  # noqa: E402

shapes = {}
for name in ["resnet18", "resnet34", "resnet50", "vgg11", "vgg16"]:
    model = getattr(torchvision.models, name)(num_classes=10)
    shapes[name] = [[k, list(v.shape)] for k, v in model.state_dict().items() if "num_batches" not in k]
(out / "torchvision-shapes.json").write_text(json.dumps(shapes) + "\n")

ops = TinyOps().eval()
x = torch.rand(2, 2, 9, 9)
with torch.no_grad():
    probabilities = ops(x)
export(ops, x, "tiny-ops")
np.save(out / "tiny-ops-input.npy", x.numpy())
np.save(out / "tiny-ops-probabilities.npy", probabilities.numpy())

# Broken models.
ts = (out / "tiny-resnet-ts.onnx").read_bytes()
(out / "bad-truncated.onnx").write_bytes(ts[: len(ts) // 2])


class Upsampling(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.fc = nn.Linear(2 * 12 * 12, 2)

    def forward(self, x):
        y = F.interpolate(self.conv(x), scale_factor=2.0, mode="nearest")
        return self.fc(torch.flatten(y, 1))


torch.onnx.export(Upsampling().eval(), (torch.rand(1, 1, 8, 8),), str(out / "bad-op.onnx"), dynamo=False, input_names=["x"])
torch.onnx.export(
    TinyResNet().eval(),
    (torch.rand(1, 3, 16, 16),),
    str(out / "bad-dynamic.onnx"),
    dynamo=False,
    input_names=["x"],
    dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}},
)


def tensor(name, array):
    return helper.make_tensor(name, onnx.TensorProto.FLOAT, array.shape, array.flatten().tolist())


w = np.full((2, 1, 3, 3), 0.1, dtype=np.float32)
fc = np.full((2, 2), 0.5, dtype=np.float32)
x_info = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 1, 4, 4])
y_info = helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 2])
cycle = helper.make_graph(
    [
        helper.make_node("Relu", ["later"], ["r"], name="/early/Relu"),
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv"),
        helper.make_node("GlobalAveragePool", ["r"], ["later"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["later"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="/fc/Gemm", transB=1),
    ],
    "cycle",
    [x_info],
    [y_info],
    [tensor("w", w), tensor("fc", fc)],
)
onnx.save(helper.make_model(cycle, opset_imports=[helper.make_opsetid("", 17)]), str(out / "bad-cycle.onnx"))
weight_input = helper.make_graph(
    [
        helper.make_node("Conv", ["x", "w"], ["c"], name="/conv/Conv"),
        helper.make_node("GlobalAveragePool", ["c"], ["p"], name="/pool/GlobalAveragePool"),
        helper.make_node("Flatten", ["p"], ["f"], name="/Flatten"),
        helper.make_node("Gemm", ["f", "fc"], ["y"], name="/fc/Gemm", transB=1),
    ],
    "weight_input",
    [x_info, helper.make_tensor_value_info("w", onnx.TensorProto.FLOAT, [2, 1, 3, 3])],
    [y_info],
    [tensor("fc", fc)],
)
onnx.save(helper.make_model(weight_input, opset_imports=[helper.make_opsetid("", 17)]), str(out / "bad-weight-input.onnx"))
print("wrote", sorted(p.name for p in out.iterdir()))
