//! `report.md`: the run's facts, each test's figures, the verdicts and the summary table, as
//! GitHub-flavoured markdown.

use super::build::test_groups;
use super::{FIGURES_DIR, Figure};
use crate::figures::number;
use sanity_rundir::config::Config;
use sanity_rundir::manifest::Manifest;
use sanity_rundir::rows::SummaryRow;
use sanity_rundir::rows::VerdictRow;
use std::fmt::Write;

fn opt(v: Option<f64>) -> String {
    v.map_or_else(String::new, number)
}

fn accuracy(v: f64) -> String {
    if v.is_finite() { format!("{v:.4}") } else { "n/a".into() }
}

/// The report's text.
pub fn report_md(
    config: &Config,
    manifest: &Manifest,
    summary: &[SummaryRow],
    verdicts: &[VerdictRow],
    figures: &[Figure],
) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# {} (run {})\n", config.name, manifest.run_id);
    let _ = writeln!(md, "Made by `sanity report` from this directory's CSVs, manifest and `maps/`.\n");
    let model = &manifest.model;
    let _ = writeln!(
        md,
        "- Model: `{}` ({}), train accuracy {}, test accuracy {}.",
        model.arch,
        model.origin,
        accuracy(model.train_accuracy),
        accuracy(model.test_accuracy),
    );
    if let Some(random) = &manifest.random_label_model {
        let _ = writeln!(
            md,
            "- Model trained on permuted labels ({} images): train accuracy {} on its labels (target {}, {}), test accuracy {}.",
            random.n_train,
            accuracy(random.train_accuracy_random_labels),
            accuracy(random.target_accuracy),
            if random.reached_target { "reached" } else { "NOT reached" },
            accuracy(random.test_accuracy),
        );
    }
    let data = &manifest.data;
    let [c, h, w] = data.image_shape;
    let _ = writeln!(
        md,
        "- Data: `{}`, {} training and {} test images of shape [{c},{h},{w}]; {} explained.",
        data.source, data.n_train, data.n_test, config.attribution.n_images,
    );
    let methods: Vec<&str> = config.attribution.methods.iter().map(|m| m.id()).collect();
    let _ = writeln!(md, "- Methods: {}.", methods.join(", "));
    let _ = writeln!(
        md,
        "- Seed {}, {} threads, git revision `{}`{}.\n",
        config.seed,
        manifest.threads,
        manifest.git_revision,
        manifest.seconds("total").map_or_else(String::new, |t| format!(", {t:.1} s in all")),
    );

    warnings(&mut md, summary);
    figure_sections(&mut md, summary, figures);
    verdict_table(&mut md, config, verdicts);
    summary_table(&mut md, config, summary);
    md
}

/// "Empty results" and "Degenerate original maps": what the run answers nothing about, and
/// which methods' own maps are too often degenerate.
fn warnings(md: &mut String, summary: &[SummaryRow]) {
    let empty = sanity_rundir::rows::empty_results(summary);
    if !empty.is_empty() {
        let _ = writeln!(md, "## Empty results\n");
        let _ = writeln!(
            md,
            "These parts of the run answer nothing (every score empty); their verdicts are `not_tested`.\n"
        );
        for line in &empty {
            let _ = writeln!(md, "- {line}");
        }
        let _ = writeln!(md);
    }
    let degenerate = sanity_rundir::rows::degenerate_original_lines(summary);
    if !degenerate.is_empty() {
        let _ = writeln!(md, "## Degenerate original maps\n");
        let _ = writeln!(
            md,
            "These methods' own maps (trained model) are constant or non-finite for more than {:.0}% of the images: their scores rest on the others (`n_degenerate_original` in summary.csv).\n",
            100.0 * sanity_rundir::rows::DEGENERATE_ORIGINALS_WARNING
        );
        for line in &degenerate {
            let _ = writeln!(md, "- {line}");
        }
        let _ = writeln!(md);
    }
}

/// A section per test with its figures; of the map grids of a pipeline, the first example's
/// is shown and the others linked.
fn figure_sections(md: &mut String, summary: &[SummaryRow], figures: &[Figure]) {
    for group in test_groups(summary) {
        let _ = writeln!(md, "## {}\n", group.title());
        let mine: Vec<&Figure> = figures.iter().filter(|f| f.group == group).collect();
        for figure in &mine {
            // Of the map grids of a pipeline, the first example's is shown, the others linked.
            let first_grid = mine.iter().find(|f| f.sample.is_some() && f.pipeline == figure.pipeline);
            if figure.sample.is_some() && first_grid.is_some_and(|f| f.png != figure.png) {
                continue;
            }
            let alt = figure.png.trim_start_matches(FIGURES_DIR).trim_start_matches('/').trim_end_matches(".png");
            let _ = writeln!(md, "{}\n\n![{alt}]({})\n", figure.caption, figure.png);
            if let Some(svg) = &figure.svg {
                let _ = writeln!(md, "([SVG]({svg}))\n");
            }
            if figure.sample.is_some() {
                let others: Vec<String> = mine
                    .iter()
                    .filter(|f| f.pipeline == figure.pipeline && f.png != figure.png)
                    .filter_map(|f| f.sample.map(|sample| format!("[image {sample}]({})", f.png)))
                    .collect();
                if !others.is_empty() {
                    let _ = writeln!(md, "The other example images: {}.\n", others.join(", "));
                }
            }
        }
    }
}

/// The verdicts as a table.
fn verdict_table(md: &mut String, config: &Config, verdicts: &[VerdictRow]) {
    if !verdicts.is_empty() {
        let _ = writeln!(md, "## Verdicts\n");
        let _ = writeln!(
            md,
            "Two-sided Wilcoxon signed-rank tests of the per-image scores against the ceiling (repeat) and the floor (two random models), at alpha = {}. `at_floor` passes the sanity check; `at_ceiling` fails it.\n",
            config.statistics.alpha
        );
        let _ = writeln!(
            md,
            "| test | stage | method | postprocess | metric | n | mean | ceiling | floor | p vs ceiling | p vs floor | verdict |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|");
        for v in verdicts {
            let test = if v.order.is_empty() { v.test.clone() } else { format!("{} ({})", v.test, v.order) };
            let _ = writeln!(
                md,
                "| {test} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                v.stage,
                v.method,
                v.postprocess,
                v.metric,
                v.n_pairs,
                opt(v.mean),
                opt(v.ceiling_mean),
                opt(v.floor_mean),
                opt(v.p_vs_ceiling),
                opt(v.p_vs_floor),
                v.verdict
            );
        }
        let _ = writeln!(md);
    }
}

/// The summary as a table.
fn summary_table(md: &mut String, config: &Config, summary: &[SummaryRow]) {
    let _ = writeln!(md, "## Summary\n");
    let _ = writeln!(
        md,
        "Means over the explained images (and over the draws: a stage's independent re-initialisations, `draws`) with their {}% bootstrap intervals: over the images for one draw, over draws and images (crossed bootstrap) for several; the controls' means beside them (`summary.csv` has every column at full precision, and `draw_std`, the spread of the draws' own means).\n",
        config.statistics.confidence * 100.0
    );
    let _ = writeln!(
        md,
        "| test | stage | method | vs | postprocess | metric | draws | n | degenerate | mean | CI | repeat | random models | random map | sobel |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|");
    for r in summary {
        let test = if r.order.is_empty() { r.test.clone() } else { format!("{} ({})", r.test, r.order) };
        let ci = match (r.ci_low, r.ci_high) {
            (Some(l), Some(h)) => format!("[{}, {}]", number(l), number(h)),
            _ => String::new(),
        };
        let vs = if r.method_b == r.method { String::new() } else { r.method_b.clone() };
        let _ = writeln!(
            md,
            "| {test} | {} | {} | {vs} | {} | {} | {} | {} | {} | {} | {ci} | {} | {} | {} | {} |",
            r.stage,
            r.method,
            r.postprocess,
            r.metric,
            r.draws,
            r.n,
            r.n_degenerate,
            opt(r.mean),
            opt(r.control_repeat),
            opt(r.control_random_models),
            opt(r.control_random_map),
            opt(r.control_sobel)
        );
    }
}
