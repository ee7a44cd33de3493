//! The data of each figure of a run, taken from its summary rows and its example maps.

use crate::figures::charts::{Agreement, Curves, Estimate, MethodScore, Panel, Scores, Series};
use crate::figures::grid::{MapGrid, Tile};
use crate::figures::raster::{Scale, display_plane, gray_plane};
use sanity_metrics::{Map, PostStep, apply_all};
use sanity_rundir::error::Result;
use sanity_rundir::example_maps::{Example, image_dir, map_file, read_map};
use sanity_rundir::files::stage_key;
use sanity_rundir::rows::SummaryRow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One test of a run as its summary rows name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestGroup {
    /// The `test` column.
    pub test: String,
    /// The `order` column (empty unless a cascade).
    pub order: String,
}

impl TestGroup {
    /// The file-name stem of its figures: `cascading-top_down`, `data_randomization`.
    pub fn stem(&self) -> String {
        if self.order.is_empty() { self.test.clone() } else { format!("{}-{}", self.test, self.order) }
    }

    /// A heading for it.
    pub fn title(&self) -> String {
        let name = match self.test.as_str() {
            "cascading" => "Cascading randomisation",
            "independent" => "Independent randomisation",
            "smooth_mprt" => "Smooth MPRT (maps averaged over noisy inputs)",
            "efficient_mprt" => "Efficient MPRT (every listed layer randomised at once)",
            "data_randomization" => "Data randomisation (a model trained on permuted labels)",
            "random_logit" => "Random logit (another class explained)",
            "method_agreement" => "Method agreement",
            "localisation" => "Localisation against the ground-truth masks",
            other => other,
        };
        match self.order.as_str() {
            "top_down" => format!("{name}, top-down (logits first)"),
            "bottom_up" => format!("{name}, bottom-up (input first)"),
            _ => name.to_string(),
        }
    }

    /// Whether its stages form a sequence (drawn as curves).
    pub fn has_stages(&self) -> bool {
        matches!(self.test.as_str(), "cascading" | "independent" | "smooth_mprt")
    }

    /// Whether its maps come from smooth MPRT's noise tunnel.
    pub fn smoothed(&self) -> bool {
        self.test == "smooth_mprt"
    }
}

/// The tests of `rows` (controls excluded), in order of first appearance; `localisation` is
/// one group whatever the order of the cascades it scores.
pub fn test_groups(rows: &[SummaryRow]) -> Vec<TestGroup> {
    let mut groups: Vec<TestGroup> = Vec::new();
    for r in rows.iter().filter(|r| r.test != "control") {
        let order = if r.test == "localisation" { String::new() } else { r.order.clone() };
        let group = TestGroup { test: r.test.clone(), order };
        if !groups.contains(&group) {
            groups.push(group);
        }
    }
    groups
}

/// The distinct stages of a test: (stage_index, stage), by stage_index.
pub fn stages_of(rows: &[SummaryRow], group: &TestGroup) -> Vec<(usize, String)> {
    let mut stages: Vec<(usize, String)> = rows
        .iter()
        .filter(|r| r.test == group.test && r.order == group.order)
        .map(|r| (r.stage_index, r.stage.clone()))
        .collect();
    stages.sort();
    stages.dedup();
    stages
}

/// Metrics of a pipeline in the order they first appear.
pub fn metrics_of(rows: &[SummaryRow], postprocess: &str) -> Vec<String> {
    let mut metrics: Vec<String> = Vec::new();
    for r in rows.iter().filter(|r| r.postprocess == postprocess) {
        if !metrics.contains(&r.metric) {
            metrics.push(r.metric.clone());
        }
    }
    metrics
}

fn estimate(row: &SummaryRow) -> Option<Estimate> {
    let ci = match (row.ci_low, row.ci_high) {
        (Some(l), Some(h)) => Some((l, h)),
        _ => None,
    };
    row.mean.map(|mean| Estimate { mean, ci })
}

/// Of `method`'s images after `postprocess`, how many have a degenerate map of their own
/// under the trained model, and how many there are (its `repeat` control rows'
/// `n_degenerate_original`); None when none has.
fn own_empty(rows: &[SummaryRow], method: &str, postprocess: &str) -> Option<(usize, usize)> {
    sanity_rundir::rows::own_degenerate(rows)
        .into_iter()
        .find(|((m, p), _)| m == method && p == postprocess)
        .map(|(_, counts)| counts)
        .filter(|(empty, _)| *empty > 0)
}

/// One panel per metric of `postprocess`, each with every method (so that a method keeps its
/// colour across panels and the legend, even without rows): `content(method, rows)` gets the
/// method's rows against itself for the test, pipeline and metric (empty when it has none).
fn per_metric_and_method<T>(
    rows: &[SummaryRow],
    group: &TestGroup,
    methods: &[String],
    postprocess: &str,
    mut content: impl FnMut(&str, &[&SummaryRow]) -> T,
) -> Vec<Panel<Vec<T>>> {
    metrics_of(rows, postprocess)
        .into_iter()
        .map(|metric| {
            let content = methods
                .iter()
                .map(|method| {
                    let mine: Vec<&SummaryRow> = rows
                        .iter()
                        .filter(|r| {
                            r.test == group.test
                                && r.order == group.order
                                && r.method == *method
                                && r.method_b == *method
                                && r.postprocess == postprocess
                                && r.metric == metric
                        })
                        .collect();
                    content(method, &mine)
                })
                .collect();
            Panel { metric, content }
        })
        .collect()
}

/// Similarity-vs-stage curves of a staged test under one pipeline: x = 0 is the original
/// model (drawn at the repeat control, the ceiling: 1 for a deterministic method), then each
/// stage.
/// `ci` says what the bands are.
pub fn curves(rows: &[SummaryRow], group: &TestGroup, methods: &[String], postprocess: &str, ci: &str) -> Curves {
    let stages = stages_of(rows, group);
    let mut x_labels = vec!["original".to_string()];
    x_labels.extend(stages.iter().map(|(_, s)| s.clone()));
    let panels = per_metric_and_method(rows, group, methods, postprocess, |method, mine| {
        let first = mine.first();
        let mut points: Vec<(usize, Estimate)> =
            first.and_then(|f| f.control_repeat).map(|v| (0, Estimate { mean: v, ci: None })).into_iter().collect();
        for r in mine {
            let x = stages.iter().position(|(i, s)| *i == r.stage_index && *s == r.stage);
            if let (Some(x), Some(e)) = (x, estimate(r)) {
                points.push((x + 1, e));
            }
        }
        points.sort_by_key(|p| p.0);
        Series {
            method: method.to_string(),
            points,
            random_models: first.and_then(|f| f.control_random_models),
            random_map: first.and_then(|f| f.control_random_map),
            own_empty: own_empty(rows, method, postprocess),
        }
    });
    let x_desc = match (group.test.as_str(), group.order.as_str()) {
        ("independent", _) => "the one layer re-initialised",
        (_, "bottom_up") => "re-initialised up to this layer, from the input (cumulative)",
        _ => "re-initialised down to this layer, from the logits (cumulative)",
    };
    Curves {
        title: format!("{}: {postprocess}", group.title()),
        x_desc: x_desc.into(),
        x_labels,
        panels,
        ci: ci.to_string(),
        floors: ["two random models", "random map"],
    }
}

/// Localisation-vs-model curves under one pipeline: x = the trained model, then each stage of
/// the run's cascades (in order), the random-label model and efficient MPRT's model; per
/// method the mean localisation score with its interval, and in the floor strip the chance
/// level (`uniform`, drawn as the dash) and the random map's score (the cross).
pub fn localisation_curves(rows: &[SummaryRow], methods: &[String], postprocess: &str, ci: &str) -> Curves {
    let of_test = |r: &&SummaryRow| r.test == "localisation" && r.postprocess == postprocess;
    let mut stages: Vec<(String, usize, String)> = rows
        .iter()
        .filter(of_test)
        .filter(|r| ["cascading.", "data_randomization.", "efficient_mprt."].iter().any(|p| r.stage.starts_with(p)))
        .map(|r| (r.order.clone(), r.stage_index, r.stage.clone()))
        .collect();
    stages.sort_by_key(|s| (!s.2.starts_with("cascading."), s.0.clone(), s.1, s.2.clone()));
    stages.dedup();
    // A cascade's stages by their layer; with both orders in the run, the bottom-up ones marked.
    let both_orders = stages.iter().any(|s| s.0 == "bottom_up") && stages.iter().any(|s| s.0 == "top_down");
    let mut x_labels = vec!["trained".to_string()];
    x_labels.extend(stages.iter().map(|(order, _, s)| {
        let layer = s.trim_start_matches("cascading.");
        if both_orders && order == "bottom_up" { format!("{layer} (bottom-up)") } else { layer.to_string() }
    }));
    let mut metrics: Vec<&str> = Vec::new();
    for r in rows.iter().filter(of_test) {
        if !metrics.contains(&r.metric.as_str()) {
            metrics.push(&r.metric);
        }
    }
    let panels = metrics
        .into_iter()
        .map(String::from)
        .map(|metric| {
            let control = |name: &str| {
                rows.iter()
                    .filter(of_test)
                    .find(|r| r.stage == "control" && r.method == name && r.metric == metric)
                    .and_then(|r| r.mean)
            };
            let content = methods
                .iter()
                .map(|method| {
                    let mine: Vec<&SummaryRow> =
                        rows.iter().filter(of_test).filter(|r| r.method == *method && r.metric == metric).collect();
                    let mut points: Vec<(usize, Estimate)> = Vec::new();
                    for r in &mine {
                        let x = if r.stage == "trained" {
                            Some(0)
                        } else {
                            stages
                                .iter()
                                .position(|s| s.0 == r.order && s.1 == r.stage_index && s.2 == r.stage)
                                .map(|i| i + 1)
                        };
                        if let (Some(x), Some(e)) = (x, estimate(r)) {
                            points.push((x, e));
                        }
                    }
                    points.sort_by_key(|p| p.0);
                    Series {
                        method: method.clone(),
                        points,
                        random_models: control("uniform"),
                        random_map: control("random_map"),
                        own_empty: own_empty(rows, method, postprocess),
                    }
                })
                .collect();
            Panel { metric, content }
        })
        .collect();
    Curves {
        title: format!("{}: {postprocess}", TestGroup { test: "localisation".into(), order: String::new() }.title()),
        x_desc: "the model explained: trained, then re-initialised down to this layer (cascade), ...".into(),
        x_labels,
        panels,
        ci: ci.to_string(),
        floors: ["chance (all-ties map)", "random map"],
    }
}

/// Per-method scores of a single-stage test under one pipeline.
pub fn scores(rows: &[SummaryRow], group: &TestGroup, methods: &[String], postprocess: &str) -> Scores {
    let panels = per_metric_and_method(rows, group, methods, postprocess, |method, mine| {
        let row = mine.first().copied();
        MethodScore {
            method: method.to_string(),
            estimate: row.and_then(estimate),
            repeat: row.and_then(|r| r.control_repeat),
            random_models: row.and_then(|r| r.control_random_models),
            random_map: row.and_then(|r| r.control_random_map),
            own_empty: own_empty(rows, method, postprocess),
        }
    });
    Scores { title: format!("{}: {postprocess}", group.title()), panels }
}

/// The method-agreement matrices of `group` under one pipeline (a pair scored one way only is
/// mirrored).
pub fn agreement(rows: &[SummaryRow], group: &TestGroup, methods: &[String], postprocess: &str) -> Agreement {
    let agreement_rows: Vec<&SummaryRow> =
        rows.iter().filter(|r| r.test == group.test && r.postprocess == postprocess).collect();
    let mut used: Vec<String> = Vec::new();
    for m in methods {
        if agreement_rows.iter().any(|r| &r.method == m || &r.method_b == m) {
            used.push(m.clone());
        }
    }
    let panels = metrics_of(rows, postprocess)
        .into_iter()
        .filter(|metric| agreement_rows.iter().any(|r| &r.metric == metric))
        .map(|metric| {
            let mut matrix = vec![vec![None; used.len()]; used.len()];
            for r in agreement_rows.iter().filter(|r| r.metric == metric) {
                let (Some(i), Some(j)) =
                    (used.iter().position(|m| *m == r.method), used.iter().position(|m| *m == r.method_b))
                else {
                    continue;
                };
                matrix[i][j] = r.mean;
                if matrix[j][i].is_none() {
                    matrix[j][i] = r.mean;
                }
            }
            Panel { metric, content: matrix }
        })
        .collect();
    Agreement { title: format!("{}: {postprocess}", group.title()), methods: used, panels }
}

/// The grid of one example image: rows are methods, columns the input, the original model
/// and each stage's model, every map post-processed by `steps`. Maps that were not kept or are
/// degenerate after post-processing are empty cells.
pub fn map_grid(
    run_dir: &Path,
    example: &Example,
    group: &TestGroup,
    stages: &[(usize, String)],
    methods: &[String],
    (label, steps): (&str, &[PostStep]),
    tiles: &mut TileCache,
) -> Result<MapGrid> {
    let dir = image_dir(run_dir, example.sample);
    let input = tiles.get(&dir.join("input.npy"), "", |image| {
        let plane = gray_plane(&image);
        let shape = [image.shape[1], image.shape[2]];
        Some(Tile { scale: Scale::min_max(&plane), plane, shape, colormap: crate::figures::colormap::ColorMap::Gray })
    })?;
    let mut columns = vec!["input".to_string(), "original".to_string()];
    let mut slots = vec!["original".to_string()];
    for (_, stage) in stages {
        columns.push(stage.clone());
        slots.push(stage_key(&group.test, &group.order, stage));
    }
    let mut cells: Vec<Vec<Option<Tile>>> = Vec::with_capacity(methods.len());
    for method in methods {
        let mut row = vec![input.clone()];
        for slot in &slots {
            // A degenerate map (constant after post-processing, non-finite) is an empty cell.
            let tile = tiles.get(&dir.join(map_file(slot, method, group.smoothed())), label, |raw| {
                let map = apply_all(steps, raw).ok()?;
                let plane = display_plane(&map);
                let scale = Scale::for_map(&plane, steps);
                Some(Tile { plane, shape: [map.shape[1], map.shape[2]], scale, colormap: scale.paper_colormap() })
            })?;
            row.push(tile);
        }
        cells.push(row);
    }
    let map_tiles: Vec<&Tile> = cells.iter().flat_map(|row| row.iter().skip(1).flatten()).collect();
    let shared = match map_tiles.first() {
        // A range fixed by the pipeline, and the same for every map (max_abs fixes two).
        Some(first) if Scale::fixed(steps, false).is_some() && map_tiles.iter().all(|t| t.scale == first.scale) => {
            Some((first.scale, first.colormap))
        }
        _ => None,
    };
    let note = match shared {
        Some(_) => {
            format!("maps after {label}; one colour scale for all (bar at the right); empty: degenerate or not kept")
        }
        None => format!(
            "maps after {label}; each map on its own range (gray: 0 to its max; blue-white-red: -max|m| to +max|m|)"
        ),
    };
    let prediction = format!("predicted {} (p = {:.3})", example.prediction_shown(), example.probability);
    let mask_path = dir.join(sanity_rundir::example_maps::MASK_FILE);
    let mask = if mask_path.exists() {
        let mask = read_map(&mask_path)?;
        Some((mask.data, [mask.shape[1], mask.shape[2]]))
    } else {
        None
    };
    let note = if mask.is_some() { format!("{note}; green: the ground-truth mask's outline") } else { note };
    Ok(MapGrid {
        title: format!("{}: image {}, class {}, {prediction}", group.title(), example.sample, example.label_shown()),
        rows: methods.to_vec(),
        columns,
        cells,
        shared,
        note,
        mask,
    })
}

/// The tiles of a report's grids by map file and pipeline: each kept map is read and
/// post-processed once, although the original model's maps appear in every test's grid.
#[derive(Default)]
pub struct TileCache(HashMap<(PathBuf, String), Option<Tile>>);

impl TileCache {
    /// The tile of the map at `path` under the pipeline `label` (`make` draws it from the raw
    /// map); `None` when the run did not keep the map or `make` gives none.
    fn get(&mut self, path: &Path, label: &str, make: impl FnOnce(Map) -> Option<Tile>) -> Result<Option<Tile>> {
        let key = (path.to_path_buf(), label.to_string());
        if let Some(tile) = self.0.get(&key) {
            return Ok(tile.clone());
        }
        let tile = if path.exists() { make(read_map(path)?) } else { None };
        self.0.insert(key, tile.clone());
        Ok(tile)
    }
}
