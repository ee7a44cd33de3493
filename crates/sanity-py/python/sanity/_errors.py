"""Errors found before the engine runs, raised as the engine raises its own."""

from typing import Any, Optional

from ._native import BadInput


def bad(what: str, message: str) -> BadInput:
    """A `BadInput` naming the argument `what` (exit code 2, as the command line's)."""
    error = BadInput(f"{what}: {message}")
    error.exit_code = 2
    return error


def count(value: Any, what: str, lo: int = 1, hi: int = 1 << 32) -> Optional[int]:
    """A whole number from `lo` to `hi` (None passes through); anything else is a `BadInput`
    (a bool too, though Python counts it as an int)."""
    if value is None:
        return None
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
        raise bad(what, f"{value!r}; accepted: a whole number from {lo} to {hi}")
    return int(value)
