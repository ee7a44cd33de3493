//! The rows of `scores.csv` and `summary.csv` (docs/run-directory.md) and their writers.

use crate::error::{ExperimentError, Result};
use crate::statistics::{Summary, crossed_interval, summarize};
use sanity_data::{fnv1a, stream_rng};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};

/// One comparison of one map pair: long format, one observation per row.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct ScoreRow {
    /// The run.
    pub run_id: String,
    /// The sanity test (`cascading`).
    pub test: String,
    /// `top_down` or `bottom_up`.
    pub order: String,
    /// 1-based stage number: how many layers are randomised.
    pub stage_index: usize,
    /// The layer randomised last at this stage.
    pub stage: String,
    /// Which independent re-initialisation of the stage (0-based; `tests[i].draws`,
    /// `controls.draws` for the floor); 0 where nothing is randomised.
    #[serde(default)]
    pub draw: usize,
    /// The attribution method (of the first map).
    pub method: String,
    /// The method of the second map: the same method, except for `method_agreement` (the other
    /// method) and the `random_map` / `sobel` controls.
    pub method_b: String,
    /// The post-processing pipeline applied to both maps (`raw` = none).
    pub postprocess: String,
    /// The metric.
    pub metric: String,
    /// Index of the image in the test set.
    pub sample: usize,
    /// The image's true label.
    pub label: usize,
    /// The output explained by the second map (the randomised model's, the random logit, ...).
    pub target: usize,
    /// The metric's value for the pair (first map as the reference); empty when degenerate.
    pub score: Option<f64>,
    /// `ok`, or why there is no score (`constant_map`, `non_finite`, ...).
    pub status: String,
}

/// One row per (run, test, stage, method, postprocess, metric).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct SummaryRow {
    /// The run.
    pub run_id: String,
    /// The sanity test.
    pub test: String,
    /// Cascade order.
    pub order: String,
    /// 1-based stage number.
    pub stage_index: usize,
    /// The layer randomised last.
    pub stage: String,
    /// The method of the first maps.
    pub method: String,
    /// The method of the second maps.
    pub method_b: String,
    /// The post-processing pipeline.
    pub postprocess: String,
    /// The metric.
    pub metric: String,
    /// Valid scores (one per image and draw).
    pub n: usize,
    /// Scores with a degenerate status (not in the statistics).
    pub n_degenerate: usize,
    /// Of the row's images, those whose own map under the trained model (the method's
    /// original map, after the post-processing) is degenerate: their scores are missing at
    /// every stage, so the row's statistics rest on the others ([`degenerate_originals`]).
    #[serde(default)]
    pub n_degenerate_original: usize,
    /// Mean of the valid scores.
    pub mean: Option<f64>,
    /// Sample standard deviation (ddof 1).
    pub std: Option<f64>,
    /// Standard error of the mean.
    pub sem: Option<f64>,
    /// Median.
    pub median: Option<f64>,
    /// Lower end of the bootstrap confidence interval of the mean.
    pub ci_low: Option<f64>,
    /// Upper end of the bootstrap confidence interval of the mean.
    pub ci_high: Option<f64>,
    /// What the interval resamples: `images` (one draw: the images alone), or
    /// `draws_and_images` (several draws: [`crate::statistics::crossed_interval`]).
    #[serde(default)]
    pub ci_over: String,
    /// Independent re-initialisations scored (`draw` values of the rows).
    #[serde(default = "one")]
    pub draws: usize,
    /// Sample standard deviation (ddof 1) of the draws' own means: how much one
    /// re-initialisation moves the result. Empty with one draw.
    #[serde(default)]
    pub draw_std: Option<f64>,
    /// `ok`, `no_valid_scores`, or `single_value` (no spread or interval).
    pub status: String,
    /// Mean of the method's `repeat` control (original against original): the ceiling.
    pub control_repeat: Option<f64>,
    /// Mean of the method's `random_models` control (two untrained models): the null floor.
    pub control_random_models: Option<f64>,
    /// Mean of the method's map against a random map.
    pub control_random_map: Option<f64>,
    /// Mean of the method's map against the Sobel edge map.
    pub control_sobel: Option<f64>,
}

/// Writes rows to `<final>.partial` and flushes after each finished unit; [`RowWriter::finish`]
/// renames it into place, so a complete file only ever appears whole. The swept parameters of
/// a run, if any, are appended to every row as `param_<key>` columns (dots in the key become
/// underscores).
pub struct RowWriter {
    writer: csv::Writer<File>,
    partial: PathBuf,
    target: PathBuf,
    params: Vec<(String, String)>,
    header_written: bool,
}

impl RowWriter {
    /// Starts `path` (as `path.partial`).
    pub fn create(path: &Path) -> Result<Self> {
        Self::create_with_params(path, &[])
    }

    /// Starts `path` (as `path.partial`) with `params` as constant trailing columns.
    pub fn create_with_params(path: &Path, params: &[(String, String)]) -> Result<Self> {
        let partial = path.with_extension("csv.partial");
        let file = File::create(&partial).map_err(|e| ExperimentError::io(&partial, e))?;
        let writer = csv::WriterBuilder::new().has_headers(params.is_empty()).from_writer(file);
        Ok(Self { writer, partial, target: path.to_path_buf(), params: params.to_vec(), header_written: false })
    }

    /// Continues the partial file of `path` after its first `bytes` bytes (what a journal
    /// recorded as complete; the rest, cut short by a kill, is dropped); with no complete unit,
    /// starts it afresh.
    pub fn resume(path: &Path, params: &[(String, String)], bytes: u64) -> Result<Self> {
        if bytes == 0 {
            return Self::create_with_params(path, params);
        }
        let partial = path.with_extension("csv.partial");
        let file =
            std::fs::OpenOptions::new().write(true).open(&partial).map_err(|e| ExperimentError::io(&partial, e))?;
        file.set_len(bytes).map_err(|e| ExperimentError::io(&partial, e))?;
        let mut file = file;
        std::io::Seek::seek(&mut file, std::io::SeekFrom::End(0)).map_err(|e| ExperimentError::io(&partial, e))?;
        // The header is already in the file.
        let writer = csv::WriterBuilder::new().has_headers(false).from_writer(file);
        Ok(Self { writer, partial, target: path.to_path_buf(), params: params.to_vec(), header_written: true })
    }

    /// The rows of the partial file of `path` up to `bytes` (see [`RowWriter::resume`]).
    pub fn read_partial<T: serde::de::DeserializeOwned>(path: &Path, bytes: u64) -> Result<Vec<T>> {
        let partial = path.with_extension("csv.partial");
        let mut data = std::fs::read(&partial).map_err(|e| ExperimentError::io(&partial, e))?;
        data.truncate(bytes as usize);
        csv::Reader::from_reader(data.as_slice())
            .deserialize()
            .collect::<std::result::Result<Vec<T>, _>>()
            .map_err(|e| ExperimentError::io(&partial, e))
    }

    /// All rows of the CSV file at `path`, typed.
    /// A file that cannot be read is an I/O error; one whose rows do not parse (edited, cut
    /// short) is bad input, naming the row.
    pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>> {
        let fail = |e: csv::Error| match e.kind() {
            csv::ErrorKind::Io(_) => ExperimentError::io(path, e),
            _ => ExperimentError::Output {
                path: path.display().to_string(),
                message: format!("{e}; the file is damaged or was edited (run the experiment again to rewrite it)"),
            },
        };
        let mut reader = csv::Reader::from_path(path).map_err(fail)?;
        reader.deserialize().map(|r| r.map_err(fail)).collect()
    }

    /// The length of the partial file after a [`RowWriter::flush`].
    pub fn bytes(&self) -> Result<u64> {
        let meta = self.writer.get_ref().metadata().map_err(|e| ExperimentError::io(&self.partial, e))?;
        Ok(meta.len())
    }

    /// Appends rows.
    pub fn write<T: Serialize>(&mut self, rows: &[T]) -> Result<()> {
        let io = |e: csv::Error| ExperimentError::io(&self.partial, e);
        for row in rows {
            if self.params.is_empty() {
                self.writer.serialize(row).map_err(io)?;
                continue;
            }
            let (header, mut record) = as_record(row).map_err(io)?;
            if !self.header_written {
                let mut names = header;
                for (key, _) in &self.params {
                    names.push_field(&format!("param_{}", key.replace('.', "_")));
                }
                self.writer.write_record(&names).map_err(io)?;
                self.header_written = true;
            }
            for (_, value) in &self.params {
                record.push_field(value);
            }
            self.writer.write_record(&record).map_err(io)?;
        }
        Ok(())
    }

    /// Flushes what was written to disk (end of a unit of work).
    pub fn flush(&mut self) -> Result<()> {
        // csv's flush writes its buffer and flushes the file.
        self.writer.flush().map_err(|e| ExperimentError::io(&self.partial, e))
    }

    /// Flushes what was written and writes it through to the disk, so that a journal line
    /// written after it never vouches for rows a power cut could lose.
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.writer.get_ref().sync_data().map_err(|e| ExperimentError::io(&self.partial, e))
    }

    /// Flushes and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        self.flush()?;
        drop(self.writer);
        std::fs::rename(&self.partial, &self.target).map_err(|e| ExperimentError::io(&self.target, e))
    }
}

/// A row's header and fields as csv writes them.
fn as_record<T: Serialize>(row: &T) -> std::result::Result<(csv::StringRecord, csv::StringRecord), csv::Error> {
    let mut memory = csv::Writer::from_writer(Vec::new());
    memory.serialize(row)?;
    let bytes = memory.into_inner().map_err(|e| csv::Error::from(e.into_error()))?;
    let mut reader = csv::Reader::from_reader(bytes.as_slice());
    let header = reader.headers()?.clone();
    let record = reader.records().next().unwrap_or_else(|| Ok(csv::StringRecord::new()))?;
    Ok((header, record))
}

fn one() -> usize {
    1
}

/// The key of a summary group: test, order, stage index, stage, method, method_b,
/// post-processing, metric.
type GroupKey = (String, String, usize, String, String, String, String, String);

/// The stream index of a summary group: FNV-1a of its key fields joined by a unit separator.
fn group_hash(key: &GroupKey) -> u64 {
    let (test, order, index, stage, method, method_b, post, metric) = key;
    let index = index.to_string();
    fnv1a([test, order, &index, stage, method, method_b, post, metric].map(|s| s.as_str()).join("\u{1f}").as_bytes())
}

/// Groups score rows by (test, order, stage index, stage, method, method_b, postprocess, metric) in
/// first-seen order and summarises each over its images and draws; a group bootstraps from
/// `stream_rng(seed, "bootstrap", h)` with `h` the FNV-1a hash of its key, so its interval does
/// not depend on the row order or on the other groups. One draw: the percentile bootstrap of
/// the images; several: the crossed bootstrap of draws and images
/// ([`crate::statistics::crossed_interval`]). Each row carries the means of its method's
/// controls (same post-processing and metric).
pub fn summarize_rows(rows: &[ScoreRow], resamples: usize, confidence: f64, seed: u64) -> Vec<SummaryRow> {
    let key = |r: &ScoreRow| {
        (
            r.test.clone(),
            r.order.clone(),
            r.stage_index,
            r.stage.clone(),
            r.method.clone(),
            r.method_b.clone(),
            r.postprocess.clone(),
            r.metric.clone(),
        )
    };
    let mut order = Vec::new();
    let mut groups: std::collections::HashMap<GroupKey, Vec<&ScoreRow>> = std::collections::HashMap::new();
    for r in rows {
        let k = key(r);
        if !groups.contains_key(&k) {
            order.push(k.clone());
        }
        groups.entry(k).or_default().push(r);
    }
    let degenerate = degenerate_originals(rows);
    let mut summaries: Vec<SummaryRow> = order
        .iter()
        .map(|k| {
            let members = &groups[k];
            // The floor compares two untrained models' maps: the trained model's are not in it.
            let floor = k.0 == "control" && k.3 == "random_models";
            let n_degenerate_original = match degenerate.get(&(k.4.clone(), k.6.clone())) {
                Some((bad, _)) if !floor => {
                    members.iter().map(|r| r.sample).filter(|s| bad.contains(s)).collect::<BTreeSet<_>>().len()
                }
                _ => 0,
            };
            let draws: BTreeSet<usize> = members.iter().map(|r| r.draw).collect();
            let mut rng = stream_rng(seed, "bootstrap", group_hash(k));
            let (s, ci_over, draw_std) = summarize_group(members, &draws, resamples, confidence, &mut rng);
            let first = members[0];
            let status = match s.n {
                0 => "no_valid_scores",
                1 => "single_value",
                _ => "ok",
            };
            SummaryRow {
                run_id: first.run_id.clone(),
                test: first.test.clone(),
                order: first.order.clone(),
                stage_index: first.stage_index,
                stage: first.stage.clone(),
                method: first.method.clone(),
                method_b: first.method_b.clone(),
                postprocess: first.postprocess.clone(),
                metric: first.metric.clone(),
                n: s.n,
                n_degenerate: members.len() - s.n,
                n_degenerate_original,
                mean: s.mean,
                std: s.std,
                sem: s.sem,
                median: s.median,
                ci_low: s.ci_low,
                ci_high: s.ci_high,
                ci_over: ci_over.into(),
                draws: draws.len(),
                draw_std,
                status: status.into(),
                control_repeat: None,
                control_random_models: None,
                control_random_map: None,
                control_sobel: None,
            }
        })
        .collect();
    attach_controls(&mut summaries);
    summaries
}

/// The statistics of one group's scores (`draws`: the draws among them), what its interval
/// resamples, and the spread of the draws' own means: with one draw the percentile bootstrap
/// over images; with several the crossed bootstrap over draws and images.
fn summarize_group(
    members: &[&ScoreRow],
    draws: &BTreeSet<usize>,
    resamples: usize,
    confidence: f64,
    rng: &mut rand_chacha::ChaCha8Rng,
) -> (Summary, &'static str, Option<f64>) {
    let values: Vec<f64> = members.iter().filter_map(|r| r.score).collect();
    if draws.len() <= 1 {
        return (summarize(&values, resamples, confidence, rng), "images", None);
    }
    let cells: Vec<(usize, usize, f64)> = members.iter().filter_map(|r| Some((r.draw, r.sample, r.score?))).collect();
    let ci = crossed_interval(&cells, resamples, confidence, rng);
    let s = Summary { ci_low: ci.map(|c| c.0), ci_high: ci.map(|c| c.1), ..summarize(&values, 0, confidence, rng) };
    let per_draw: Vec<f64> = draws
        .iter()
        .filter_map(|&d| {
            let v: Vec<f64> = cells.iter().filter(|c| c.0 == d).map(|c| c.2).collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        })
        .collect();
    (s, "draws_and_images", summarize(&per_draw, 0, confidence, rng).std)
}

/// Puts beside each summary row the means of its method's controls under the same
/// post-processing and metric.
fn attach_controls(summaries: &mut [SummaryRow]) {
    let controls: std::collections::HashMap<(String, String, String, String), Option<f64>> = summaries
        .iter()
        .filter(|c| c.test == "control")
        .map(|c| ((c.stage.clone(), c.method.clone(), c.postprocess.clone(), c.metric.clone()), c.mean))
        .collect();
    for row in summaries.iter_mut() {
        let mean = |stage: &str| {
            let key = (stage.to_string(), row.method.clone(), row.postprocess.clone(), row.metric.clone());
            controls.get(&key).copied().flatten()
        };
        (row.control_repeat, row.control_random_models, row.control_random_map, row.control_sobel) =
            (mean("repeat"), mean("random_models"), mean("random_map"), mean("sobel"));
    }
}

/// Per (method, post-processing): the images whose original map (under the trained model) is
/// degenerate, and all images seen, read off the `repeat` control (the original map against
/// itself, or against a second draw of a stochastic method: empty when the original is
/// degenerate). None without the `repeat` control.
pub fn degenerate_originals(
    rows: &[ScoreRow],
) -> std::collections::BTreeMap<(String, String), (std::collections::BTreeSet<usize>, std::collections::BTreeSet<usize>)>
{
    let mut out: std::collections::BTreeMap<
        (String, String),
        (std::collections::BTreeSet<usize>, std::collections::BTreeSet<usize>),
    > = std::collections::BTreeMap::new();
    // An image counts when every metric of the pipeline found its maps degenerate (one
    // metric's own quirk, e.g. HOG features of a map that varies only at its border, does not).
    let mut healthy: std::collections::BTreeSet<(String, String, usize)> = std::collections::BTreeSet::new();
    for r in rows.iter().filter(|r| r.test == "control" && r.stage == "repeat") {
        let entry = out.entry((r.method.clone(), r.postprocess.clone())).or_default();
        entry.1.insert(r.sample);
        if r.score.is_none() && matches!(r.status.as_str(), "constant_map" | "non_finite") {
            entry.0.insert(r.sample);
        } else {
            healthy.insert((r.method.clone(), r.postprocess.clone(), r.sample));
        }
    }
    for ((method, postprocess), (bad, _)) in &mut out {
        bad.retain(|s| !healthy.contains(&(method.clone(), postprocess.clone(), *s)));
    }
    out
}

/// The share of degenerate original maps beyond which a run warns (Adebayo et al.'s Grad-CAM
/// reproduction lost 127 of 200 images to empty maps, unnoticed).
pub const DEGENERATE_ORIGINALS_WARNING: f64 = 0.05;

/// A line per method and post-processing whose original maps are degenerate for more than
/// [`DEGENERATE_ORIGINALS_WARNING`] of the images, read off the summary's `repeat` control rows
/// (`n_degenerate_original`): the run warns with them and `report.md` lists them.
pub fn degenerate_original_lines(summary: &[SummaryRow]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for ((method, postprocess), (empty, all)) in own_degenerate(summary) {
        let share = empty as f64 / all.max(1) as f64;
        if share > DEGENERATE_ORIGINALS_WARNING {
            out.push(format!(
                "`{method}`'s own maps are degenerate for {empty} of {all} images ({:.0}%) after `{postprocess}`: its scores there rest on the other {} (n_degenerate_original in summary.csv)",
                100.0 * share,
                all - empty
            ));
        }
    }
    out
}

/// Per (method, post-processing), in first-seen order: how many images have a degenerate map
/// of their own under the trained model, and how many images there are, read off the summary's
/// `repeat` control rows (one per metric; the largest count).
pub fn own_degenerate(summary: &[SummaryRow]) -> Vec<((String, String), (usize, usize))> {
    let mut out: Vec<((String, String), (usize, usize))> = Vec::new();
    for r in summary.iter().filter(|r| r.test == "control" && r.stage == "repeat") {
        let counts = (r.n_degenerate_original, r.n + r.n_degenerate);
        match out.iter_mut().find(|(k, _)| k.0 == r.method && k.1 == r.postprocess) {
            Some((_, seen)) => *seen = (*seen).max(counts),
            None => out.push(((r.method.clone(), r.postprocess.clone()), counts)),
        }
    }
    out
}

/// A row that scores one method under one post-processing and metric: a score row (one image)
/// or a summary row (one stage).
pub trait Scored {
    /// `(method, postprocess, metric)`.
    fn cell(&self) -> (&str, &str, &str);
    /// The control a control row compares with (`random_map`, `sobel`, ...); empty for the
    /// tests' rows.
    fn control(&self) -> &str {
        match self.place() {
            ("control", stage) => stage,
            _ => "",
        }
    }
    /// Whether it has a value.
    fn answered(&self) -> bool;
    /// Why it has none, and for how many maps.
    fn emptied_by(&self) -> (&str, usize);
    /// `(test, stage)`.
    fn place(&self) -> (&str, &str);
}

impl Scored for ScoreRow {
    fn cell(&self) -> (&str, &str, &str) {
        (&self.method, &self.postprocess, &self.metric)
    }
    fn answered(&self) -> bool {
        self.score.is_some()
    }
    fn emptied_by(&self) -> (&str, usize) {
        (&self.status, 1)
    }
    fn place(&self) -> (&str, &str) {
        (&self.test, &self.stage)
    }
}

impl Scored for SummaryRow {
    fn cell(&self) -> (&str, &str, &str) {
        (&self.method, &self.postprocess, &self.metric)
    }
    fn answered(&self) -> bool {
        self.mean.is_some()
    }
    fn emptied_by(&self) -> (&str, usize) {
        ("degenerate", self.n_degenerate)
    }
    fn place(&self) -> (&str, &str) {
        (&self.test, &self.stage)
    }
}

/// What a run says nothing about: each method whose every score is empty (all its maps
/// degenerate), and else each method x metric after a post-processing whose every score is,
/// with what emptied them (per-image statuses from score rows, counts from summary rows). A run
/// that answers nothing for a method is a bug in the experiment, however green: the run ends
/// with these lines as errors, and `report.md` lists them.
pub fn empty_results<R: Scored>(rows: &[R]) -> Vec<String> {
    use std::collections::BTreeMap;
    type Cell<'a> = (usize, BTreeMap<&'a str, usize>);
    // (method, postprocess, metric, control): a control's cells apart, so that a control that
    // cannot be compared (a one-channel CAM against an RGB Sobel map) is not hidden by the tests.
    let mut cells: BTreeMap<(&str, &str, &str, &str), Cell> = BTreeMap::new();
    // The floor control compares two untrained models' maps: it says nothing of the model's.
    for row in rows.iter().filter(|r| r.place() != ("control", "random_models")) {
        let (method, postprocess, metric) = row.cell();
        let cell = cells.entry((method, postprocess, metric, row.control())).or_default();
        if row.answered() {
            cell.0 += 1;
        } else {
            let (why, n) = row.emptied_by();
            *cell.1.entry(why).or_default() += n;
        }
    }
    let mut methods: BTreeMap<&str, (bool, BTreeMap<&str, usize>)> = BTreeMap::new();
    for ((method, _, _, _), (answered, empty)) in &cells {
        let entry = methods.entry(method).or_default();
        entry.0 |= *answered > 0;
        for (why, n) in empty {
            *entry.1.entry(why).or_default() += n;
        }
    }
    let statuses = |s: &BTreeMap<&str, usize>| s.iter().map(|(k, n)| format!("{k} {n}")).collect::<Vec<_>>().join(", ");
    let mut out = Vec::new();
    for (method, (answered, empty)) in &methods {
        if !answered {
            out.push(format!(
                "every score of `{method}` is empty ({}): the run answers nothing about it (see `not_tested` in the README for the causes)",
                statuses(empty)
            ));
        }
    }
    for ((method, postprocess, metric, control), (answered, empty)) in &cells {
        if *answered == 0 && methods.get(method).is_some_and(|m| m.0) {
            let against = if control.is_empty() { String::new() } else { format!(" against the `{control}` control") };
            out.push(format!(
                "every `{metric}` score of `{method}`{against} after `{postprocess}` is empty ({})",
                statuses(empty)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(test: &str, stage: &str, sample: usize, score: Option<f64>, status: &str) -> ScoreRow {
        ScoreRow {
            run_id: "r".into(),
            test: test.into(),
            order: String::new(),
            stage_index: 1,
            stage: stage.into(),
            draw: 0,
            method: "gradcam".into(),
            method_b: "gradcam".into(),
            postprocess: "abs".into(),
            metric: "spearman".into(),
            sample,
            label: 0,
            target: 0,
            score,
            status: status.into(),
        }
    }

    #[test]
    fn an_empty_control_is_named_even_when_the_tests_answer() {
        let rows = vec![
            row("cascading", "conv1", 0, Some(0.5), "ok"),
            row("control", "sobel", 0, None, "shape_mismatch"),
            row("control", "random_models", 0, None, "constant_map"),
        ];
        let lines = empty_results(&rows);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("against the `sobel` control") && lines[0].contains("shape_mismatch 1"), "{lines:?}");
    }

    #[test]
    fn draws_widen_the_interval_and_count_each_image_once() {
        let mut rows = vec![row("control", "repeat", 0, None, "constant_map")];
        for draw in 0..3 {
            for sample in 0..40 {
                let score = (sample != 0).then(|| 0.2 * draw as f64 + (sample % 7) as f64 / 100.0);
                let status = if score.is_some() { "ok" } else { "constant_map" };
                rows.push(ScoreRow { draw, ..row("cascading", "conv1", sample, score, status) });
            }
        }
        let summary = summarize_rows(&rows, 1000, 0.95, 0);
        let s = summary.iter().find(|r| r.test == "cascading").expect("row");
        assert_eq!((s.n, s.n_degenerate, s.n_degenerate_original, s.draws), (117, 3, 1, 3));
        assert_eq!(s.ci_over, "draws_and_images");
        assert!((s.draw_std.expect("3 draws") - 0.2).abs() < 1e-9, "{:?}", s.draw_std);
        // Draw means 0.03, 0.23, 0.43: the interval spans most of them, not the images' spread.
        assert!(s.ci_high.expect("ci") - s.ci_low.expect("ci") > 0.2, "{:?} {:?}", s.ci_low, s.ci_high);
        let repeat = summary.iter().find(|r| r.stage == "repeat").expect("row");
        assert_eq!((repeat.ci_over.as_str(), repeat.draws, repeat.draw_std), ("images", 1, None));
    }

    #[test]
    fn degenerate_originals_need_every_metric_to_agree_and_skip_the_floor() {
        let mut hog = row("control", "repeat", 1, None, "constant_map");
        hog.metric = "hog_pearson".into();
        let rows = vec![
            row("control", "repeat", 0, None, "constant_map"),
            row("control", "repeat", 1, Some(1.0), "ok"),
            hog,
            row("cascading", "conv1", 0, None, "constant_map"),
            row("control", "random_models", 0, Some(0.1), "ok"),
        ];
        let found = degenerate_originals(&rows);
        assert_eq!(found[&("gradcam".into(), "abs".into())].0, [0].into_iter().collect());
        let summary = summarize_rows(&rows, 0, 0.95, 0);
        let of = |test: &str, stage: &str| {
            summary.iter().find(|r| r.test == test && r.stage == stage && r.metric == "spearman").expect("row")
        };
        assert_eq!(of("cascading", "conv1").n_degenerate_original, 1);
        assert_eq!(of("control", "random_models").n_degenerate_original, 0);
    }
}
