"""Arrays cross into the engine as NPY bytes: the engine reads them with the same NPY reader
(and the same checks, with the same messages) as the files the command line is given."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from ._errors import bad


def to_npy(value: Any, what: str) -> bytes:
    """`value` (an array or anything numpy turns into one) as NPY bytes; `what` names the
    argument in errors. Object and string arrays are refused here (NPY cannot carry them
    without pickling); every other check is the engine's."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError) as e:  # a ragged list, say
        raise bad(what, f"not an array: {e}; accepted: a numpy array or nested lists of one shape") from None
    if array.dtype.kind not in "biuf":
        raise bad(what, f"dtype {array.dtype}; accepted: float32 or float64 (integers or bool for labels and targets)")
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array), allow_pickle=False)
    return buffer.getvalue()


def from_npy(data: bytes) -> np.ndarray:
    """An array from the engine's NPY bytes."""
    return np.load(io.BytesIO(data), allow_pickle=False)

