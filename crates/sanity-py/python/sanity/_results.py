"""A finished run as Python sees it: its directory, and its CSVs as DataFrames."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from . import _native
from ._errors import count


def table(path: Path) -> Any:
    """A CSV as a pandas DataFrame when pandas is importable, else a list of dicts (every value
    a string, as the file has it)."""
    try:
        import pandas
    except ImportError:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))
    # Statuses and labels stay strings; an empty score is NaN.
    return pandas.read_csv(path, keep_default_na=False, na_values=[""])


def rows(records: List[Dict[str, Any]], columns: List[str]) -> Any:
    """Rows built in memory, as [`table`] returns a file's (the columns even with no row)."""
    try:
        import pandas
    except ImportError:
        return records
    return pandas.DataFrame.from_records(records, columns=columns)


class RunResult:
    """A finished run: `dir`, `test_accuracy`, `score_rows`, `seconds`; the tables `scores`,
    `summary` and `verdicts` (read when first asked for); `report()` draws the figures."""

    def __init__(self, dir: Path, test_accuracy: float, score_rows: int, seconds: float) -> None:
        self.dir = Path(dir)
        self.test_accuracy = test_accuracy
        self.score_rows = score_rows
        self.seconds = seconds
        self._tables: Dict[str, Any] = {}

    def _table(self, name: str) -> Any:
        if name not in self._tables:
            path = self.dir / f"{name}.csv"
            if not path.exists():
                raise FileNotFoundError(f"{path}: the run wrote no {name}.csv")
            self._tables[name] = table(path)
        return self._tables[name]

    @property
    def scores(self) -> Any:
        """scores.csv: one row per image, model, method, post-processing and metric."""
        return self._table("scores")

    @property
    def summary(self) -> Any:
        """summary.csv: means with confidence intervals, `n` and `n_degenerate` per group."""
        return self._table("summary")

    @property
    def verdicts(self) -> Any:
        """verdicts.csv: each stage against its ceiling and floor, with the test's verdict."""
        return self._table("verdicts")

    @property
    def manifest(self) -> Dict[str, Any]:
        """manifest.json: versions, seeds, timings, threads."""
        with open(self.dir / "manifest.json") as f:
            return json.load(f)

    def report(self, examples: Optional[int] = None, cell: int = 112, threads: Optional[int] = None) -> List[Tuple[Path, str]]:
        """Draws the figures (`figures/*.png`, `*.svg`) and writes `report.md`, as
        `sanity report DIR` does; returns each figure's PNG path and caption."""
        examples = None if examples is None else count(examples, "examples", 0)
        figures = _native.report(self.dir, examples, count(cell, "cell"), count(threads, "threads", 1, 1024))
        return [(self.dir / png, caption) for png, caption in figures]

    def __repr__(self) -> str:
        return (
            f"RunResult(dir={str(self.dir)!r}, test_accuracy={self.test_accuracy:.4f}, "
            f"score_rows={self.score_rows}, seconds={self.seconds:.1f})"
        )


RunResults = Union[RunResult, List[RunResult]]
