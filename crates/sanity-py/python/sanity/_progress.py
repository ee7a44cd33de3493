"""Progress as the command line shows it: a bar redrawn in place on a terminal; in a notebook
(or anywhere standard error is not a terminal), a line per phase and at every quarter of it,
so that the cell's output stays short and readable."""

from __future__ import annotations

import sys
import time
from typing import Optional, TextIO

#: Seconds between two redraws of the bar on a terminal.
_REDRAW = 0.1
#: Fractions of a phase at which a notebook gets a line.
_MARKS = (0.25, 0.5, 0.75)


class Progress:
    """The callable the engine hands its progress events to: `(kind, text, count)` with kind
    `phase`, `advance`, `note` or `status`."""

    def __init__(self, stream: Optional[TextIO] = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        isatty = getattr(self.stream, "isatty", None)
        self.terminal = bool(isatty and isatty())
        self.name = ""
        self.total = 0
        self.done = 0
        self.status = ""
        self.started = time.monotonic()
        self.drawn = 0.0
        self.marks_shown = 0
        self.line_open = False

    def __call__(self, kind: str, text: str, count: int) -> None:
        if kind == "phase":
            self._end_line()
            self.name, self.total, self.done, self.status = text, count, 0, ""
            self.started, self.marks_shown = time.monotonic(), 0
            self._draw(force=True)
        elif kind == "advance":
            self.done += count
            self._draw(force=self.done >= self.total)
        elif kind == "status":
            self.status = text
            self._draw(force=False)
        elif kind == "note":
            self._end_line()
            self._write(text + "\n")
            if self.terminal and self.total:
                self._draw(force=True)

    def close(self) -> None:
        """Ends the bar's line (on a terminal)."""
        self._end_line()

    def _line(self) -> str:
        width = 30
        filled = width * self.done // self.total if self.total else 0
        bar = "=" * filled + (">" if filled < width else "") + " " * max(0, width - filled - 1)
        seconds = time.monotonic() - self.started
        status = f"  {self.status}" if self.status else ""
        return f"{self.name:<28} [{bar}] {self.done}/{self.total} {seconds:.0f} s{status}"

    def _draw(self, force: bool) -> None:
        now = time.monotonic()
        if self.terminal:
            if force or now - self.drawn >= _REDRAW:
                self._write("\r\x1b[2K" + self._line())
                self.drawn, self.line_open = now, True
            return
        # A notebook: the phase's first line, one at each quarter, and its last.
        fraction = self.done / self.total if self.total else 0.0
        reached = sum(fraction >= m for m in _MARKS)
        start = self.done == 0 and force
        end = self.total > 0 and self.done >= self.total and force
        if start or end or reached > self.marks_shown:
            self.marks_shown = reached
            self._write(self._line() + "\n")

    def _end_line(self) -> None:
        if self.line_open:
            self._write("\n")
            self.line_open = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()
