//! `sanity compare`: the similarity of two stacks of maps (NPY), pair by pair, under
//! post-processing pipelines and metrics written as in a config, so that maps from any tool can
//! be scored the same way as a run's.

use rayon::prelude::*;
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

/// The `--postprocess` steps, parsed and checked.
pub(crate) fn parse_steps(texts: &[String]) -> Result<Vec<PostStep>> {
    let steps: Vec<PostStep> = texts.iter().map(|s| parse_item(s, "step", "--postprocess")).collect::<Result<_>>()?;
    for step in &steps {
        step.validate().map_err(|e| bad("--postprocess", e))?;
    }
    Ok(steps)
}

/// The `--metric` metrics, parsed and checked (at least one).
pub(crate) fn parse_metrics(texts: &[String]) -> Result<Vec<MetricSpec>> {
    let metrics: Vec<MetricSpec> = texts.iter().map(|m| parse_item(m, "metric", "--metric")).collect::<Result<_>>()?;
    if metrics.is_empty() {
        return Err(bad(
            "--metric",
            format!("none given; accepted: {}", sanity_metrics::registry::metric_ids().join(", ")),
        ));
    }
    for metric in &metrics {
        metric.validate().map_err(|e| bad("--metric", e))?;
    }
    Ok(metrics)
}

fn read_maps(path: &Path) -> Result<(Vec<f32>, [usize; 4])> {
    // The project's NPY reader: it trusts no length in the file (fuzzed), and reads npz members.
    let array = sanity_data::npy::read_array(&path.display().to_string())?;
    let dims = match *array.shape.as_slice() {
        [n, c, h, w] if c * h * w > 0 => [n, c, h, w],
        [n, h, w] if h * w > 0 => [n, 1, h, w],
        ref other => {
            return Err(bad(
                &path.display().to_string(),
                format!("shape {other:?}; accepted: [n, c, h, w] or [n, h, w], no empty map"),
            ));
        }
    };
    Ok((array.values.iter().map(|&v| v as f32).collect(), dims))
}

/// Scores every pair `(a_i, b_i)` under each metric after the post-processing, pairs in
/// parallel; rows in pair order, then metric order.
pub fn compare(job: &CompareJob) -> Result<Vec<CompareRow>> {
    let (steps, metrics) = (parse_steps(&job.postprocess)?, parse_metrics(&job.metrics)?);
    let ((a, da), (b, db)) = (read_maps(&job.a)?, read_maps(&job.b)?);
    if da != db {
        return Err(bad(&job.b.display().to_string(), format!("shape {db:?}, but {} has {da:?}", job.a.display())));
    }
    let [n, c, h, w] = da;
    let per = c * h * w;
    let label = pipeline_label(&steps);
    let rows: Vec<Vec<CompareRow>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let prepare = |v: &[f32]| apply_all(&steps, Map::new(v[i * per..(i + 1) * per].to_vec(), [c, h, w]));
            let (pa, pb) = (prepare(&a), prepare(&b));
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
