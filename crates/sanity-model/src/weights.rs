//! Weights as values: a deterministic map from PyTorch parameter names (`conv1.weight`
//! `[out, in, kh, kw]`, `fc1.weight` `[out, in]`, `*.bias`) to tensors, with safetensors I/O.

use crate::architecture::Architecture;
use crate::error::{ModelError, Result};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::Path;

/// A model's parameters by PyTorch name, in sorted order. Cloning is cheap (tensors are
/// reference counted); weights are replaced, not mutated.
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

    /// Reads a safetensors file and checks it against `arch`, as
    /// [`Weights::from_safetensors_bytes`] does. A file longer than any file for `arch` can be
    /// ([`max_safetensors_bytes`]) is refused before it is read; every error, a missing or
    /// unreadable file included, is a [`ModelError::Weights`] or
    /// [`ModelError::NonFiniteWeights`] naming the file.
    pub fn load_safetensors(path: &Path, arch: &Architecture) -> Result<Self> {
        Self::load_expecting(path, &Expected::of_architecture(arch))
    }

    /// [`Weights::load_safetensors`] for a model graph: its layers' parameters and buffers by
    /// name (`layer1.0.bn1.running_mean`), as a PyTorch `state_dict` saves them.
    pub fn load_for_graph(path: &Path, graph: &crate::graph::Graph) -> Result<Self> {
        Self::load_expecting(path, &Expected::of_graph(graph))
    }

    fn load_expecting(path: &Path, expected: &Expected) -> Result<Self> {
        let shown = path.display().to_string();
        let fail = |reason: String| ModelError::Weights { path: shown.clone(), reason };
        let limit = expected.max_bytes();
        let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
        let too_long = |len: u64| {
            fail(format!(
                "{len} bytes, more than any weights file for this architecture ({limit} bytes: a header of at most \
                 {MAX_SAFETENSORS_HEADER_BYTES} bytes and its {} tensors as f64); another model's weights?",
                expected.shapes.len()
            ))
        };
        let len = file.metadata().map_err(|e| fail(e.to_string()))?.len();
        if len > limit {
            return Err(too_long(len));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
        // `take`: the file may have grown since its length was read.
        file.take(limit + 1).read_to_end(&mut bytes).map_err(|e| fail(e.to_string()))?;
        if bytes.len() as u64 > limit {
            return Err(too_long(bytes.len() as u64));
        }
        Self::from_bytes_expecting(&bytes, &shown, expected)
    }

    /// Parses the bytes of a safetensors file and checks them against `arch`: exactly the
    /// expected names (PyTorch's `*.num_batches_tracked` counters of batch norms are accepted
    /// and ignored), shapes and a float dtype (converted to f32), every value finite as f32.
    /// `source` names the bytes in errors (the file name).
    ///
    /// The header is checked before anything is allocated by its word: its length (at most
    /// [`MAX_SAFETENSORS_HEADER_BYTES`], within the bytes), then every tensor's offsets and
    /// `shape × dtype size` against the data (by the safetensors crate, with checked
    /// arithmetic). Only the expected tensors are converted.
    ///
    /// # Errors
    /// [`ModelError::Weights`] for a damaged or lying file or one for another architecture, with
    /// what was expected; [`ModelError::NonFiniteWeights`] for NaN or ±Inf, naming the tensor.
    pub fn from_safetensors_bytes(bytes: &[u8], source: &str, arch: &Architecture) -> Result<Self> {
        Self::from_bytes_expecting(bytes, source, &Expected::of_architecture(arch))
    }

    /// [`Weights::from_safetensors_bytes`] for a graph's layers.
    pub fn from_safetensors_bytes_for_graph(bytes: &[u8], source: &str, graph: &crate::graph::Graph) -> Result<Self> {
        Self::from_bytes_expecting(bytes, source, &Expected::of_graph(graph))
    }

    fn from_bytes_expecting(bytes: &[u8], source: &str, expected: &Expected) -> Result<Self> {
        let fail = |reason: String| ModelError::Weights { path: source.to_string(), reason };
        check_safetensors_sizes(bytes, expected).map_err(fail)?;
        let file = candle_core::safetensors::SliceSafetensors::new(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
        let (counters, expected) = (&expected.counters, &expected.shapes);
        let present: HashSet<String> = file.tensors().into_iter().map(|(name, _)| name).collect();
        let missing: Vec<_> = expected.keys().filter(|k| !present.contains(*k)).cloned().collect();
        let mut unexpected: Vec<_> =
            present.iter().filter(|k| !expected.contains_key(*k) && !counters.contains(*k)).cloned().collect();
        unexpected.sort();
        if !missing.is_empty() || !unexpected.is_empty() {
            return Err(fail(format!(
                "names do not match the architecture; missing: [{}], unexpected: [{}]; expected: {}",
                missing.join(", "),
                list_some(&unexpected),
                describe(expected)
            )));
        }
        let mut weights = Self::new();
        for (name, shape) in expected {
            let view = file.get(name).map_err(|e| fail(format!("`{name}`: {e}")))?;
            if view.shape() != shape.as_slice() {
                return Err(fail(format!("`{name}` has shape {:?}, expected {shape:?}", view.shape())));
            }
            let t = file
                .load(name, &Device::Cpu)
                .map_err(|e| fail(format!("`{name}` cannot be read ({e}); expected a float type")))?;
            if !matches!(t.dtype(), DType::F32 | DType::F64 | DType::F16 | DType::BF16) {
                return Err(fail(format!("`{name}` has dtype {:?}, expected a float type", t.dtype())));
            }
            let t = t.to_dtype(DType::F32)?;
            let values = t.flatten_all()?.to_vec1::<f32>()?;
            let mut bad = values.iter().enumerate().filter(|(_, v)| !v.is_finite());
            if let Some((first, _)) = bad.next() {
                return Err(ModelError::NonFiniteWeights {
                    path: source.to_string(),
                    tensor: name.clone(),
                    count: 1 + bad.count(),
                    total: values.len(),
                    first,
                });
            }
            weights.insert(name.clone(), t);
        }
        Ok(weights)
    }
}

/// A safetensors header is at most this long: 100 MB, the bound of the safetensors crate
/// itself. A file of ours has a header of about 100 bytes per tensor.
pub const MAX_SAFETENSORS_HEADER_BYTES: u64 = 100_000_000;

/// The longest weights file `arch` can have: the 8-byte header length, a header of at most
/// [`MAX_SAFETENSORS_HEADER_BYTES`], every expected tensor as f64 and an 8-byte
/// `num_batches_tracked` counter per batch norm. At most about 2.2 GB, since
/// [`crate::architecture::MAX_PARAMETERS`] bounds the tensors.
pub fn max_safetensors_bytes(arch: &Architecture) -> u64 {
    Expected::of_architecture(arch).max_bytes()
}

/// What a weights file must hold: every parameter and buffer by name with its shape, and the
/// batch norms' `num_batches_tracked` counters PyTorch saves beside them (accepted, not used:
/// momentum is always given).
pub struct Expected {
    /// Name to shape.
    pub shapes: BTreeMap<String, Vec<usize>>,
    /// The counters a file may also hold.
    pub counters: HashSet<String>,
}

impl Expected {
    /// What `arch` expects.
    pub fn of_architecture(arch: &Architecture) -> Self {
        let counters = arch
            .layers
            .iter()
            .filter(|l| !l.op.buffers().is_empty())
            .map(|l| format!("{}.num_batches_tracked", l.name))
            .collect();
        Self { shapes: expected_shapes(arch), counters }
    }

    /// What a model graph expects.
    pub fn of_graph(graph: &crate::graph::Graph) -> Self {
        let counters = graph
            .layers()
            .filter(|n| matches!(n.op, crate::graph::GraphOp::BatchNorm { .. }))
            .map(|n| format!("{}.num_batches_tracked", n.name))
            .collect();
        Self { shapes: graph.parameter_shapes().into_iter().collect(), counters }
    }

    /// The longest file that can hold them: the 8-byte header length, a header of at most
    /// [`MAX_SAFETENSORS_HEADER_BYTES`], every tensor as f64 and an 8-byte counter each.
    pub fn max_bytes(&self) -> u64 {
        let values: u64 = self.shapes.values().map(|s| s.iter().product::<usize>() as u64).sum();
        8 + MAX_SAFETENSORS_HEADER_BYTES + 8 * (values + self.counters.len() as u64)
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

/// At most 20 names, then how many more (a header can list millions).
fn list_some(names: &[String]) -> String {
    const SHOWN: usize = 20;
    let mut out = names.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(", … and {} more", names.len() - SHOWN));
    }
    out
}

fn describe(shapes: &BTreeMap<String, Vec<usize>>) -> String {
    shapes.iter().map(|(k, s)| format!("{k} {s:?}")).collect::<Vec<_>>().join(", ")
}
/// Refuses a safetensors file whose sizes cannot be right for `arch`: too short for its header
/// length, a header over [`MAX_SAFETENSORS_HEADER_BYTES`] or longer than the file, or more
/// tensor data than the architecture's tensors take as f64. Says why.
fn check_safetensors_sizes(bytes: &[u8], expected: &Expected) -> std::result::Result<(), String> {
    let Some(&length) = bytes.first_chunk::<8>() else {
        return Err(format!(
            "{} bytes, too short for the 8-byte header length; accepted: a safetensors file",
            bytes.len()
        ));
    };
    let header = u64::from_le_bytes(length);
    if header > MAX_SAFETENSORS_HEADER_BYTES {
        return Err(format!(
            "a header of {header} bytes; accepted: at most {MAX_SAFETENSORS_HEADER_BYTES} (damaged or not a \
             safetensors file?)"
        ));
    }
    let after = bytes.len() as u64 - 8;
    if header > after {
        return Err(format!(
            "a header of {header} bytes, but only {after} bytes follow the header length (truncated?)"
        ));
    }
    let data = after - header;
    let data_limit = expected.max_bytes() - 8 - MAX_SAFETENSORS_HEADER_BYTES;
    if data > data_limit {
        return Err(format!(
            "{data} bytes of tensor data, more than this architecture's {} tensors take as f64 ({data_limit} \
             bytes); another model's weights?",
            expected.shapes.len()
        ));
    }
    Ok(())
}
