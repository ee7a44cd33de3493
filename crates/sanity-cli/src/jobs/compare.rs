//! `sanity compare`: the similarity of two stacks of maps (NPY), pair by pair, under
//! post-processing pipelines and metrics written as in a config, so that maps from any tool can
//! be scored the same way as a run's.

use rayon::prelude::*;
use sanity_data::npy::NpyArray;
use sanity_metrics::{Map, MetricSpec, PostStep, Status, apply_all, pipeline_label};
use sanity_rundir::error::{ExperimentError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// What to compare.
#[derive(Debug, Clone)]
pub struct CompareJob {
    /// Maps, NPY `[n, c, h, w]` or `[n, h, w]`.
    pub a: PathBuf,
    /// Maps of the same shape.
    pub b: PathBuf,
    /// Post-processing steps: a name (`abs`) or a TOML inline table (`{ step = "normalize", mode = "min_max" }`).
    pub postprocess: Vec<String>,
    /// Metrics: a name (`spearman`) or a TOML inline table (`{ metric = "ssim", data_range = 1.0 }`).
    pub metrics: Vec<String>,
}

/// One score.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    /// The pair's index.
    pub pair: usize,
    /// The post-processing label.
    pub postprocess: String,
    /// The metric id.
    pub metric: &'static str,
    /// The score, when there is one.
    pub score: Option<f64>,
    /// `ok` or why there is no score.
    pub status: &'static str,
}

fn bad(what: &str, message: String) -> ExperimentError {
    ExperimentError::config(what, message)
}

/// A name (`abs`) or an inline table, parsed with `key` (`step` or `metric`) as the tag.
pub(crate) fn parse_item<T: for<'de> Deserialize<'de>>(text: &str, key: &str, what: &str) -> Result<T> {
    let source = match text.trim_start().starts_with('{') {
        true => format!("item = {text}"),
        false => format!("item = {{ {key} = \"{}\" }}", text.trim()),
    };
    #[derive(Deserialize)]
    struct Item<T> {
        item: T,
    }
    toml::from_str::<Item<T>>(&source)
        .map(|i| i.item)
        .map_err(|e| bad(what, sanity_rundir::diagnostics::with_suggestion(format!("`{text}`: {e}"))))
}

/// A name (a string) or a table, already parsed (from Python's JSON), with `key` as the tag.
pub fn parse_value<T: for<'de> Deserialize<'de>>(value: toml::Value, key: &str, what: &str) -> Result<T> {
    let value = match value {
        toml::Value::String(name) => toml::Value::Table(toml::Table::from_iter([(key.to_string(), name.into())])),
        other => other,
    };
    let shown = value.to_string();
    T::deserialize(value).map_err(|e| bad(what, sanity_rundir::diagnostics::with_suggestion(format!("`{shown}`: {e}"))))
}

/// The `--postprocess` steps, parsed and checked.
pub(crate) fn parse_steps(texts: &[String]) -> Result<Vec<PostStep>> {
    let steps: Vec<PostStep> = texts.iter().map(|s| parse_item(s, "step", "--postprocess")).collect::<Result<_>>()?;
    checked_steps(steps, "--postprocess")
}

/// Post-processing steps whose parameters are in range (`what` names them in errors).
pub fn checked_steps(steps: Vec<PostStep>, what: &str) -> Result<Vec<PostStep>> {
    for step in &steps {
        step.validate().map_err(|e| bad(what, e))?;
    }
    Ok(steps)
}

/// The `--metric` metrics, parsed and checked (at least one).
pub(crate) fn parse_metrics(texts: &[String]) -> Result<Vec<MetricSpec>> {
    let metrics: Vec<MetricSpec> = texts.iter().map(|m| parse_item(m, "metric", "--metric")).collect::<Result<_>>()?;
    checked_metrics(metrics, "--metric")
}

/// Metrics whose parameters are in range, at least one (`what` names them in errors).
pub fn checked_metrics(metrics: Vec<MetricSpec>, what: &str) -> Result<Vec<MetricSpec>> {
    if metrics.is_empty() {
        return Err(bad(what, format!("none given; accepted: {}", sanity_metrics::registry::metric_ids().join(", "))));
    }
    for metric in &metrics {
        metric.validate().map_err(|e| bad(what, e))?;
    }
    Ok(metrics)
}

/// A stack of maps: float32 values and `[n, c, h, w]`.
#[derive(Debug, Clone)]
pub struct Maps {
    /// The values, image after image.
    pub values: Vec<f32>,
    /// `[n, c, h, w]` (`[n, 1, h, w]` for maps given as `[n, h, w]`).
    pub dims: [usize; 4],
}

/// The maps of an array read from NPY (`what` names it in errors: a file or an argument).
pub fn maps_of(array: NpyArray, what: &str) -> Result<Maps> {
    let dims = match *array.shape.as_slice() {
        [n, c, h, w] if c * h * w > 0 => [n, c, h, w],
        [n, h, w] if h * w > 0 => [n, 1, h, w],
        ref other => {
            return Err(bad(what, format!("shape {other:?}; accepted: [n, c, h, w] or [n, h, w], no empty map")));
        }
    };
    Ok(Maps { values: array.values.iter().map(|&v| v as f32).collect(), dims })
}

fn read_maps(path: &Path) -> Result<Maps> {
    // The project's NPY reader: it trusts no length in the file (fuzzed), and reads npz members.
    let shown = path.display().to_string();
    maps_of(sanity_data::npy::read_array(&shown)?, &shown)
}

/// Scores every pair `(a_i, b_i)` under each metric after the post-processing, pairs in
/// parallel; rows in pair order, then metric order.
pub fn compare(job: &CompareJob) -> Result<Vec<CompareRow>> {
    let (steps, metrics) = (parse_steps(&job.postprocess)?, parse_metrics(&job.metrics)?);
    let (a, b) = (read_maps(&job.a)?, read_maps(&job.b)?);
    compare_maps((&a, &job.a.display().to_string()), (&b, &job.b.display().to_string()), &steps, &metrics)
}

/// [`compare`] on maps in memory, each with its name for errors.
pub fn compare_maps(
    (a, a_name): (&Maps, &str),
    (b, b_name): (&Maps, &str),
    steps: &[PostStep],
    metrics: &[MetricSpec],
) -> Result<Vec<CompareRow>> {
    if a.dims != b.dims {
        return Err(bad(b_name, format!("shape {:?}, but {a_name} has {:?}", b.dims, a.dims)));
    }
    let [n, c, h, w] = a.dims;
    let per = c * h * w;
    let label = pipeline_label(steps);
    let rows: Vec<Vec<CompareRow>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let prepare = |v: &[f32]| apply_all(steps, Map::new(v[i * per..(i + 1) * per].to_vec(), [c, h, w]));
            let (pa, pb) = (prepare(&a.values), prepare(&b.values));
            metrics
                .iter()
                .map(|metric| {
                    let score = metric.score_processed(&pa, &pb);
                    CompareRow {
                        pair: i,
                        postprocess: label.clone(),
                        metric: metric.id(),
                        score: score.ok(),
                        status: score.err().map_or("ok", Status::as_str),
                    }
                })
                .collect()
        })
        .collect();
    Ok(rows.into_iter().flatten().collect())
}
