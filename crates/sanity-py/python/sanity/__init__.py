"""Sanity checks for saliency maps (Adebayo et al. 2018, "Sanity Checks for Saliency Maps";
Quantus' MPRT and its successors) from Python, on the engine of the `sanity` command line.

- `compare(a, b, metrics=..., postprocess=...)`: scores of map pairs, with statuses;
- `attribute(model, x, method, targets=None, **params)`: one method's maps;
- `load(model, x)`: a model loaded once for many `attribute` calls;
- `run(config, out=None, overrides=())`: an experiment config, as `sanity run` runs it;
- `check(model, x, y, methods=..., tests=..., preset=...)`: the one-call sanity check of a
  model on arrays in memory;
- `plan(config)`: what a run would do, as `sanity plan` prints it.

Arrays are numpy arrays; the tables are pandas DataFrames when pandas is importable (lists of
dicts otherwise). Errors are `BadInput` (a `ValueError`: the message names the argument, file or
config key and what is accepted; the command line's exit code 2), `SanityError` (a
`RuntimeError`: exit code 1) and `Interrupted` (a `KeyboardInterrupt`: Ctrl-C stopped a run,
its work kept; the same call with `resume=True` goes on).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Union

import numpy as np

from . import _native
from ._arrays import from_npy, to_npy
from ._errors import bad, count
from ._models import Model, load, model_file
from ._native import BadInput, Interrupted, SanityError
from ._progress import Progress
from ._results import RunResult, RunResults, rows

__version__: str = _native.__version__
__all__ = [
    "BadInput",
    "Interrupted",
    "Model",
    "RunResult",
    "SanityError",
    "attribute",
    "check",
    "compare",
    "load",
    "methods",
    "metrics",
    "plan",
    "run",
    "set_memory_limit",
]

#: A metric or post-processing step: a name (`"spearman"`) or a dict (`{"metric": "ssim",
#: "data_range": 1.0}`), as a config writes them.
Spec = Union[str, Mapping[str, Any]]
#: A config: a TOML file's path, a TOML text, or the config as a dict.
ConfigLike = Union[str, "os.PathLike[str]", Mapping[str, Any]]
#: Progress: True (shown on standard error), False (none) or a callable `(kind, text, count)`.
ProgressLike = Union[bool, Callable[[str, str, int], None]]


def methods() -> str:
    """The attribution methods, an id and a line of help each."""
    return _native.method_help()


def metrics() -> str:
    """The similarity metrics, an id and a line of help each."""
    return _native.metric_help()


def set_memory_limit(gib: Optional[float]) -> None:
    """The memory a run may take, in GiB: plans that would take more are refused before they
    start (the command line's `--memory-limit`). None: the machine's memory (the default)."""
    if gib is None:
        _native.set_memory_limit(0)
        return
    if isinstance(gib, bool) or not isinstance(gib, (int, float)) or not (0.01 <= gib <= 1e6):
        raise bad("gib", f"{gib}; accepted: a number from 0.01 to 1000000, or None for the machine's memory")
    _native.set_memory_limit(int(gib * (1 << 30)))


def compare(
    a: Any,
    b: Any,
    metrics: Sequence[Spec] = ("spearman",),
    postprocess: Sequence[Spec] = (),
    threads: Optional[int] = None,
) -> Any:
    """Scores each pair of maps `(a[i], b[i])` (arrays `[n, c, h, w]` or `[n, h, w]` of one
    shape) under each metric, after the post-processing steps (applied to both, in order), as
    `sanity compare` does. Returns a table with one row per pair and metric: `pair`,
    `postprocess`, `metric`, `score` (NaN when there is none) and `status` (`ok`, or why there
    is no score: `constant_map`, `non_finite`, ...)."""
    scored = _native.compare(
        to_npy(a, "a"),
        to_npy(b, "b"),
        _json(_listed(metrics), "metrics"),
        _json(_listed(postprocess), "postprocess"),
        count(threads, "threads", 1, 1024),
    )
    columns = ["pair", "postprocess", "metric", "score", "status"]
    records = [dict(zip(columns, r)) for r in scored]
    for r in records:
        r["score"] = float("nan") if r["score"] is None else r["score"]
    return rows(records, columns)


def attribute(
    model: Any,
    x: Any,
    method: str,
    targets: Union[None, int, Sequence[int], np.ndarray] = None,
    *,
    arch: Optional[str] = None,
    layer: Optional[str] = None,
    references: Any = None,
    batch: int = 32,
    threads: Optional[int] = None,
    **params: Any,
) -> np.ndarray:
    """One method's maps of the images `x` (float `[n, c, h, w]`), float32 `[n, c', h, w]`.

    `model` is an ONNX file (exported by `torch.onnx.export`), a safetensors file with
    `arch=` a preset name or an architecture TOML, a `torch.nn.Module` (exported to ONNX in
    a temporary folder; needs torch and onnx), or a `sanity.Model` from `sanity.load` (loaded
    once: for many calls, loading costs more than a gradient of a small batch). `targets`: the explained output, one for all or
    one per image (default: the model's predictions). `layer`: the CAM methods' layer. `params`
    are the method's parameters (`steps=20`, `rule="riemann_trapezoid"`, ...), as a config's
    method table writes them; `sanity.methods()` lists the methods."""
    spec: Dict[str, Any] = {"method": method, **params}
    if layer is not None:
        spec["layer"] = layer
    x_npy = to_npy(x, "x")
    n = int(np.shape(x)[0]) if np.ndim(x) > 0 else 0
    target_npy = None
    if targets is not None:
        if np.ndim(targets) == 0:
            targets = np.full(n, targets)
        target_npy = to_npy(targets, "targets")
    reference_npy = None if references is None else to_npy(references, "references")
    loaded = load(model, x, arch=arch)
    maps, _used = _native.attribute(
        loaded._native,
        x_npy,
        _json(spec, "method"),
        target_npy,
        reference_npy,
        count(batch, "batch"),
        count(threads, "threads", 1, 1024),
    )
    return from_npy(maps)


def run(
    config: Optional[ConfigLike] = None,
    out: Union[None, str, "os.PathLike[str]"] = None,
    overrides: Union[Iterable[str], Mapping[str, Any]] = (),
    *,
    force: bool = False,
    resume: bool = False,
    model_cache: bool = True,
    threads: Optional[int] = None,
    progress: ProgressLike = True,
) -> RunResults:
    """Runs an experiment config as `sanity run` does and returns its result (a list of them
    for a config with a `[sweep]`).

    `config`: a TOML file's path, a TOML text (anything with a newline or `=`), a dict (the
    config's tables as dicts), or None (the embedded `experiments/quick.toml`). `out`: the run
    directory (default `results/NAME/RUN_ID`). `overrides`: `"KEY=VALUE"` strings as `--set`
    takes them, or a dict `{"training.epochs": 2}`. `resume=True` goes on from an interrupted
    run (Ctrl-C stops after the image batch in flight and raises `Interrupted`); `force=True`
    replaces a finished one."""
    kind, text = _config(config)
    sets = _overrides(overrides)
    shown = Progress() if progress is True else None
    callback = shown if shown is not None else (progress if callable(progress) else None)
    try:
        outcomes = _native.run(kind, text, sets, _path(out), force, resume, model_cache, count(threads, "threads", 1, 1024), callback)
    finally:
        if shown is not None:
            shown.close()
    results = [RunResult(*o) for o in outcomes]
    return results[0] if len(results) == 1 else results


def plan(config: Optional[ConfigLike] = None, overrides: Union[Iterable[str], Mapping[str, Any]] = ()) -> str:
    """What `sanity plan` prints: the run's stages, models and scores to compute, and the
    resolved config (every default filled in); a sweep's runs one per line."""
    kind, text = _config(config)
    return _native.plan(kind, text, _overrides(overrides))


def check(
    model: Any,
    x: Any,
    y: Any,
    *,
    methods: Sequence[Spec] = ("gradient", "integrated_gradients", "gradcam"),
    tests: Optional[Sequence[Mapping[str, Any]]] = None,
    preset: Optional[str] = "quantus",
    comparisons: Optional[Sequence[Mapping[str, Any]]] = None,
    arch: Optional[str] = None,
    masks: Any = None,
    class_names: Optional[Sequence[str]] = None,
    num_classes: Optional[int] = None,
    batch_size: Optional[int] = None,
    seed: int = 0,
    name: str = "check",
    out: Union[None, str, "os.PathLike[str]"] = None,
    overrides: Union[Iterable[str], Mapping[str, Any]] = (),
    force: bool = False,
    resume: bool = False,
    threads: Optional[int] = None,
    progress: ProgressLike = True,
) -> RunResults:
    """The sanity check of a trained model on arrays in memory, in one call: the model's maps
    of the images `x` (float `[n, c, h, w]`) with labels `y` (`[n]` integers), under every
    method, compared across the models of the tests, with the controls and verdicts of
    `sanity run`.

    `model`: an ONNX file, safetensors weights with `arch=`, a `torch.nn.Module` (exported
    to ONNX) or a `sanity.Model`. `methods`: method ids or dicts (`{"method": "gradcam", "layer": "layer4"}`).
    `tests` and `comparisons`: as a config's `[[tests]]` and `[[comparisons]]`, as dicts;
    left out, the preset's (`quantus`: a top-down cascade with PyTorch's re-initialisation,
    |map| scaled by its maximum, Spearman). `masks` (`[n, h, w]`, 0/1) allow a
    `{"kind": "localisation"}` test. The arrays are written beside the run (in
    `OUT/../inputs/` or `results/NAME/inputs/`), named by their content, so that the same call
    finds them again and `resume=True` goes on. `num_classes` defaults to the model's outputs
    (2 for a single logit), so that `y` need not hold every class. Returns the run's result."""
    root = Path(out).parent if out is not None else Path("results") / name
    inputs = root / "inputs"
    data: Dict[str, Any] = {"source": "arrays"}
    for key, value, what in (("images", x, "x"), ("labels", y, "y"), ("masks", masks, "masks")):
        if value is None:
            continue
        path = _stored(to_npy(value, what), inputs, key)
        data[key] = str(path)
        data[f"test_{key}"] = str(path)
    if class_names is not None:
        data["class_names"] = list(class_names)
    path, arch = model_file(model, arch, x, inputs)
    if isinstance(model, Model) and model._keep is not None:
        # A loaded torch module's export lives in a temporary folder: the run keeps its own copy.
        path = _stored(path.read_bytes(), inputs, "model", ".onnx")
    if num_classes is None and np.ndim(x) == 4:
        # The model's classes, not the largest label + 1: a sample may miss the last classes.
        num_classes = max(2, load(path, x, arch=arch).outputs)
    if num_classes is not None:
        data["num_classes"] = num_classes
    model_table = {"onnx": str(path)} if arch is None else {"arch": arch, "weights": str(path)}
    attribution: Dict[str, Any] = {
        "n_images": int(np.shape(x)[0]) if np.ndim(x) > 0 else 0,
        "methods": [{"method": m} if isinstance(m, str) else dict(m) for m in _listed(methods)],
    }
    if batch_size is not None:
        attribution["batch_size"] = batch_size
    config: Dict[str, Any] = {"name": name, "seed": seed, "data": data, "model": model_table, "attribution": attribution}
    if preset is not None:
        config["preset"] = preset
    if tests is not None:
        config["tests"] = [dict(t) for t in tests]
    if comparisons is not None:
        config["comparisons"] = [dict(c) for c in comparisons]
    return run(config, out, overrides, force=force, resume=resume, threads=threads, progress=progress)


def _json(value: Any, what: str) -> str:
    """`value` as JSON for the engine (numpy scalars as numbers)."""

    def plain(v: Any) -> Any:
        if isinstance(v, np.generic):
            return v.item()
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        raise bad(what, f"{v!r} of type {type(v).__name__}; accepted: strings, numbers, booleans, lists and dicts")

    try:
        return json.dumps(value, default=plain, allow_nan=False, ensure_ascii=False)
    except BadInput:
        raise
    except ValueError as e:  # NaN or infinity: no JSON (nor TOML parameter) takes them
        raise bad(what, f"{e}; accepted: finite numbers") from None


def _listed(value: Any) -> List[Any]:
    """A list of specs; a lone name or dict is a list of one."""
    if isinstance(value, (str, Mapping)):
        return [value]
    return list(value)


def _config(config: Optional[ConfigLike]) -> "tuple[str, str]":
    """The config as the engine takes it: `(kind, text)`."""
    if config is None:
        return "quick", ""
    if isinstance(config, Mapping):
        return "json", _json(dict(config), "config")
    if isinstance(config, os.PathLike):
        return "path", os.fspath(config)
    if isinstance(config, str):
        # A path unless it is plainly TOML: a newline, or an `=` in a name that is no file.
        plainly_toml = "\n" in config or ("=" in config and not config.endswith(".toml") and not os.path.exists(config))
        return ("toml", config) if plainly_toml else ("path", config)
    raise bad("config", f"{type(config).__name__}; accepted: a TOML file's path, a TOML text, a dict or None")


def _overrides(overrides: Union[Iterable[str], Mapping[str, Any]]) -> List[str]:
    """`--set` assignments from strings or a dict (values written as TOML values)."""
    if isinstance(overrides, str):
        return [overrides]
    if isinstance(overrides, Mapping):
        return [f"{k}={_toml_value(v)}" for k, v in overrides.items()]
    return [str(o) for o in overrides]


def _toml_value(value: Any) -> str:
    """A Python value as a TOML value (strings quoted; JSON's numbers, booleans and arrays are
    TOML's; dicts as inline tables)."""
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{_json(str(k), 'overrides')} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if value is None:
        raise bad("overrides", "None; accepted: strings, numbers, booleans, lists and dicts")
    return _json(value, "overrides")


def _path(p: Union[None, str, "os.PathLike[str]"]) -> Optional[str]:
    return None if p is None else os.fspath(p)


def _stored(data: bytes, folder: Path, key: str, suffix: str = ".npy") -> Path:
    """Bytes kept at `folder/KEY-<digest>SUFFIX` (written once; an absolute path)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = (folder / f"{key}-{hashlib.sha256(data).hexdigest()[:16]}{suffix}").resolve()
    if not path.exists():
        # A staging file of its own (threads of one process may store the same array at once).
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{key}-", delete=False) as staging:
            staging.write(data)
        os.replace(staging.name, path)
    return path
