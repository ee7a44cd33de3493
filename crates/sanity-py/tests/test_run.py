"""`sanity.run` and `sanity.plan`: a config as a path, a TOML text or a dict gives the command
line's bytes; Ctrl-C stops a run as it does on the command line, and `resume=True` finishes it
to the same bytes; bad configs raise `BadInput` naming the key."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

import sanity
from conftest import ROOT, TINY_OVERRIDES, run_cli, tiny_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the suite runs on 3.11
    tomllib = None

#: What verdicts.csv's `verdict` holds (crates/sanity-experiments/src/verdicts.rs).
VERDICTS = {"at_floor", "at_ceiling", "distinct_from_both", "indistinct", "not_tested", "inconclusive_target_not_reached"}
RESULTS = ("scores.csv", "summary.csv", "verdicts.csv", "split.csv", "config.resolved.toml")


@pytest.fixture(scope="module")
def cli_run(cli, tmp_path_factory) -> Path:
    """The tiny config run by the command line."""
    folder = tmp_path_factory.mktemp("cli")
    (folder / "tiny.toml").write_text(tiny_toml())
    done = run_cli(cli, "run", "tiny.toml", "--out", "run", "--threads", "2", "--no-model-cache", cwd=folder)
    assert done.returncode == 0, done.stderr
    return folder / "run"


def same_bytes(ours: Path, theirs: Path) -> None:
    for name in RESULTS:
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


@pytest.mark.parametrize("form", ["path", "toml", "dict"])
def test_a_config_in_any_form_gives_the_command_line_s_bytes(cli_run, tmp_path, form):
    (tmp_path / "tiny.toml").write_text(tiny_toml())
    config = {
        "path": tmp_path / "tiny.toml",
        "toml": tiny_toml(),
        "dict": tomllib.loads(tiny_toml()) if tomllib else None,
    }[form]
    result = sanity.run(config, out=tmp_path / "run", threads=1, model_cache=False, progress=False)
    assert isinstance(result, sanity.RunResult)
    assert result.dir == tmp_path / "run" and result.score_rows > 0
    same_bytes(result.dir, cli_run)
    assert len(result.scores) == result.score_rows
    assert {"n", "n_degenerate", "mean", "ci_low", "ci_high"} <= set(result.summary.columns)
    assert set(result.verdicts.verdict) <= VERDICTS and len(result.verdicts) > 0
    assert result.manifest["threads"] == 1


def test_the_embedded_default_with_overrides_is_the_tiny_config(cli_run, tmp_path):
    result = sanity.run(None, out=tmp_path / "run", overrides=TINY_OVERRIDES, model_cache=False, progress=False)
    for name in ("scores.csv", "summary.csv", "verdicts.csv"):
        assert (result.dir / name).read_bytes() == (cli_run / name).read_bytes(), name


def test_ctrl_c_stops_after_the_batch_and_resume_finishes_to_the_same_bytes(cli_run, tmp_path, ctrl_c):
    fired = []

    def progress(kind: str, text: str, count: int) -> None:
        # Ctrl-C as the first image batch finishes: three of the four are left.
        if kind == "advance" and not fired and phase[-1].startswith("attribution"):
            fired.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    phase = [""]

    def track(kind: str, text: str, count: int) -> None:
        if kind == "phase":
            phase.append(text)
        progress(kind, text, count)

    out = tmp_path / "run"
    with pytest.raises(sanity.Interrupted, match=r"interrupted: \d of 4 image batches are finished and kept") as raised:
        sanity.run(tiny_toml(), out=out, model_cache=False, progress=track)
    assert raised.value.exit_code == 130
    assert "resume=True" in str(raised.value)
    assert isinstance(raised.value, KeyboardInterrupt)
    finished = len((out / "units.jsonl").read_text().splitlines())
    assert 1 <= finished < 4
    assert not (out / "summary.csv").exists()
    with pytest.raises(sanity.BadInput, match="resume"):
        sanity.run(tiny_toml(), out=out, model_cache=False, progress=False)
    result = sanity.run(tiny_toml(), out=out, model_cache=False, resume=True, progress=False)
    same_bytes(result.dir, cli_run)


def test_a_finished_run_is_kept_unless_forced(tmp_path):
    out = tmp_path / "run"
    sanity.run(tiny_toml(), out=out, model_cache=False, progress=False)
    with pytest.raises(sanity.BadInput, match="--force") as raised:
        sanity.run(tiny_toml(), out=out, model_cache=False, progress=False)
    assert raised.value.exit_code == 2
    sanity.run(tiny_toml(), out=out, model_cache=False, progress=False, force=True)


def test_a_sweep_gives_one_result_per_run(tmp_path):
    text = tiny_toml() + "\n[sweep]\nseed = [1, 2]\n"
    results = sanity.run(text, out=tmp_path / "sweep", model_cache=False, progress=False)
    assert isinstance(results, list) and len(results) == 2
    assert results[0].dir.parent == results[1].dir.parent == tmp_path / "sweep"


def test_progress_reaches_the_callable_and_the_default_shows_lines(tmp_path, capsys):
    events = []
    sanity.run(tiny_toml(), out=tmp_path / "a", model_cache=False, progress=lambda *e: events.append(e))
    kinds = {k for k, _, _ in events}
    assert {"phase", "advance", "note"} <= kinds
    phases = [t for k, t, _ in events if k == "phase"]
    assert any(p.startswith("training") for p in phases) and any(p.startswith("attribution") for p in phases)
    sanity.run(tiny_toml(), out=tmp_path / "b", model_cache=False)
    shown = capsys.readouterr().err
    assert "attribution and scores" in shown and "4/4" in shown and "done in" in shown
    assert "\r" not in shown  # not a terminal: lines, not a redrawn bar


def test_plan_is_the_command_line_s(cli, tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text(tiny_toml())
    done = run_cli(cli, "plan", "tiny.toml", "--set", "seed=3", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    monkeypatch.chdir(tmp_path)
    assert sanity.plan("tiny.toml", overrides=["seed=3"]) == done.stdout
    assert sanity.plan("tiny.toml", overrides={"seed": 3}) == done.stdout


def test_report_draws_the_figures(tmp_path):
    result = sanity.run(tiny_toml(), out=tmp_path / "run", model_cache=False, progress=False)
    figures = result.report()
    assert figures and all(png.exists() and png.suffix == ".png" for png, _ in figures)
    names = {png.name for png, _ in figures}
    assert "curves-cascading-top_down-raw.png" in names and "maps-cascading-top_down-raw-image-0000.png" in names
    assert all(caption for _, caption in figures)
    assert (result.dir / "report.md").exists()


@pytest.mark.parametrize(
    ("config", "overrides", "error", "message"),
    [
        ("tiny", ["training.epochz=2"], sanity.BadInput, r"epochz"),
        ("tiny", ["attribution.n_images=0"], sanity.BadInput, r"attribution.n_images"),
        ("tiny", {"model.arch": "phantom-cn"}, sanity.BadInput, r"phantom-cn.*phantom-cnn"),
        ('name = "x"\n[data]\nsource = "phantom"\n', [], sanity.BadInput, r"(?s)<config string>: TOML parse error at line 2.*missing field `n_train`"),
        ({"name": "x", "data": {"source": "nowhere"}}, [], sanity.BadInput, r"(?s)<config dict>: .*unknown variant `nowhere`, expected one of `phantom`"),
        ({"name": None}, [], sanity.BadInput, r"config: .*accepted: strings, numbers"),
        ("missing-config.toml", [], sanity.BadInput, r"missing-config.toml: cannot read the config"),
        (42, [], sanity.BadInput, r"config: int; accepted"),
    ],
)
def test_bad_configs_raise_bad_input_naming_the_key(tmp_path, config, overrides, error, message):
    config = tiny_toml() if config == "tiny" else config
    with pytest.raises(error, match=message) as raised:
        sanity.run(config, out=tmp_path / "run", overrides=overrides, progress=False)
    assert raised.value.exit_code == 2


def test_the_engine_s_failures_are_sanity_errors(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(sanity.SanityError) as raised:
        sanity.run(tiny_toml(), out=blocker / "run", model_cache=False, progress=False)
    assert raised.value.exit_code == 1 and isinstance(raised.value, RuntimeError)
    assert str(blocker) in str(raised.value)


def test_other_python_threads_run_while_the_engine_works(tmp_path):
    import threading
    import time

    ticks = []
    done = threading.Event()

    def tick():
        while not done.is_set():
            ticks.append(time.monotonic())
            time.sleep(0.005)

    thread = threading.Thread(target=tick)
    thread.start()
    try:
        started = time.monotonic()
        sanity.run(tiny_toml(), out=tmp_path / "run", model_cache=False, progress=False)
        ended = time.monotonic()
    finally:
        done.set()
        thread.join()
    during = [t for t in ticks if started < t < ended]
    # The GIL is released: the other thread ticks through the run (it could not while held).
    assert ended - started > 0.05
    assert len(during) >= 5


def test_a_memory_limit_refuses_a_plan_before_it_runs():
    big = tiny_toml().replace("size = 64", "size = 256")
    sanity.set_memory_limit(0.01)
    try:
        # 0.01 GiB = 10.24 MiB, shown with one decimal.
        with pytest.raises(sanity.BadInput, match=r"more than the limit of 10.2 MiB \(the limit set with --memory-limit"):
            sanity.plan(big)
    finally:
        sanity.set_memory_limit(None)
    assert sanity.plan(big).startswith("run ")
    with pytest.raises(sanity.BadInput, match="gib: 0; accepted"):
        sanity.set_memory_limit(0)


def test_the_help_lists_every_method_and_metric():
    ids = lambda text: {line.split(":")[0] for line in text.splitlines()}  # noqa: E731
    assert {"gradient", "integrated_gradients", "gradcam", "scorecam"} <= ids(sanity.methods())
    assert {"spearman", "ssim", "hog_pearson"} <= ids(sanity.metrics())


def test_a_progress_callable_that_raises_stops_the_run_cleanly(cli_run, tmp_path):
    def progress(kind: str, text: str, count: int) -> None:
        if kind == "advance" and text == "" and progress.attribution:
            raise ValueError("the callable's own bug")
        if kind == "phase":
            progress.attribution = text.startswith("attribution")

    progress.attribution = False
    out = tmp_path / "run"
    with pytest.raises(ValueError, match="the callable's own bug"):
        sanity.run(tiny_toml(), out=out, model_cache=False, progress=progress)
    assert 1 <= len((out / "units.jsonl").read_text().splitlines()) < 4
    result = sanity.run(tiny_toml(), out=out, model_cache=False, resume=True, progress=False)
    same_bytes(result.dir, cli_run)


def test_ctrl_c_stops_a_run_without_progress_shown(tmp_path, ctrl_c):
    """Without a progress callable no Python code runs during the run: the engine itself must
    look for the signal, however fast the batches come."""
    import threading
    import time

    text = tiny_toml().replace("n_images = 8\nbatch_size = 2", "n_images = 24\nbatch_size = 1")
    out = tmp_path / "run"

    def interrupt_after_the_first_batch():
        journal = out / "units.jsonl"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (journal.exists() and journal.read_text().strip()):
            time.sleep(0.002)
        os.kill(os.getpid(), signal.SIGINT)

    killer = threading.Thread(target=interrupt_after_the_first_batch)
    killer.start()
    try:
        with pytest.raises(sanity.Interrupted):
            sanity.run(text, out=out, model_cache=False, progress=False)
    finally:
        killer.join()
    assert 1 <= len((out / "units.jsonl").read_text().splitlines()) < 24


def test_force_and_resume_together_are_refused(tmp_path):
    with pytest.raises(sanity.BadInput, match="force: given with resume; accepted: one of them"):
        sanity.run(tiny_toml(), out=tmp_path / "run", force=True, resume=True, progress=False)


def test_report_refuses_sizes_beyond_its_bounds(tmp_path):
    result = sanity.run(tiny_toml(), out=tmp_path / "run", model_cache=False, progress=False)
    for cell, message in [(60000, r"cell: 60000; accepted: a whole number from 16 to 1024"), (2**32 + 1, r"cell: 4294967297"), (8, r"cell: 8; accepted")]:
        with pytest.raises(sanity.BadInput, match=message):
            result.report(cell=cell)
    with pytest.raises(sanity.BadInput, match=r"examples: -1"):
        result.report(examples=-1)


def test_a_config_path_with_an_equals_sign_is_a_path(tmp_path):
    folder = tmp_path / "lr=0.1"
    folder.mkdir()
    (folder / "c.toml").write_text(tiny_toml())
    assert sanity.plan(str(folder / "c.toml")).startswith("run ")


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"name": None}, sanity.BadInput, r"overrides: None"),
        ({"training.epochs": 1.5}, sanity.BadInput, r"training.epochs"),
    ],
)
def test_bad_override_values_are_refused(overrides, error, message):
    with pytest.raises(error, match=message):
        sanity.plan(tiny_toml(), overrides=overrides)


def test_an_override_string_keeps_every_character():
    # The engine refuses the name, quoting it as it arrived (not as JSON's escapes).
    with pytest.raises(sanity.BadInput, match="key `name`: \"run \U0001F600\" is not usable as a directory name"):
        sanity.plan(tiny_toml(), overrides={"name": "run \U0001F600"})
