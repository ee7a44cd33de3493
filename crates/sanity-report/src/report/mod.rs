//! `sanity report RESULTS_DIR`: the figures of a finished run (`figures/`) and a `report.md`
//! that embeds them with the verdicts and the summary table. Everything comes from the run
//! directory (summary.csv, verdicts.csv, manifest.json, config.resolved.toml, maps/), so the
//! same run gives the same bytes.

pub mod build;
mod markdown;

use crate::figures::charts::Chart;
use crate::figures::{grid, png, svg};
use build::{TestGroup, TileCache, agreement, curves, localisation_curves, map_grid, scores, stages_of, test_groups};
use sanity_metrics::pipeline_label;
use sanity_rundir::config::Config;
use sanity_rundir::error::{ExperimentError, Result};
use sanity_rundir::example_maps::read_examples;
use sanity_rundir::files::{CONFIG_RESOLVED, MANIFEST, SUMMARY, VERDICTS, run_dirs, write_atomic};
use sanity_rundir::rows::VerdictRow;
use sanity_rundir::rows::{RowWriter, SummaryRow};
use std::path::{Path, PathBuf};

pub use sanity_rundir::files::{FIGURES_DIR, REPORT_MD};

/// What to draw.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// At most this many example images get a map grid (default: all that the run kept).
    pub examples: Option<usize>,
    /// Side of a map cell in the grids, pixels.
    pub cell: u32,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self { examples: None, cell: 112 }
    }
}

/// One figure of the report.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The test it belongs to.
    pub group: TestGroup,
    /// The post-processing label of its maps or scores.
    pub pipeline: String,
    /// The example image of a map grid; None for a chart.
    pub sample: Option<usize>,
    /// What it shows, one line.
    pub caption: String,
    /// Its PNG, relative to the run directory.
    pub png: String,
    /// Its SVG, when there is one.
    pub svg: Option<String>,
}

/// The smallest map cell or panel, in pixels, that leaves room for the labels.
pub const MIN_CELL: u32 = 16;

/// Draws the figures of the run in `dir` and writes `report.md`. Returns the figures.
pub fn report(dir: &Path, options: &ReportOptions) -> Result<Vec<Figure>> {
    if options.cell < MIN_CELL {
        return Err(ExperimentError::config(
            "--cell",
            format!("{}; accepted: at least {MIN_CELL} pixels", options.cell),
        ));
    }
    let run = RunFiles::read(dir)?;
    let mut examples = read_examples(dir)?;
    examples.truncate(options.examples.unwrap_or(usize::MAX));
    let methods: Vec<String> = run.config.attribution.methods.iter().map(|m| m.id().to_string()).collect();
    let figures_dir = dir.join(FIGURES_DIR);
    match std::fs::remove_dir_all(&figures_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(ExperimentError::io(&figures_dir, e)),
        _ => {}
    }
    std::fs::create_dir_all(&figures_dir).map_err(|e| ExperimentError::io(&figures_dir, e))?;
    let mut figures = Vec::new();
    let mut tiles = TileCache::default();
    let summary = &run.summary;
    for group in test_groups(summary) {
        for (label, steps) in &pipelines(&run.config) {
            if !summary.iter().any(|r| r.test == group.test && r.order == group.order && &r.postprocess == label) {
                continue;
            }
            let name = format!("{}-{}", group.stem(), slug(label));
            let figure = |caption: String, (png, svg): (String, Option<String>)| Figure {
                group: group.clone(),
                pipeline: label.clone(),
                sample: None,
                caption,
                png,
                svg,
            };
            figures.push(figure_of_chart(dir, &run, &group, &methods, label, &name, figure)?);
            // The localisation test's maps are the other tests' (their grids show the masks).
            if group.test == "method_agreement" || group.test == "localisation" {
                continue;
            }
            let stages = stages_of(summary, &group);
            for example in &examples {
                let chart = map_grid(dir, example, &group, &stages, &methods, (label, steps), &mut tiles)?;
                let png = format!("{FIGURES_DIR}/maps-{name}-image-{:04}.png", example.sample);
                let bytes = grid::render(&chart, options.cell).map_err(|e| ExperimentError::io(&dir.join(&png), e))?;
                write_atomic(&dir.join(&png), &bytes)?;
                let caption = format!(
                    "Maps of test image {} (class {}) under each model ({label})",
                    example.sample,
                    example.label_shown()
                );
                figures.push(Figure { sample: Some(example.sample), ..figure(caption, (png, None)) });
            }
        }
    }
    let text = markdown::report_md(&run.config, &run.manifest, summary, &run.verdicts, &figures);
    write_atomic(&dir.join(REPORT_MD), text.as_bytes())?;
    Ok(figures)
}

/// The files of a finished run that its report is drawn from.
struct RunFiles {
    config: Config,
    summary: Vec<SummaryRow>,
    verdicts: Vec<VerdictRow>,
    manifest: sanity_rundir::manifest::Manifest,
}

impl RunFiles {
    /// Reads them; a run directory without them is not finished (or not merged).
    fn read(dir: &Path) -> Result<Self> {
        let not_finished = |what: &str| ExperimentError::Output {
            path: dir.display().to_string(),
            message: format!(
                "has no {what}: not a finished run directory (run it to the end, or `sanity merge` its shards first)"
            ),
        };
        let config_path = dir.join(CONFIG_RESOLVED);
        if !config_path.exists() {
            return Err(not_finished(CONFIG_RESOLVED));
        }
        let config = Config::load(&config_path, &[])?;
        let summary_path = dir.join(SUMMARY);
        if !summary_path.exists() {
            return Err(not_finished(SUMMARY));
        }
        let summary: Vec<SummaryRow> = RowWriter::read(&summary_path)?;
        let verdicts: Vec<VerdictRow> =
            if dir.join(VERDICTS).exists() { RowWriter::read(&dir.join(VERDICTS))? } else { Vec::new() };
        let Some(manifest) = sanity_rundir::manifest::Manifest::read(&dir.join(MANIFEST))? else {
            return Err(not_finished(MANIFEST));
        };
        Ok(Self { config, summary, verdicts, manifest })
    }
}

/// One entry per distinct post-processing of the config's comparisons (two may share one).
fn pipelines(config: &Config) -> Vec<(String, Vec<sanity_metrics::PostStep>)> {
    let mut pipelines: Vec<(String, Vec<sanity_metrics::PostStep>)> = Vec::new();
    for c in &config.comparisons {
        let label = pipeline_label(&c.postprocess);
        if !pipelines.iter().any(|(l, _)| *l == label) {
            pipelines.push((label, c.postprocess.clone()));
        }
    }
    pipelines
}

/// The chart of a test group under one post-processing `label`: the methods' agreement, the
/// similarity curves over the stages, or the scores with their ceiling and floors; `figure`
/// makes its [`Figure`] from a caption and the files.
fn figure_of_chart(
    dir: &Path,
    run: &RunFiles,
    group: &TestGroup,
    methods: &[String],
    label: &str,
    name: &str,
    figure: impl Fn(String, (String, Option<String>)) -> Figure,
) -> Result<Figure> {
    let summary = &run.summary;
    if group.test == "method_agreement" {
        let chart = agreement(summary, group, methods, label);
        let files = chart_files(dir, &format!("agreement-{}", slug(label)), &chart)?;
        let caption = format!("Mean similarity between the methods' maps of the trained model ({label})");
        return Ok(figure(caption, files));
    }
    if group.test == "localisation" {
        let ci = format!("{}% CI of the mean over the draws and the images", run.config.statistics.confidence * 100.0);
        let chart = localisation_curves(summary, methods, label, &ci);
        let files = chart_files(dir, &format!("curves-{name}"), &chart)?;
        let caption = format!(
            "Localisation of each method's maps ({label}) under the trained model and each randomised one; mean and {ci} per method; in a column right of the models, the chance level of a map whose values all tie (dash) and the random map's score (cross)"
        );
        return Ok(figure(caption, files));
    }
    if !group.has_stages() {
        let chart = scores(summary, group, methods, label);
        let files = chart_files(dir, &format!("scores-{name}"), &chart)?;
        return Ok(figure(format!("Similarity per method with its ceiling and floors ({label})"), files));
    }
    let draws = summary.iter().filter(|r| r.test == group.test && r.order == group.order).map(|r| r.draws).max();
    let over = match draws.unwrap_or(1) {
        1 => "over the images".to_string(),
        n => format!("over {n} draws and the images"),
    };
    let ci = format!("{}% CI of the mean {over}", run.config.statistics.confidence * 100.0);
    let chart = curves(summary, group, methods, label, &ci);
    let files = chart_files(dir, &format!("curves-{name}"), &chart)?;
    let caption = format!(
        "Similarity to the original model's maps at each stage ({label}); mean and {ci} per method; each method's floors in a column right of the stages (dash: two random models, cross: random map)"
    );
    Ok(figure(caption, files))
}

/// The run directories `sanity report DIR` draws: DIR itself when it is a run directory, or,
/// for a sweep's folder, each run directory in it (DIR itself when none is, so that
/// [`report`] says what it lacks).
pub fn report_dirs(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let runs = run_dirs(dir, CONFIG_RESOLVED)?;
    Ok(if runs.is_empty() { vec![dir.to_path_buf()] } else { runs })
}

/// Draws `chart` as `figures/<name>.png` and `.svg` in `dir`; returns both paths relative to
/// `dir`.
fn chart_files(dir: &Path, name: &str, chart: &impl Chart) -> Result<(String, Option<String>)> {
    let (png_name, svg_name) = (format!("{FIGURES_DIR}/{name}.png"), format!("{FIGURES_DIR}/{name}.svg"));
    let failed = |file: &str, e: Box<dyn std::error::Error + Send + Sync>| ExperimentError::io(&dir.join(file), e);
    let bytes = png(chart.size(), |root| chart.draw(root)).map_err(|e| failed(&png_name, e))?;
    write_atomic(&dir.join(&png_name), &bytes)?;
    let text = svg(chart.size(), |root| chart.draw(root)).map_err(|e| failed(&svg_name, e))?;
    write_atomic(&dir.join(&svg_name), text.as_bytes())?;
    Ok((png_name, Some(svg_name)))
}

/// A pipeline label as a file-name part: `+` becomes `--`, anything but letters, digits, `_`,
/// `-` and `.` becomes `_`.
pub fn slug(label: &str) -> String {
    label
        .replace('+', "--")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') { c } else { '_' })
        .collect()
}
