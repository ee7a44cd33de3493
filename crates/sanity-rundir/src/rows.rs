//! The rows of `scores.csv`, `summary.csv` and `verdicts.csv` (docs/run-directory.md), their
//! writer, and what a run's rows say nothing about.

use crate::error::{ExperimentError, Result};
use serde::Serialize;
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
    /// every stage, so the row's statistics rest on the others (read off the `repeat` control).
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
    /// `draws_and_images` (several draws: the crossed bootstrap, docs/run-directory.md).
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

/// One verdict.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct VerdictRow {
    /// The run.
    pub run_id: String,
    /// `cascading`, `data_randomization` or `random_logit`.
    pub test: String,
    /// Cascade order (empty for the others).
    pub order: String,
    /// The stage judged: the cascade's last (all listed layers randomised).
    pub stage: String,
    /// The method.
    pub method: String,
    /// The post-processing pipeline.
    pub postprocess: String,
    /// The metric.
    pub metric: String,
    /// Images with a valid score at the stage and in both controls.
    pub n_pairs: usize,
    /// Mean score at the stage over those images.
    pub mean: Option<f64>,
    /// Mean of the ceiling (`repeat` control) over those images.
    pub ceiling_mean: Option<f64>,
    /// Mean of the floor (`random_models` control) over those images.
    pub floor_mean: Option<f64>,
    /// The test used: `wilcoxon_signed_rank_two_sided`.
    pub test_used: String,
    /// p-value of stage against ceiling.
    pub p_vs_ceiling: Option<f64>,
    /// How it was computed: `exact` or `normal_approximation`.
    pub p_vs_ceiling_method: String,
    /// p-value of stage against floor.
    pub p_vs_floor: Option<f64>,
    /// How it was computed: `exact` or `normal_approximation`.
    pub p_vs_floor_method: String,
    /// The significance level.
    pub alpha: f64,
    /// See the module documentation.
    pub verdict: String,
}

/// The verdict of the data randomisation test when its model missed its training-accuracy
/// target.
pub const INCONCLUSIVE_TARGET_NOT_REACHED: &str = "inconclusive_target_not_reached";

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
}
