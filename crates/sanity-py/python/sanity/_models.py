"""The model argument: an ONNX file, safetensors weights with a preset or architecture, a
`torch.nn.Module` (exported to ONNX behind the scenes when torch is importable), or a `Model`
loaded once for many calls."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence, Tuple

from ._errors import bad
from . import _native
from ._native import onnx_ops


class Model:
    """A model loaded once (its file parsed, its weights converted) for any number of
    `sanity.attribute` calls; `sanity.check` takes it too. Made by `sanity.load`."""

    def __init__(self, native: Any, keep: Optional[tempfile.TemporaryDirectory] = None) -> None:
        self._native = native
        # The folder of a torch module's export, removed with the model.
        self._keep = keep

    @property
    def path(self) -> Path:
        """The ONNX or safetensors file."""
        return Path(self._native.path)

    @property
    def arch(self) -> Optional[str]:
        """The preset or architecture TOML of safetensors weights; None for an ONNX file."""
        return self._native.arch

    @property
    def input(self) -> Tuple[int, int, int]:
        """The image shape `(c, h, w)` it takes."""
        return self._native.input

    @property
    def outputs(self) -> int:
        """Its outputs (logits)."""
        return self._native.outputs

    def __repr__(self) -> str:
        return repr(self._native)


def load(model: Any, x: Any = None, *, arch: Optional[str] = None, input: Optional[Sequence[int]] = None) -> Model:
    """Loads `model` once: an ONNX file, safetensors weights with `arch=` (a preset or an
    architecture TOML), or a `torch.nn.Module` (exported to ONNX in a temporary folder). The
    image shape comes from `x` (images `[n, c, h, w]`) or `input=(c, h, w)`; a preset or a torch
    module needs one of them."""
    if isinstance(model, Model):
        if arch is not None and arch != model.arch:
            raise bad("arch", f"given with a loaded model (its arch: {model.arch}); accepted: leave it out")
        return model
    import numpy as np

    shape = tuple(int(d) for d in np.shape(x)[1:]) if x is not None and np.ndim(x) == 4 else None
    if input is not None:
        shape = tuple(input)
        whole = [isinstance(d, (int, np.integer)) and not isinstance(d, bool) and 1 <= d <= 1 << 20 for d in shape]
        if len(shape) != 3 or not all(whole):
            raise bad("input", f"{shape}; accepted: (c, h, w), three whole numbers from 1")
        shape = tuple(int(d) for d in shape)
    keep = None
    if is_torch_module(model):
        if shape is None:
            raise bad("input", "missing for a torch.nn.Module; accepted: x (images [n, c, h, w]) or input=(c, h, w)")
        keep = tempfile.TemporaryDirectory(prefix="sanity-model-")
        example = x if x is not None else np.zeros((1, *shape), dtype=np.float32)
        path, arch = model_file(model, arch, example, Path(keep.name))
    else:
        path, arch = model_file(model, arch, None, Path("."))
    return Model(_native.load(path, arch, shape), keep)

def is_torch_module(model: Any) -> bool:
    """Whether `model` is a `torch.nn.Module` (without importing torch when it is not loaded)."""
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, torch.nn.Module)


def model_file(model: Any, arch: Optional[str], example: Any, folder: Path) -> Tuple[Path, Optional[str]]:
    """The model as the engine takes it: `(path, arch)`, with `arch` None for an ONNX file. A
    torch module is exported to `folder/model-<digest>.onnx` (the digest of the export, so
    that a rerun finds the same file and a run resumes); `example` is an input batch."""
    if isinstance(model, Model):
        if arch is not None and arch != model.arch:
            raise bad("arch", f"given with a loaded model (its arch: {model.arch}); accepted: leave it out")
        return model.path, model.arch
    if is_torch_module(model):
        if arch is not None:
            raise bad("arch", "given with a torch.nn.Module; accepted: arch only with a safetensors file")
        return export_onnx(model, example, folder), None
    if not isinstance(model, (str, os.PathLike)):
        raise bad(
            "model",
            f"{type(model).__name__}; accepted: an ONNX file, a safetensors file with arch=PRESET or "
            "arch=ARCHITECTURE.toml, a torch.nn.Module (with torch installed), or a sanity.Model",
        )
    path = Path(model)
    if path.suffix == ".safetensors" and arch is None:
        raise bad("arch", f"missing for the weights {path}; accepted: a preset name or an architecture TOML")
    if path.suffix != ".safetensors" and arch is not None:
        raise bad("arch", f"given with {path}; accepted: arch only with a .safetensors file")
    if not path.exists():
        raise bad("model", f"{path}: no such file")
    return path, arch


def export_onnx(module: Any, example: Any, folder: Path) -> Path:
    """Exports `module` (in evaluation mode, its mode restored after) with torch.onnx.export's
    TorchScript exporter at opset 17, for one image of `example`'s shape; the batch is a
    dynamic axis."""
    import numpy as np
    import torch

    x = torch.from_numpy(np.ascontiguousarray(np.asarray(example, dtype=np.float32)[:1]))
    # The example goes where the module's parameters are (a module on a GPU exports from there).
    parameter = next(module.parameters(), None)
    if parameter is not None:
        x = x.to(device=parameter.device, dtype=parameter.dtype)
    folder.mkdir(parents=True, exist_ok=True)
    staging = folder / f"export-{os.getpid()}.onnx"
    was_training = module.training
    module.eval()
    try:
        torch.onnx.export(
            module,
            (x,),
            str(staging),
            dynamo=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            opset_version=17,
        )
    except Exception as e:  # torch raises many kinds; every one is an export failure
        staging.unlink(missing_ok=True)
        raise bad(
            "model",
            f"torch.onnx.export failed: {type(e).__name__}: {e}; the ONNX ops sanity runs: {', '.join(onnx_ops())}",
        ) from e
    finally:
        module.train(was_training)
    digest = hashlib.sha256(staging.read_bytes()).hexdigest()[:16]
    path = folder / f"model-{digest}.onnx"
    os.replace(staging, path)
    return path

