"""`sanity.compare`: the scores of `sanity compare`, statuses where there is no score, and the
command line's errors as exceptions."""

from __future__ import annotations

import math

import numpy as np
import pytest

import sanity
from conftest import run_cli

METRICS = ["spearman", {"metric": "ssim", "data_range": 1.0}, "pearson"]
STEPS = ["abs", {"step": "normalize", "mode": "min_max"}]


def maps(seed: int, shape=(5, 1, 16, 16)) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def test_scores_equal_the_command_line_s(cli, tmp_path):
    a, b = maps(0), maps(0) + 0.5 * maps(1)
    b[3] = 0.0  # a constant map: a status, not a score
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    ours = sanity.compare(a, b, metrics=METRICS, postprocess=STEPS)
    args = ["compare", "a.npy", "b.npy", "--postprocess", "abs", "--postprocess", '{ step = "normalize", mode = "min_max" }']
    args += ["--metric", "spearman", "--metric", '{ metric = "ssim", data_range = 1.0 }', "--metric", "pearson"]
    done = run_cli(cli, *args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "pair,postprocess,metric,score,status"
    assert len(ours) == len(lines) - 1 == 15
    for (_, row), line in zip(ours.iterrows(), lines[1:]):
        pair, postprocess, metric, score, status = line.split(",")
        assert (row.pair, row.postprocess, row.metric, row.status) == (int(pair), postprocess, metric, status)
        assert (math.isnan(row.score) and score == "") or row.score == float(score)
    assert set(ours[ours.pair == 3].status) == {"constant_map"}
    assert (ours[ours.pair != 3].status == "ok").all()


def test_a_map_against_itself_scores_one():
    a = maps(2)
    scores = sanity.compare(a, a, metrics=["spearman", "pearson"])
    assert np.allclose(scores.score, 1.0)


def test_maps_of_three_dimensions_are_one_channel_maps():
    a, b = maps(3, (4, 8, 8)), maps(4, (4, 8, 8))
    flat = sanity.compare(a, b, metrics=["spearman", "pearson"])
    channel = sanity.compare(a[:, None], b[:, None], metrics=["spearman", "pearson"])
    assert flat.equals(channel)
    assert list(flat.pair) == [0, 0, 1, 1, 2, 2, 3, 3]


def test_non_finite_maps_get_a_status_as_on_the_command_line():
    a = maps(4)
    b = a.copy()
    b[1, 0, 2, 2] = np.nan
    scores = sanity.compare(a, b)
    assert scores.status.tolist() == ["ok", "non_finite", "ok", "ok", "ok"]


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "message"),
    [
        (maps(5), maps(5, (5, 1, 16, 8)), {}, r"b: shape \[5, 1, 16, 8\], but a has \[5, 1, 16, 16\]"),
        (np.zeros((5, 16)), np.zeros((5, 16)), {}, r"a: shape \[5, 16\]; accepted: \[n, c, h, w\] or \[n, h, w\]"),
        (np.array([["x"]]), maps(5), {}, r"a: dtype <U1; accepted: float32 or float64"),
        (maps(5), maps(5), {"metrics": ["spearmn"]}, r"metrics\[0\].*spearmn.*spearman"),
        (maps(5), maps(5), {"metrics": []}, r"metrics: none given; accepted: .*spearman"),
        (maps(5), maps(5), {"metrics": [{"metric": "ssim", "data_range": -1.0}]}, r"metrics: data_range = -1; accepted: a finite value > 0"),
        (maps(5), maps(5), {"postprocess": [{"step": "normalize", "mode": "sideways"}]}, r"postprocess\[0\]: .*unknown variant `sideways`, expected one of `max_abs`"),
        (maps(5), maps(5), {"metrics": [{"metric": "ssim", "data_range": float("nan")}]}, r"metrics: .*finite"),
        (maps(5), maps(5), {"threads": 0}, r"threads: 0; accepted: a whole number from 1 to 1024"),
        (maps(5), maps(5), {"threads": 10**6}, r"threads: 1000000; accepted"),
    ],
)
def test_bad_input_raises_bad_input_naming_the_argument(a, b, kwargs, message):
    with pytest.raises(sanity.BadInput, match=message) as raised:
        sanity.compare(a, b, **kwargs)
    assert raised.value.exit_code == 2
    assert isinstance(raised.value, ValueError)


def test_no_pairs_give_the_columns_and_no_row():
    empty = sanity.compare(np.zeros((0, 4, 4)), np.zeros((0, 4, 4)))
    assert list(empty.columns) == ["pair", "postprocess", "metric", "score", "status"] and len(empty) == 0


def test_a_lone_metric_name_is_a_list_of_one():
    a = maps(6)
    assert set(sanity.compare(a, a, metrics="pearson").metric) == {"pearson"}


@pytest.mark.parametrize("threads", [-1, 1.5, True, "2"])
def test_a_thread_count_that_is_no_whole_number_is_bad_input(threads):
    with pytest.raises(sanity.BadInput, match="threads: .*; accepted: a whole number from 1"):
        sanity.compare(maps(7), maps(7), threads=threads)


def test_a_ragged_list_is_bad_input():
    with pytest.raises(sanity.BadInput, match="a: not an array"):
        sanity.compare([[1.0, 2.0], [3.0]], maps(7))
