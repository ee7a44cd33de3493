//! `sanity report RESULTS_DIR`: the figures of a finished run (`figures/`) and a `report.md`
//! that embeds them with the verdicts and the summary table. Everything comes from the run
//! directory (summary.csv, verdicts.csv, manifest.json, config.resolved.toml, maps/), so the
//! same run gives the same bytes.

pub mod build;
mod markdown;

use crate::config::Config;
use crate::error::{ExperimentError, Result};
use crate::example_maps::read_examples;
use crate::figures::{charts, grid, png, svg};
use crate::run::write_atomic;
use crate::scores::SummaryRow;
use crate::verdicts::VerdictRow;
use build::{TestGroup, agreement, curves, map_grid, scores, stages_of, test_groups};
use sanity_metrics::pipeline_label;
use std::path::{Path, PathBuf};

/// The figures' directory inside a run directory.
pub const FIGURES_DIR: &str = "figures";
/// The report's file name inside a run directory.
pub const REPORT_MD: &str = "report.md";

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
    /// The test it belongs to (None: the run as a whole).
    pub group: Option<TestGroup>,
    /// What it shows, one line.
    pub caption: String,
    /// Its PNG, relative to the run directory.
    pub png: String,
    /// Its SVG, when there is one.
    pub svg: Option<String>,
}

/// Draws the figures of the run in `dir` and writes `report.md`. Returns the figures.
pub fn report(dir: &Path, options: &ReportOptions) -> Result<Vec<Figure>> {
    let not_finished = |what: &str| ExperimentError::Output {
        path: dir.display().to_string(),
        message: format!(
            "has no {what}: not a finished run directory (run it to the end, or `sanity merge` its shards first)"
        ),
    };
    let config_path = dir.join("config.resolved.toml");
    if !config_path.exists() {
        return Err(not_finished("config.resolved.toml"));
    }
    let config = Config::load(&config_path, &[])?;
    let summary_path = dir.join("summary.csv");
    if !summary_path.exists() {
        return Err(not_finished("summary.csv"));
    }
    let summary: Vec<SummaryRow> = read_csv(&summary_path)?;
    let verdicts: Vec<VerdictRow> =
        if dir.join("verdicts.csv").exists() { read_csv(&dir.join("verdicts.csv"))? } else { Vec::new() };
    let manifest: serde_json::Value = match std::fs::read(dir.join("manifest.json")) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ExperimentError::io(&dir.join("manifest.json"), e))?,
        Err(_) => return Err(not_finished("manifest.json")),
    };
    let mut examples = read_examples(dir)?;
    examples.truncate(options.examples.unwrap_or(usize::MAX));
    let methods: Vec<String> = config.attribution.methods.iter().map(|m| m.id().to_string()).collect();
    let pipelines: Vec<(String, Vec<sanity_metrics::PostStep>)> =
        config.comparisons.iter().map(|c| (pipeline_label(&c.postprocess), c.postprocess.clone())).collect();

    let figures_dir = dir.join(FIGURES_DIR);
    let _ = std::fs::remove_dir_all(&figures_dir);
    std::fs::create_dir_all(&figures_dir).map_err(|e| ExperimentError::io(&figures_dir, e))?;
    let draw_error = |path: &Path, e: Box<dyn std::error::Error + Send + Sync>| ExperimentError::io(path, e);
    let mut figures = Vec::new();
    let save = |name: String, png_bytes: Vec<u8>, svg_text: Option<String>| -> Result<(String, Option<String>)> {
        let png_name = format!("{FIGURES_DIR}/{name}.png");
        write_atomic(&dir.join(&png_name), &png_bytes)?;
        let svg_name = match svg_text {
            Some(text) => {
                let svg_name = format!("{FIGURES_DIR}/{name}.svg");
                write_atomic(&dir.join(&svg_name), text.as_bytes())?;
                Some(svg_name)
            }
            None => None,
        };
        Ok((png_name, svg_name))
    };

    for group in test_groups(&summary) {
        for (label, steps) in &pipelines {
            if !summary.iter().any(|r| r.test == group.test && r.order == group.order && &r.postprocess == label) {
                continue;
            }
            let slug = slug(label);
            if group.test == "method_agreement" {
                let chart = agreement(&summary, &methods, label);
                let size = charts::agreement_size(&chart);
                let path = figures_dir.join(format!("agreement-{slug}.png"));
                let bytes = png(size, |root| charts::draw_agreement(root, &chart)).map_err(|e| draw_error(&path, e))?;
                let text = svg(size, |root| charts::draw_agreement(root, &chart)).map_err(|e| draw_error(&path, e))?;
                let (png, svg) = save(format!("agreement-{slug}"), bytes, Some(text))?;
                let caption = format!("Mean similarity between the methods' maps of the trained model ({label})");
                figures.push(Figure { group: Some(group.clone()), caption, png, svg });
                continue;
            }
            let name = format!("{}-{slug}", group.stem());
            if group.has_stages() {
                let chart = curves(&summary, &group, &methods, label);
                let size = charts::chart_size(chart.panels.len());
                let path = figures_dir.join(format!("curves-{name}.png"));
                let bytes = png(size, |root| charts::draw_curves(root, &chart)).map_err(|e| draw_error(&path, e))?;
                let text = svg(size, |root| charts::draw_curves(root, &chart)).map_err(|e| draw_error(&path, e))?;
                let (png, svg) = save(format!("curves-{name}"), bytes, Some(text))?;
                let caption = format!(
                    "Similarity to the original model's maps at each stage ({label}); mean and 95% CI per method, floors dashed and dotted"
                );
                figures.push(Figure { group: Some(group.clone()), caption, png, svg });
            } else {
                let chart = scores(&summary, &group, &methods, label);
                let size = charts::chart_size(chart.panels.len());
                let path = figures_dir.join(format!("scores-{name}.png"));
                let bytes = png(size, |root| charts::draw_scores(root, &chart)).map_err(|e| draw_error(&path, e))?;
                let text = svg(size, |root| charts::draw_scores(root, &chart)).map_err(|e| draw_error(&path, e))?;
                let (png, svg) = save(format!("scores-{name}"), bytes, Some(text))?;
                let caption = format!("Similarity per method with its ceiling and floors ({label})");
                figures.push(Figure { group: Some(group.clone()), caption, png, svg });
            }
            let stages = stages_of(&summary, &group);
            for example in &examples {
                let chart = map_grid(dir, example, &group, &stages, &methods, (label, steps));
                let file = format!("maps-{name}-image-{:04}", example.sample);
                let path = figures_dir.join(format!("{file}.png"));
                let bytes = grid::render(&chart, options.cell).map_err(|e| draw_error(&path, e))?;
                let (png, _) = save(file, bytes, None)?;
                let caption = format!(
                    "Maps of test image {} (class {}) under each model ({label})",
                    example.sample, example.label
                );
                figures.push(Figure { group: Some(group.clone()), caption, png, svg: None });
            }
        }
    }
    let text = markdown::report_md(&config, &manifest, &summary, &verdicts, &figures);
    write_atomic(&dir.join(REPORT_MD), text.as_bytes())?;
    Ok(figures)
}

fn read_csv<T: serde::de::DeserializeOwned>(path: &PathBuf) -> Result<Vec<T>> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| ExperimentError::io(path, e))?;
    reader.deserialize().map(|r| r.map_err(|e| ExperimentError::io(path, e))).collect()
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
