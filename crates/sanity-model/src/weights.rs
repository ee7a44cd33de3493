//! Weights as values: a deterministic map from PyTorch parameter names (`conv1.weight`
//! `[out, in, kh, kw]`, `fc1.weight` `[out, in]`, `*.bias`) to tensors, with safetensors I/O.

use crate::architecture::Architecture;
use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// A model's parameters by PyTorch name, in sorted order. Cloning is cheap (tensors are
/// reference counted) and never aliases a trained `Var`: weights are replaced, not mutated.
#[derive(Debug, Clone, Default)]
pub struct Weights {
    tensors: BTreeMap<String, Tensor>,
}

impl Weights {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The tensor called `name` (e.g. `conv1.weight`).
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors.get(name).ok_or_else(|| ModelError::UnknownLayer {
            name: name.to_string(),
            available: self.tensors.keys().cloned().collect::<Vec<_>>().join(", "),
        })
    }

    /// Sets (or replaces) one tensor.
    pub fn insert(&mut self, name: impl Into<String>, tensor: Tensor) {
        self.tensors.insert(name.into(), tensor);
    }

    /// All `(name, tensor)` pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Tensor)> {
        self.tensors.iter()
    }

    /// Number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True when there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The same weights converted to `dtype`.
    pub fn to_dtype(&self, dtype: DType) -> Result<Self> {
        let tensors = self.tensors.iter().map(|(k, t)| Ok((k.clone(), t.to_dtype(dtype)?))).collect::<Result<_>>()?;
        Ok(Self { tensors })
    }

    /// Writes a safetensors file atomically (temporary file, then rename).
    pub fn save_safetensors(&self, path: &Path) -> Result<()> {
        let tmp = path.with_extension("safetensors.partial");
        let map: HashMap<String, Tensor> = self.tensors.clone().into_iter().collect();
        candle_core::safetensors::save(&map, &tmp)
            .map_err(|e| ModelError::Weights { path: tmp.display().to_string(), reason: e.to_string() })?;
        std::fs::rename(&tmp, path).map_err(|source| ModelError::Io { path: path.display().to_string(), source })
    }

    /// Reads a safetensors file and checks it against `arch`: exactly the expected names, shapes
    /// and a float dtype (converted to f32); anything else is refused with what was expected.
    pub fn load_safetensors(path: &Path, arch: &Architecture) -> Result<Self> {
        let fail = |reason: String| ModelError::Weights { path: path.display().to_string(), reason };
        let loaded = candle_core::safetensors::load(path, &Device::Cpu).map_err(|e| fail(e.to_string()))?;
        let expected = expected_shapes(arch);
        // PyTorch's batch-norm step counter: not used here (momentum is always given).
        let counters: Vec<String> = arch
            .layers
            .iter()
            .filter(|l| !l.op.buffers().is_empty())
            .map(|l| format!("{}.num_batches_tracked", l.name))
            .collect();
        let missing: Vec<_> = expected.keys().filter(|k| !loaded.contains_key(*k)).cloned().collect();
        let mut unexpected: Vec<_> =
            loaded.keys().filter(|k| !expected.contains_key(*k) && !counters.contains(k)).cloned().collect();
        unexpected.sort();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(fail(format!(
                "names do not match the architecture; missing: [{}], unexpected: [{}]; expected: {}",
                missing.join(", "),
                unexpected.join(", "),
                describe(&expected)
            )));
        }
        let mut weights = Self::new();
        for (name, shape) in &expected {
            let t = &loaded[name];
            if t.dims() != shape.as_slice() {
                return Err(fail(format!("`{name}` has shape {:?}, expected {shape:?}", t.dims())));
            }
            if !matches!(t.dtype(), DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
                return Err(fail(format!("`{name}` has dtype {:?}, expected a float type", t.dtype())));
            }
            weights.insert(name.clone(), t.to_dtype(DType::F32)?);
        }
        Ok(weights)
    }
}

/// The parameter and buffer names and shapes an architecture expects.
pub fn expected_shapes(arch: &Architecture) -> BTreeMap<String, Vec<usize>> {
    let mut out = BTreeMap::new();
    for layer in &arch.layers {
        if let Some((w, b, _, _)) = layer.op.parameter_shapes() {
            out.insert(format!("{}.weight", layer.name), w);
            for (what, _) in layer.op.buffers() {
                out.insert(format!("{}.{what}", layer.name), b.clone());
            }
            out.insert(format!("{}.bias", layer.name), b);
        }
    }
    out
}

fn describe(shapes: &BTreeMap<String, Vec<usize>>) -> String {
    shapes.iter().map(|(k, s)| format!("{k} {s:?}")).collect::<Vec<_>>().join(", ")
}
