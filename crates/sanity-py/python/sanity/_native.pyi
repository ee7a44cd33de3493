"""Type stubs of the engine module (crates/sanity-py/src/lib.rs)."""

import os
from typing import Callable, List, Optional, Tuple

__version__: str

class SanityError(RuntimeError):
    exit_code: int

class BadInput(ValueError):
    exit_code: int

class Interrupted(KeyboardInterrupt):
    exit_code: int

def compare(
    a: bytes, b: bytes, metrics: str, postprocess: str, threads: Optional[int] = None
) -> List[Tuple[int, str, str, Optional[float], str]]: ...
def attribute(
    model: Model,
    x: bytes,
    method: str,
    targets: Optional[bytes] = None,
    references: Optional[bytes] = None,
    batch: int = 32,
    threads: Optional[int] = None,
) -> Tuple[bytes, List[int]]: ...
def run(
    kind: str,
    config: str,
    overrides: List[str],
    out: "Optional[str | os.PathLike[str]]" = None,
    force: bool = False,
    resume: bool = False,
    model_cache: bool = True,
    threads: Optional[int] = None,
    progress: Optional[Callable[[str, str, int], None]] = None,
) -> List[Tuple[str, float, int, float]]: ...
class Model:
    path: str
    arch: Optional[str]
    input: Tuple[int, int, int]
    outputs: int

def load(
    model: "str | os.PathLike[str]", arch: Optional[str] = None, input: Optional[Tuple[int, int, int]] = None
) -> Model: ...
def plan(kind: str, config: str, overrides: List[str]) -> str: ...
def report(
    dir: "str | os.PathLike[str]", examples: Optional[int] = None, cell: int = 112, threads: Optional[int] = None
) -> List[Tuple[str, str]]: ...
def set_memory_limit(bytes: int) -> None: ...  # 0: the machine's memory
def method_help() -> str: ...
def metric_help() -> str: ...
def onnx_ops() -> List[str]: ...
