//! `sanity._native`: the engine behind the Python package `sanity` (`python/sanity/`). Each
//! function is a thin call of the same job the command line runs (`sanity_cli::jobs`), with
//! arrays crossing as NPY bytes (read by the project's NPY reader, which trusts nothing in
//! them) and structured arguments as JSON; the work runs with the GIL released
//! (`engine::run_detached`, in `src/engine.rs`), and errors become the exceptions of
//! `src/errors.rs`.

mod engine;
mod errors;
mod inputs;

use engine::{Stop, run_detached};
use errors::to_py;
use inputs::{config_plans, npy, parse_json, tagged_list};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use sanity_cli::jobs::JobModel;
use sanity_cli::jobs::attribute::{
    LoadedModel, Targets, attribute as attribute_maps, images_of, load_model, method_of, references_of,
};
use sanity_cli::jobs::compare::{checked_metrics, checked_steps, compare_maps, maps_of};
use sanity_cli::jobs::run::{RunEvent, RunRequest, run_plans};
use sanity_report::{ReportOptions, report as draw_report};
use std::path::PathBuf;
use std::sync::Arc;

/// One score of `compare`: pair, post-processing label, metric, score (None when there is
/// none), status (`ok` or why there is no score).
type CompareRow = (usize, String, &'static str, Option<f64>, &'static str);

/// Scores every pair `(a[i], b[i])` (NPY bytes of `[n, c, h, w]` or `[n, h, w]`) under each
/// metric after the post-processing. `metrics` and `postprocess` are JSON lists of names or
/// tables, as a config writes them.
#[pyfunction]
#[pyo3(signature = (a, b, metrics, postprocess, threads=None))]
fn compare(
    py: Python<'_>,
    a: Vec<u8>,
    b: Vec<u8>,
    metrics: &str,
    postprocess: &str,
    threads: Option<usize>,
) -> PyResult<Vec<CompareRow>> {
    let metrics = tagged_list(py, metrics, "metric", "metrics")?;
    let steps = tagged_list(py, postprocess, "step", "postprocess")?;
    let (metrics, steps) = (
        checked_metrics(metrics, "metrics").map_err(|e| to_py(py, e))?,
        checked_steps(steps, "postprocess").map_err(|e| to_py(py, e))?,
    );
    run_detached(py, threads, None, Stop::AtOnce, move |_| {
        let (a, b) = (maps_of(npy(&a, "a")?, "a")?, maps_of(npy(&b, "b")?, "b")?);
        let rows = compare_maps((&a, "a"), (&b, "b"), &steps, &metrics)?;
        Ok(rows.into_iter().map(|r| (r.pair, r.postprocess, r.metric, r.score, r.status)).collect())
    })
}

/// A model loaded once (parsed, its weights converted) for any number of [`attribute`] calls:
/// an ONNX file, or safetensors weights with a preset or architecture TOML.
#[pyclass(frozen, module = "sanity._native")]
struct Model {
    loaded: Arc<LoadedModel>,
    path: PathBuf,
    arch: Option<String>,
}

#[pymethods]
impl Model {
    /// The file it was loaded from.
    #[getter]
    fn path(&self) -> PathBuf {
        self.path.clone()
    }

    /// The preset or architecture TOML of safetensors weights; None for an ONNX file.
    #[getter]
    fn arch(&self) -> Option<String> {
        self.arch.clone()
    }

    /// The image shape `(c, h, w)` it takes.
    #[getter]
    fn input(&self) -> (usize, usize, usize) {
        let [c, h, w] = self.loaded.input;
        (c, h, w)
    }

    /// Its outputs (logits).
    #[getter]
    fn outputs(&self) -> usize {
        self.loaded.model.net.num_outputs()
    }

    fn __repr__(&self) -> String {
        let [c, h, w] = self.loaded.input;
        format!("Model({}, input ({c}, {h}, {w}), {} outputs)", self.loaded.name, self.outputs())
    }
}

/// Loads a model: an ONNX file (`arch` None) or safetensors weights with a preset or
/// architecture TOML (`arch`), for images of shape `input` (`[c, h, w]`; needed for a preset,
/// checked against what the others declare).
#[pyfunction]
#[pyo3(signature = (model, arch=None, input=None))]
fn load(py: Python<'_>, model: PathBuf, arch: Option<String>, input: Option<[usize; 3]>) -> PyResult<Model> {
    let job_model = match &arch {
        None => JobModel::Onnx(model.clone()),
        Some(arch) => JobModel::Sequential { arch: arch.clone(), weights: model.clone() },
    };
    let loaded = run_detached(py, None, None, Stop::AtOnce, move |_| load_model(&job_model, input, "x"))?;
    Ok(Model { loaded: Arc::new(loaded), path: model, arch })
}

/// One method's maps of the images `x` (NPY bytes of float `[n, c, h, w]`) under a loaded
/// model. `method` is a JSON table (`{"method": "integrated_gradients", "steps": 20}`);
/// `targets` NPY bytes of one integer per image (None: the model's predictions). Returns the
/// maps as NPY bytes (float32 `[n, c', h, w]`) and the targets explained.
#[pyfunction]
#[pyo3(signature = (model, x, method, targets=None, references=None, batch=32, threads=None))]
#[allow(clippy::too_many_arguments)]
fn attribute(
    py: Python<'_>,
    model: &Bound<'_, Model>,
    x: Vec<u8>,
    method: &str,
    targets: Option<Vec<u8>>,
    references: Option<Vec<u8>>,
    batch: usize,
    threads: Option<usize>,
) -> PyResult<(Py<PyBytes>, Vec<usize>)> {
    let spec = match parse_json(py, method, "method")? {
        toml::Value::Table(table) => method_of(table, "method").map_err(|e| to_py(py, e))?,
        other => return Err(errors::bad_input(py, "method", format!("{other}; accepted: a table with `method`"))),
    };
    if !(1..=sanity_experiments::limits::MAX_ATTRIBUTION_BATCH).contains(&batch) {
        let most = sanity_experiments::limits::MAX_ATTRIBUTION_BATCH;
        return Err(errors::bad_input(py, "batch", format!("{batch}; accepted: a whole number from 1 to {most}")));
    }
    let loaded = model.get().loaded.clone();
    let (maps, used) = run_detached(py, threads, None, Stop::AtOnce, move |_| {
        let images = images_of(npy(&x, "x")?, "x")?;
        let [_, c, h, w] = images.dims;
        loaded.check_input([c, h, w], "x")?;
        let targets = match targets {
            Some(bytes) => Targets::PerImage(npy(&bytes, "targets")?, "targets".into()),
            None => Targets::Predicted,
        };
        let references = match references {
            Some(bytes) => Some(references_of(npy(&bytes, "references")?, "references", [c, h, w])?),
            None => None,
        };
        let (maps, used) = attribute_maps(&loaded.model, images, &spec, &targets, references.as_ref(), batch)?;
        Ok((sanity_data::npy::f32_npy(&maps.dims, &maps.values), used))
    })?;
    Ok((PyBytes::new(py, &maps).unbind(), used))
}

/// What a finished run reports: its directory, the explained model's test accuracy, the rows
/// of scores.csv, the seconds it took.
type RunRow = (PathBuf, f64, usize, f64);

/// Runs a config: `kind` is `path` (a TOML file; `config` its path), `toml` (`config` the
/// text), `json` (`config` a JSON object, the config as a dict) or `quick` (the embedded
/// `experiments/quick.toml`). `overrides` are `KEY=VALUE` as `--set` takes them. Returns one
/// row per run (several for a `[sweep]`).
#[pyfunction]
#[pyo3(signature = (kind, config, overrides, out=None, force=false, resume=false, model_cache=true, threads=None, progress=None))]
#[allow(clippy::too_many_arguments)]
fn run(
    py: Python<'_>,
    kind: &str,
    config: &str,
    overrides: Vec<String>,
    out: Option<PathBuf>,
    force: bool,
    resume: bool,
    model_cache: bool,
    threads: Option<usize>,
    progress: Option<Bound<'_, PyAny>>,
) -> PyResult<Vec<RunRow>> {
    if force && resume {
        return Err(errors::bad_input(py, "force", "given with resume; accepted: one of them"));
    }
    let plans = config_plans(py, kind, config, &overrides)?;
    let stop = Stop::cleanly();
    let interrupt = stop.flag();
    run_detached(py, threads, progress.as_ref(), stop, move |on_progress| {
        let threads = rayon::current_num_threads();
        let request = RunRequest { out, force, resume, model_cache, shard: None, threads, interrupt };
        let outcomes = run_plans(&plans, &request, &mut |event| match event {
            RunEvent::Progress(p) => on_progress(p),
            RunEvent::Finished(o) => on_progress(sanity_experiments::Progress::Note(format!(
                "done in {:.1} s with {threads} threads: test accuracy {:.4}, {} scores in {}",
                o.seconds,
                o.test_accuracy,
                o.score_rows,
                o.run_dir.display()
            ))),
            RunEvent::Started | RunEvent::NothingToDo(_) => {}
        })?;
        Ok(outcomes.into_iter().map(|o| (o.run_dir, o.test_accuracy, o.score_rows, o.seconds)).collect())
    })
}

/// The largest map cell of the report's grids, in pixels (`sanity report --cell`'s bound).
const MAX_CELL: u32 = 1024;

/// What `sanity plan` prints for a config given as [`run`] takes it.
#[pyfunction]
#[pyo3(signature = (kind, config, overrides))]
fn plan(py: Python<'_>, kind: &str, config: &str, overrides: Vec<String>) -> PyResult<String> {
    Ok(sanity_cli::plan_text(&config_plans(py, kind, config, &overrides)?))
}

/// Draws the figures of the finished run in `dir` and writes its report.md, as `sanity report`
/// does. Returns each figure's PNG (relative to `dir`) and caption.
#[pyfunction]
#[pyo3(signature = (dir, examples=None, cell=112, threads=None))]
fn report(
    py: Python<'_>,
    dir: PathBuf,
    examples: Option<usize>,
    cell: u32,
    threads: Option<usize>,
) -> PyResult<Vec<(String, String)>> {
    if !(sanity_report::report::MIN_CELL..=MAX_CELL).contains(&cell) {
        let why = format!("{cell}; accepted: a whole number from {} to {MAX_CELL}", sanity_report::report::MIN_CELL);
        return Err(errors::bad_input(py, "cell", why));
    }
    if let Some(n) = examples.filter(|&n| n > sanity_experiments::limits::MAX_EXAMPLES) {
        let most = sanity_experiments::limits::MAX_EXAMPLES;
        return Err(errors::bad_input(py, "examples", format!("{n}; accepted: a whole number from 0 to {most}")));
    }
    run_detached(py, threads, None, Stop::AtOnce, move |_| {
        let figures = draw_report(&dir, &ReportOptions { examples, cell })?;
        Ok(figures.into_iter().map(|f| (f.png, f.caption)).collect())
    })
}

/// The memory a run may take, in bytes: plans that would take more are refused before they
/// start (`--memory-limit`; default: the machine's).
#[pyfunction]
fn set_memory_limit(bytes: u64) {
    sanity_experiments::limits::set_memory_limit(bytes);
}

/// The method ids with a line of help each, as `sanity attribute --help` lists them.
#[pyfunction]
fn method_help() -> String {
    sanity_attribution::registry::method_help()
}

/// The metric ids with a line of help each, as `sanity compare --help` lists them.
#[pyfunction]
fn metric_help() -> String {
    sanity_metrics::registry::metric_help()
}

/// The ONNX ops the engine runs (a model with any other op is refused, naming it).
#[pyfunction]
fn onnx_ops() -> Vec<&'static str> {
    sanity_model::onnx::SUPPORTED_OPS.to_vec()
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("SanityError", py.get_type::<errors::SanityError>())?;
    m.add("BadInput", py.get_type::<errors::BadInput>())?;
    m.add("Interrupted", py.get_type::<errors::Interrupted>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<Model>()?;
    for f in [
        wrap_pyfunction!(compare, m)?,
        wrap_pyfunction!(attribute, m)?,
        wrap_pyfunction!(run, m)?,
        wrap_pyfunction!(plan, m)?,
        wrap_pyfunction!(load, m)?,
        wrap_pyfunction!(report, m)?,
        wrap_pyfunction!(set_memory_limit, m)?,
        wrap_pyfunction!(method_help, m)?,
        wrap_pyfunction!(metric_help, m)?,
        wrap_pyfunction!(onnx_ops, m)?,
    ] {
        m.add_function(f)?;
    }
    Ok(())
}
