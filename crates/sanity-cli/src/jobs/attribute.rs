//! `sanity attribute`: raw maps of one method for the images of an NPY file, written as NPY,
//! so that anyone can cross-check the maps from Python.

use super::JobModel;
use candle_core::{Device, Tensor};
use sanity_attribution::{MethodSpec, NetMethod, ReferenceSet};
use sanity_data::npy::read_array;
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

fn bad(file: &Path, message: String) -> ExperimentError {
    ExperimentError::config(file.display().to_string(), message)
}

/// Refuses NaN and infinite values (as float32), naming the first one's flat index and how
/// many there are.
fn finite_values(values: &[f64], path: &Path, what: &str) -> Result<()> {
    // Checked as float32, what the model computes in: 1e39 is finite as a float64 only.
    let bad_value = |v: &f64| !(*v as f32).is_finite();
    let Some(i) = values.iter().position(bad_value) else { return Ok(()) };
    let count = values.iter().filter(|v| bad_value(v)).count();
    Err(bad(
        path,
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
    MethodSpec::deserialize(toml::Value::Table(table)).map_err(|e| {
        ExperimentError::config("--method/--layer/--set", sanity_rundir::diagnostics::with_suggestion(e.to_string()))
    })
}

/// Computes the maps of `job` and writes them to `out` (NPY float32 `[n, c', h, w]`).
/// Returns the targets used (the model's predictions when none are given).
pub fn attribute_to_npy(job: &AttributeJob, out: &Path) -> Result<Vec<usize>> {
    let images = read_array(&job.input.display().to_string())?;
    let [n, c, h, w] = <[usize; 4]>::try_from(images.shape.as_slice())
        .map_err(|_| bad(&job.input, format!("shape {:?}; accepted: [n, c, h, w]", images.shape)))?;
    if images.is_integer() {
        return Err(bad(&job.input, format!("dtype {}; accepted: float32 or float64", images.dtype)));
    }
    finite_values(&images.values, &job.input, "image")?;
    let values: Vec<f32> = images.values.iter().map(|&v| v as f32).collect();
    let input = [c, h, w];
    let model = match &job.model {
        JobModel::Onnx(path) => {
            let imported = read_onnx(path)?;
            if imported.graph.input != input {
                let takes = imported.graph.input;
                return Err(bad(
                    &job.input,
                    format!("images of shape {input:?}, but {} takes {takes:?}", path.display()),
                ));
            }
            NetModel::new(Net::Graph(Arc::new(imported.graph)), imported.weights)
        }
        JobModel::Sequential { arch: arch_name, weights } => {
            let spec = if PRESETS.contains(&arch_name.as_str()) {
                preset(arch_name, input)?
            } else {
                ArchitectureSpec::from_toml_file(Path::new(arch_name))?
            };
            if spec.input != input {
                return Err(bad(
                    &job.input,
                    format!("images of shape {input:?}, but the architecture `{arch_name}` takes {:?}", spec.input),
                ));
            }
            let arch = Arc::new(Architecture::new(spec)?);
            NetModel::new(Net::Layers(arch.clone()), Weights::load_safetensors(weights, &arch)?)
        }
    };
    let outputs = model.net.num_outputs();
    let targets = targets(job, n, outputs, || Ok(predicted_targets(&model.logits(&values, n)?, outputs)))?;
    let references = match &job.references {
        Some(path) => Some(references(path, input)?),
        None => None,
    };
    let method = NetMethod::build(&method_spec(job)?, &model.net, 0, references.as_ref())?;
    let x = Tensor::from_vec(values, (n, c, h, w), &Device::Cpu)?;
    let maps = method.attribute_batches(&model, &x, &targets, job.batch)?;
    let values = maps.flatten_all()?.to_vec1::<f32>()?;
    std::fs::write(out, sanity_data::npy::f32_npy(maps.dims(), &values)).map_err(|e| ExperimentError::io(out, e))?;
    Ok(targets)
}

/// The explained output of each of `n` images of a model with `outputs` outputs: `--target`
/// for all, `--targets` (one per image), or the model's predictions (`predict`).
fn targets(
    job: &AttributeJob,
    n: usize,
    outputs: usize,
    predict: impl FnOnce() -> Result<Vec<usize>>,
) -> Result<Vec<usize>> {
    // A single-logit binary model explains its logit for either class.
    let classes = outputs.max(2);
    Ok(match (&job.target, &job.targets) {
        (Some(t), None) if *t >= classes => {
            return Err(bad(
                Path::new("--target"),
                format!("{t} is out of range; accepted: 0..{classes} (the model's outputs)"),
            ));
        }
        (Some(t), None) => vec![*t; n],
        (None, Some(path)) => {
            let values = read_array(&path.display().to_string())?.values;
            if values.len() != n {
                return Err(bad(
                    path,
                    format!(
                        "{} targets for {n} images; accepted: {n} integers in 0..{classes}, one per image",
                        values.len()
                    ),
                ));
            }
            if let Some(i) = values.iter().position(|&v| !(v >= 0.0 && v.fract() == 0.0 && v < classes as f64)) {
                return Err(bad(
                    path,
                    format!(
                        "target {} at index {i}; accepted: integers in 0..{classes} (the model's outputs)",
                        values[i]
                    ),
                ));
            }
            values.into_iter().map(|v| v as usize).collect()
        }
        (None, None) => predict()?,
        (Some(_), Some(_)) => return Err(bad(&job.input, "give --target or --targets, not both".into())),
    })
}

/// `--references`: expected gradients' reference images at `path`, of the input's `[c, h, w]`.
fn references(path: &Path, [c, h, w]: [usize; 3]) -> Result<ReferenceSet> {
    let r = read_array(&path.display().to_string())?;
    match *r.shape.as_slice() {
        [m, rc, rh, rw] if [rc, rh, rw] == [c, h, w] => {
            finite_values(&r.values, path, "reference image")?;
            let values: Vec<f32> = r.values.iter().map(|&v| v as f32).collect();
            Ok(ReferenceSet::from_tensor(&Tensor::from_vec(values, (m, rc, rh, rw), &Device::Cpu)?)?)
        }
        _ => Err(bad(path, format!("shape {:?}; accepted: [m, {c}, {h}, {w}] like the input", r.shape))),
    }
}
