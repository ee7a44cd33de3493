//! `sanity explain`: for the first N test images, one figure per image with the image in gray
//! and each method's map over it (the seed lesson's `plot_map` / `plot_map2`), and
//! `agreement.csv` with the similarity of every pair of methods on each image (the lesson's
//! GradCAM-vs-IG comparison).

use super::JobModel;
use super::compare::{parse_metrics, parse_steps};
use candle_core::{Device, Tensor};
use sanity_attribution::{MethodSpec, NetMethod};
use sanity_experiments::plan::{DataPlan, resolve_arch};
use sanity_metrics::{Map, MetricSpec, PostStep, Status, apply_all, pipeline_label};
use sanity_model::onnx::read_onnx;
use sanity_model::train::predicted_targets;
use sanity_model::{Net, NetModel, Weights};
use sanity_report::figures::overlay::{Overlay, OverlayColors, render};
use sanity_report::figures::raster::{display_plane, gray_plane};
use sanity_rundir::config::DataConfig;
use sanity_rundir::error::{ExperimentError, Result};
use sanity_rundir::example_maps::{prediction_of, sigmoid};
use sanity_rundir::files::write_atomic;
use sanity_rundir::rows::RowWriter;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to explain.
#[derive(Debug, Clone)]
pub struct ExplainJob {
    /// The model.
    pub model: JobModel,
    /// Where the images come from (the first `n` test images are explained).
    pub data: DataConfig,
    /// Method ids.
    pub methods: Vec<String>,
    /// The layer of the CAM methods (default: the last conv layer).
    pub layer: Option<String>,
    /// Images explained.
    pub n: usize,
    /// Post-processing applied to every map before it is drawn and compared (a name or a TOML
    /// inline table, as `sanity compare`'s).
    pub postprocess: Vec<String>,
    /// Metrics of `agreement.csv` (as `sanity compare`'s).
    pub metrics: Vec<String>,
    /// Seed of the data and of stochastic methods.
    pub seed: u64,
    /// Side of a figure panel, pixels.
    pub panel: u32,
    /// How the maps are coloured (default: diverging, centred on zero).
    pub colors: OverlayColors,
    /// The maps' opacity over the image, 0 to 1 (the lesson's 0.5).
    pub alpha: f64,
}

/// One row of `agreement.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementRow {
    /// Index in the test set.
    pub sample: usize,
    /// True label.
    pub label: usize,
    /// The output whose maps were compared: the predicted class, or 0 for a one-logit model
    /// (its only output, whatever the class).
    pub target: usize,
    /// The model's predicted class (for a one-logit model: 1 when the logit is > 0), as in
    /// `maps/examples.csv`.
    pub prediction: usize,
    /// The model's probability of that class (softmax; sigmoid for one logit). A one-logit
    /// figure's title shows the probability of class 1 instead, as the seed lesson does.
    pub probability: f64,
    /// First method.
    pub method: String,
    /// Second method.
    pub method_b: String,
    /// The post-processing pipeline.
    pub postprocess: String,
    /// The metric.
    pub metric: String,
    /// The score; empty when degenerate.
    pub score: Option<f64>,
    /// `ok` or why there is no score.
    pub status: String,
}

/// Images per attribution call.
const BATCH: usize = 16;

fn bad(what: &str, message: String) -> ExperimentError {
    ExperimentError::config(what, message)
}

/// The spec of method `id`, with `layer` for the methods that take one; true when it took it.
fn method_spec(id: &str, layer: &Option<String>) -> Result<(MethodSpec, bool)> {
    let mut table = toml::Table::new();
    table.insert("method".into(), toml::Value::String(id.to_string()));
    let probe = MethodSpec::deserialize(toml::Value::Table(table.clone()))
        .map_err(|e| bad("--methods", sanity_rundir::diagnostics::with_suggestion(format!("`{id}`: {e}"))))?;
    if let Some(layer) = layer {
        let mut with_layer = table.clone();
        with_layer.insert("layer".into(), toml::Value::String(layer.clone()));
        if let Ok(spec) = MethodSpec::deserialize(toml::Value::Table(with_layer)) {
            return Ok((spec, true));
        }
    }
    Ok((probe, false))
}

/// The title of an image's figure, as the lesson's: `Class: 1. Pred = 0.873` for a one-logit
/// model (the probability of class 1), `Class: 3. Pred = 3 (p = 0.912)` otherwise.
pub fn title(label: usize, logits: &[f32], name: impl Fn(usize) -> String) -> String {
    match logits {
        [z] => format!("Class: {}. Pred = {:.3}", name(label), sigmoid(f64::from(*z))),
        _ => {
            let (class, p) = prediction_of(logits);
            format!("Class: {}. Pred = {} (p = {p:.3})", name(label), name(class))
        }
    }
}

/// One method's maps of the explained images, post-processed: `[image]`.
type MethodMaps = Vec<std::result::Result<Map, Status>>;

/// Runs `job`, writing `explain-<sample>.png` per image and `agreement.csv` into `out`.
/// Returns the files written.
pub fn explain(job: &ExplainJob, out: &Path) -> Result<Vec<PathBuf>> {
    let (steps, metrics) = (parse_steps(&job.postprocess)?, parse_metrics(&job.metrics)?);
    let specs = checked_methods(job)?;
    let data = DataPlan::from_config(&job.data, "--data")?;
    let (train_set, test_set) = data.load(job.seed)?;
    if job.n == 0 || job.n > test_set.len() {
        return Err(bad("--n", format!("{}; accepted: 1 to {} (the test set's size)", job.n, test_set.len())));
    }
    let [c, h, w] = test_set.image_shape;
    let indices: Vec<usize> = (0..job.n).collect();
    let images = test_set.gather_images(&indices);
    let references = sanity_experiments::run::training_references(&specs, &train_set)?;
    let model = match &job.model {
        JobModel::Sequential { arch, weights } => {
            let arch = Arc::new(resolve_arch(arch, &data).map_err(|message| bad("--arch", message))?);
            NetModel::new(Net::Layers(arch.clone()), Weights::load_safetensors(weights, &arch)?)
        }
        JobModel::Onnx(path) => {
            let imported = read_onnx(path)?;
            if imported.graph.input != [c, h, w] {
                let takes = imported.graph.input;
                let given = [c, h, w];
                return Err(bad(
                    "--data",
                    format!("images of shape {given:?}, but {} takes {takes:?}", path.display()),
                ));
            }
            NetModel::new(Net::Graph(Arc::new(imported.graph)), imported.weights)
        }
    };
    let (logits, outputs, maps) =
        net_maps(&model, &specs, &images, [job.n, c, h, w], (job.seed, &steps, references.as_ref()))?;
    // The explained output: the prediction (the only logit of a binary model).
    let targets = predicted_targets(&logits, outputs);
    std::fs::create_dir_all(out).map_err(|e| ExperimentError::io(out, e))?;
    let mut written = Vec::new();
    let label = pipeline_label(&steps);
    let mut rows = Vec::new();
    for (i, &sample) in indices.iter().enumerate() {
        let image_logits = &logits[i * outputs..(i + 1) * outputs];
        let image = Map::new(test_set.image(sample).to_vec(), [c, h, w]);
        let overlay = Overlay {
            title: title(test_set.labels[sample], image_logits, |c| test_set.class_name(c)),
            image: gray_plane(&image),
            image_shape: [h, w],
            panels: specs.iter().zip(&maps).map(|(spec, m)| panel(spec.id(), &m[i], [h, w])).collect(),
            colors: job.colors,
            alpha: job.alpha,
            // The ground-truth mask's outline, where the data has one with the object.
            mask: test_set.mask(sample).filter(|m| m.contains(&1)).map(|m| m.iter().map(|&v| f32::from(v)).collect()),
        };
        let path = out.join(format!("explain-{sample:04}.png"));
        let bytes = render(&overlay, job.panel).map_err(|e| ExperimentError::io(&path, e))?;
        write_atomic(&path, &bytes)?;
        written.push(path);
        let (prediction, probability) = prediction_of(image_logits);
        let row = AgreementRow {
            sample,
            label: test_set.labels[sample],
            target: targets[i],
            prediction,
            probability,
            method: String::new(),
            method_b: String::new(),
            postprocess: label.clone(),
            metric: String::new(),
            score: None,
            status: String::new(),
        };
        let maps_of_image: Vec<&std::result::Result<Map, Status>> = maps.iter().map(|m| &m[i]).collect();
        rows.extend(agreement_rows(&row, &specs, &maps_of_image, &metrics));
    }
    let path = out.join("agreement.csv");
    let mut csv = RowWriter::create(&path)?;
    csv.write(&rows)?;
    csv.finish()?;
    written.push(path);
    Ok(written)
}

/// The methods of `--methods` (with `--layer` where they take one), after `--alpha`, `--panel`
/// and `--layer` are checked.
fn checked_methods(job: &ExplainJob) -> Result<Vec<MethodSpec>> {
    if job.methods.is_empty() {
        return Err(bad("--methods", "none given; e.g. --methods gradcam,integrated_gradients".into()));
    }
    let (specs, took_layer): (Vec<MethodSpec>, Vec<bool>) =
        job.methods.iter().map(|m| method_spec(m, &job.layer)).collect::<Result<Vec<_>>>()?.into_iter().unzip();
    if let Some(layer) = &job.layer
        && !took_layer.contains(&true)
    {
        return Err(bad("--layer", format!("`{layer}`, but none of --methods takes a layer (the CAM methods do)")));
    }
    if !(0.0..=1.0).contains(&job.alpha) {
        return Err(bad("--alpha", format!("{}; accepted: 0 (the image only) to 1 (the map only)", job.alpha)));
    }
    if job.panel < sanity_report::report::MIN_CELL {
        return Err(bad(
            "--panel",
            format!("{}; accepted: at least {} pixels", job.panel, sanity_report::report::MIN_CELL),
        ));
    }
    Ok(specs)
}

/// The logits, outputs and methods' maps (post-processed by `steps`) of the images `x`
/// `[n, c, h, w]` under `model`, [`BATCH`] images per call, each method on the graph walk
/// ([`NetMethod`]) with the run's `seed` (and expected gradients' reference images).
fn net_maps(
    model: &NetModel,
    specs: &[MethodSpec],
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    (seed, steps, references): (u64, &[PostStep], Option<&sanity_attribution::ReferenceSet>),
) -> Result<(Vec<f32>, usize, Vec<MethodMaps>)> {
    let logits = model.logits(x, n)?;
    let outputs = model.net.num_outputs();
    let targets = predicted_targets(&logits, outputs);
    let images = Tensor::from_slice(x, (n, c, h, w), &Device::Cpu)?;
    let mut maps = Vec::with_capacity(specs.len());
    for spec in specs {
        let method = NetMethod::build(spec, &model.net, seed, references)?;
        let batch = method.attribute_batches(model, &images, &targets, BATCH)?;
        let (_, mc, mh, mw) = batch.dims4()?;
        let values = batch.flatten_all()?.to_vec1::<f32>()?;
        maps.push(
            values.chunks_exact(mc * mh * mw).map(|v| apply_all(steps, Map::new(v.to_vec(), [mc, mh, mw]))).collect(),
        );
    }
    Ok((logits, outputs, maps))
}

/// A method's panel of an overlay: its name (marked when the map is constant or degenerate),
/// the plane drawn and its shape; a degenerate map is drawn as zeros of the image's `[h, w]`.
fn panel(id: &str, map: &std::result::Result<Map, Status>, [h, w]: [usize; 2]) -> (String, Vec<f32>, [usize; 2]) {
    match map {
        Ok(m) => {
            let plane = display_plane(m);
            let constant = plane.iter().all(|&v| v == plane[0]);
            let name = format!("{id}{}", if constant { " (constant map)" } else { "" });
            (name, plane, [m.shape[1], m.shape[2]])
        }
        Err(status) => (format!("{id} ({})", status.as_str()), vec![0.0; h * w], [h, w]),
    }
}

/// The rows of one image in `agreement.csv`: every pair of methods under every metric, on the
/// image's columns of `image`.
fn agreement_rows(
    image: &AgreementRow,
    specs: &[MethodSpec],
    maps: &[&std::result::Result<Map, Status>],
    metrics: &[MetricSpec],
) -> Vec<AgreementRow> {
    let mut rows = Vec::new();
    for a in 0..specs.len() {
        for b in a + 1..specs.len() {
            for metric in metrics {
                let score = metric.score_processed(maps[a], maps[b]);
                rows.push(AgreementRow {
                    method: specs[a].id().to_string(),
                    method_b: specs[b].id().to_string(),
                    metric: metric.id().to_string(),
                    score: score.as_ref().ok().copied(),
                    status: score.err().map_or("ok", Status::as_str).to_string(),
                    ..image.clone()
                });
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_follow_the_lesson() {
        let index = |c: usize| c.to_string();
        assert_eq!(title(1, &[0.0], index), "Class: 1. Pred = 0.500");
        assert_eq!(title(3, &[0.0, 0.0, 0.0, 5.0], index), "Class: 3. Pred = 3 (p = 0.980)");
        let phantom = |c: usize| sanity_data::phantom::CLASS_NAMES[c].to_string();
        assert_eq!(title(1, &[3.5], phantom), "Class: effusion. Pred = 0.971");
        let fashion = |c: usize| sanity_data::idx::CLASS_NAMES[c].to_string();
        assert_eq!(title(0, &[0.0, 0.0, 0.0, 5.0], fashion), "Class: T-shirt/top. Pred = Dress (p = 0.980)");
    }
}
