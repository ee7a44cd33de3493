"""Errors found before the engine runs, raised as the engine raises its own."""

from ._native import BadInput


def bad(what: str, message: str) -> BadInput:
    """A `BadInput` naming the argument `what` (exit code 2, as the command line's)."""
    error = BadInput(f"{what}: {message}")
    error.exit_code = 2
    return error
