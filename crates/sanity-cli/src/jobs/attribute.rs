//! `sanity attribute`: raw maps of one method for the images of an NPY file, written as NPY,
//! so that anyone can cross-check the maps from Python; and the same steps on arrays in memory
//! for the Python package's `attribute`.

use super::JobModel;
use super::compare::Maps;
use candle_core::{Device, Tensor};
use sanity_attribution::{MethodSpec, NetMethod, ReferenceSet};
use sanity_data::npy::{NpyArray, read_array};
use sanity_model::onnx::read_onnx;
use sanity_model::train::predicted_targets;
use sanity_model::{Architecture, ArchitectureSpec, Net, NetModel, PRESETS, Weights, preset};
use sanity_rundir::error::{ExperimentError, Result};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What to explain.
#[derive(Debug, Clone)]
pub struct AttributeJob {
    /// The model.
    pub model: JobModel,
    /// Images, NPY float32 (or float64) `[n, c, h, w]`.
    pub input: PathBuf,
    /// The method id (`gradient`, `integrated_gradients`, ...).
    pub method: String,
    /// Grad-CAM's layer, for the CAM methods.
    pub layer: Option<String>,
    /// Method parameters as `KEY=VALUE` (`steps=20`).
    pub params: Vec<String>,
    /// One target for every image.
    pub target: Option<usize>,
    /// One target per image, NPY integers `[n]`.
    pub targets: Option<PathBuf>,
    /// Reference images of `expected_gradients`, NPY `[m, c, h, w]`.
    pub references: Option<PathBuf>,
    /// Images per call.
    pub batch: usize,
}

fn bad(what: &str, message: String) -> ExperimentError {
    ExperimentError::config(what, message)
}

/// Refuses NaN and infinite values (as float32), naming the first one's flat index and how
/// many there are.
fn finite_values(values: &[f64], what_file: &str, what: &str) -> Result<()> {
    // Checked as float32, what the model computes in: 1e39 is finite as a float64 only.
    let bad_value = |v: &f64| !(*v as f32).is_finite();
    let Some(i) = values.iter().position(bad_value) else { return Ok(()) };
    let count = values.iter().filter(|v| bad_value(v)).count();
    Err(bad(
        what_file,
        format!(
            "value {} at flat index {i} is not finite ({count} such values); accepted: finite {what} values",
            values[i]
        ),
    ))
}

/// The method spec from `--method`, `--layer` and `--set` (a TOML table with `method = ID`).
fn method_spec(job: &AttributeJob) -> Result<MethodSpec> {
    let mut table = toml::Table::new();
    table.insert("method".into(), toml::Value::String(job.method.clone()));
    if let Some(layer) = &job.layer {
        table.insert("layer".into(), toml::Value::String(layer.clone()));
    }
    for assignment in &job.params {
        sanity_rundir::overrides::apply(&mut table, assignment)?;
    }
    method_of(table, "--method/--layer/--set")
}

/// A method spec from its table (`method = ID` and the method's parameters); `what` names the
/// table's source in errors.
pub fn method_of(table: toml::Table, what: &str) -> Result<MethodSpec> {
    MethodSpec::deserialize(toml::Value::Table(table))
        .map_err(|e| ExperimentError::config(what, sanity_rundir::diagnostics::with_suggestion(e.to_string())))
}

/// The images of an array read from NPY: float32 or float64 `[n, c, h, w]`, every value finite
/// (`what` names the array in errors: a file or an argument).
pub fn images_of(array: NpyArray, what: &str) -> Result<Maps> {
    let dims = <[usize; 4]>::try_from(array.shape.as_slice())
        .map_err(|_| bad(what, format!("shape {:?}; accepted: [n, c, h, w]", array.shape)))?;
    if array.is_integer() {
        return Err(bad(what, format!("dtype {}; accepted: float32 or float64", array.dtype)));
    }
    if dims.contains(&0) {
        return Err(bad(what, format!("shape {dims:?}; accepted: [n, c, h, w], none of them 0")));
    }
    finite_values(&array.values, what, "image")?;
    Ok(Maps { values: array.values.iter().map(|&v| v as f32).collect(), dims })
}

/// A model loaded for attribution: the network with its weights, the images it takes, and
/// how messages name it.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    /// The network and its weights.
    pub model: NetModel,
    /// The image shape `[c, h, w]` it takes.
    pub input: [usize; 3],
    /// Its name in messages: the ONNX file, or "the architecture `NAME`".
    pub name: String,
}

impl LoadedModel {
    /// Refuses images of another shape than the model takes (`images` names them).
    pub fn check_input(&self, input: [usize; 3], images: &str) -> Result<()> {
        match input == self.input {
            true => Ok(()),
            false => Err(bad(images, format!("images of shape {input:?}, but {} takes {:?}", self.name, self.input))),
        }
    }
}

/// Loads the model of a job for images of shape `input` (`images` names them in errors).
/// Without `input`, an ONNX file or an architecture TOML takes the shape it declares; a preset
/// needs it.
pub fn load_model(model: &JobModel, input: Option<[usize; 3]>, images: &str) -> Result<LoadedModel> {
    let loaded = match model {
        JobModel::Onnx(path) => {
            let imported = read_onnx(path)?;
            let takes = imported.graph.input;
            let model = NetModel::new(Net::Graph(Arc::new(imported.graph)), imported.weights);
            LoadedModel { model, input: takes, name: path.display().to_string() }
        }
        JobModel::Sequential { arch: arch_name, weights } => {
            let spec = match (PRESETS.contains(&arch_name.as_str()), input) {
                (true, Some(input)) => preset(arch_name, input)?,
                (true, None) => {
                    let why = format!("missing for the preset `{arch_name}`; accepted: the images' shape [c, h, w]");
                    return Err(bad("input", why));
                }
                (false, _) => ArchitectureSpec::from_toml_file(Path::new(arch_name))?,
            };
            let takes = spec.input;
            let arch = Arc::new(Architecture::new(spec)?);
            let model = NetModel::new(Net::Layers(arch.clone()), Weights::load_safetensors(weights, &arch)?);
            LoadedModel { model, input: takes, name: format!("the architecture `{arch_name}`") }
        }
    };
    if let Some(input) = input {
        loaded.check_input(input, images)?;
    }
    Ok(loaded)
}

/// The explained outputs asked for.
#[derive(Debug, Clone)]
pub enum Targets {
    /// This output for every image.
    All(usize),
    /// One output per image: an integer array read from NPY, and its name for errors.
    PerImage(NpyArray, String),
    /// The model's prediction for each image.
    Predicted,
}

/// Computes the maps of `job` and writes them to `out` (NPY float32 `[n, c', h, w]`).
/// Returns the targets used (the model's predictions when none are given).
pub fn attribute_to_npy(job: &AttributeJob, out: &Path) -> Result<Vec<usize>> {
    let input_name = job.input.display().to_string();
    let images = images_of(read_array(&input_name)?, &input_name)?;
    let [_, c, h, w] = images.dims;
    let model = load_model(&job.model, Some([c, h, w]), &input_name)?.model;
    let targets = match (&job.target, &job.targets) {
        (Some(t), None) => Targets::All(*t),
        (None, Some(path)) => {
            let shown = path.display().to_string();
            Targets::PerImage(read_array(&shown)?, shown)
        }
        (None, None) => Targets::Predicted,
        (Some(_), Some(_)) => return Err(bad(&input_name, "give --target or --targets, not both".into())),
    };
    let references = match &job.references {
        Some(path) => {
            let shown = path.display().to_string();
            Some(references_of(read_array(&shown)?, &shown, [c, h, w])?)
        }
        None => None,
    };
    let spec = method_spec(job)?;
    let (maps, targets) = attribute(&model, images, &spec, &targets, references.as_ref(), job.batch)?;
    std::fs::write(out, sanity_data::npy::f32_npy(&maps.dims, &maps.values))
        .map_err(|e| ExperimentError::io(out, e))?;
    Ok(targets)
}

/// One method's maps of `images` (`[n, c', h, w]`) under `model`, `batch` images per call, and
/// the targets explained.
pub fn attribute(
    model: &NetModel,
    images: Maps,
    spec: &MethodSpec,
    targets: &Targets,
    references: Option<&ReferenceSet>,
    batch: usize,
) -> Result<(Maps, Vec<usize>)> {
    let [n, c, h, w] = images.dims;
    let outputs = model.net.num_outputs();
    let targets =
        resolve_targets(targets, n, outputs, || Ok(predicted_targets(&model.logits(&images.values, n)?, outputs)))?;
    let method = NetMethod::build(spec, &model.net, 0, references)?;
    let x = Tensor::from_vec(images.values, (n, c, h, w), &Device::Cpu)?;
    let maps = method.attribute_batches(model, &x, &targets, batch)?;
    let dims = <[usize; 4]>::try_from(maps.dims()).map_err(|_| bad("maps", format!("shape {:?}", maps.dims())))?;
    Ok((Maps { values: maps.flatten_all()?.to_vec1::<f32>()?, dims }, targets))
}

/// The explained output of each of `n` images of a model with `outputs` outputs: one for all,
/// one per image, or the model's predictions (`predict`). A single-logit binary model takes
/// either class and explains its one logit for both (as a run does).
fn resolve_targets(
    targets: &Targets,
    n: usize,
    outputs: usize,
    predict: impl FnOnce() -> Result<Vec<usize>>,
) -> Result<Vec<usize>> {
    let classes = outputs.max(2);
    Ok(match targets {
        Targets::All(t) if *t >= classes => {
            return Err(bad("--target", format!("{t} is out of range; accepted: 0..{classes} (the model's outputs)")));
        }
        Targets::All(t) => vec![*t; n],
        Targets::PerImage(array, what) => {
            let values = &array.values;
            if values.len() != n {
                return Err(bad(
                    what,
                    format!(
                        "{} targets for {n} images; accepted: {n} integers in 0..{classes}, one per image",
                        values.len()
                    ),
                ));
            }
            if let Some(i) = values.iter().position(|&v| !(v >= 0.0 && v.fract() == 0.0 && v < classes as f64)) {
                return Err(bad(
                    what,
                    format!(
                        "target {} at index {i}; accepted: integers in 0..{classes} (the model's outputs)",
                        values[i]
                    ),
                ));
            }
            values.iter().map(|&v| v as usize).collect()
        }
        Targets::Predicted => predict()?,
    })
    .map(|targets| if outputs == 1 { vec![0; n] } else { targets })
}

/// Expected gradients' reference images: an array of the input's `[c, h, w]` (`what` names it).
pub fn references_of(r: NpyArray, what: &str, [c, h, w]: [usize; 3]) -> Result<ReferenceSet> {
    match *r.shape.as_slice() {
        [m, rc, rh, rw] if [rc, rh, rw] == [c, h, w] && m > 0 => {
            finite_values(&r.values, what, "reference image")?;
            let values: Vec<f32> = r.values.iter().map(|&v| v as f32).collect();
            Ok(ReferenceSet::from_tensor(&Tensor::from_vec(values, (m, rc, rh, rw), &Device::Cpu)?)?)
        }
        _ => Err(bad(what, format!("shape {:?}; accepted: [m, {c}, {h}, {w}] like the input", r.shape))),
    }
}
