//! The example images of a run and their raw maps under every model (`maps/` of a run
//! directory), kept for the figures of `sanity report`:
//!
//! ```text
//! maps/examples.csv                                   sample, label, target, prediction, probability
//! maps/image-0003/input.npy                           the image, float32 [c, h, w]
//! maps/image-0003/original.gradient.npy               a raw map, float32 [c, h, w]
//! maps/image-0003/cascading.top_down.fc1.gradient.npy
//! maps/image-0003/original.gradient.smoothed.npy      smooth MPRT's noise-tunnel maps
//! ```
//!
//! A model's name is its slot name (the run engine's `units::Slot::name`).

use crate::error::{ExperimentError, Result};
use crate::rows::RowWriter;
use sanity_metrics::Map;
use sanity_model::train::classes_of;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The directory of example maps inside a run directory.
pub const MAPS_DIR: &str = "maps";
/// The example index inside [`MAPS_DIR`].
pub const EXAMPLES_CSV: &str = "examples.csv";

/// One example image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// Index in the test set (the `sample` column of scores.csv).
    pub sample: usize,
    /// True label.
    pub label: usize,
    /// The output explained under the trained model.
    pub target: usize,
    /// The trained model's predicted class (for one logit: 1 when the logit is > 0).
    pub prediction: usize,
    /// The trained model's probability of its prediction (softmax; sigmoid for one logit).
    pub probability: f64,
    /// The true label's class name, where the data names its classes (empty otherwise, and
    /// in files written before names).
    #[serde(default)]
    pub label_name: String,
    /// The predicted class's name, likewise.
    #[serde(default)]
    pub prediction_name: String,
}

impl Example {
    /// The true class as figures show it: its name, else its index.
    pub fn label_shown(&self) -> String {
        if self.label_name.is_empty() { self.label.to_string() } else { self.label_name.clone() }
    }

    /// The predicted class as figures show it.
    pub fn prediction_shown(&self) -> String {
        if self.prediction_name.is_empty() { self.prediction.to_string() } else { self.prediction_name.clone() }
    }
}

/// The logistic function, a one-logit model's probability of class 1.
pub fn sigmoid(z: f64) -> f64 {
    1.0 / (1.0 + (-z).exp())
}

/// The prediction (the class [`classes_of`] gives, as the explained `original_prediction`)
/// and its probability from one image's logits.
pub fn prediction_of(logits: &[f32]) -> (usize, f64) {
    let class = classes_of(logits, logits.len().max(1)).first().copied().unwrap_or(0);
    let probability = match logits {
        [z] => {
            let p = sigmoid(f64::from(*z));
            if class == 1 { p } else { 1.0 - p }
        }
        _ => {
            let max = logits.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let sum: f64 = logits.iter().map(|&z| f64::from(z - max).exp()).sum();
            1.0 / sum
        }
    };
    (class, probability)
}

/// The directory of one example image.
pub fn image_dir(run_dir: &Path, sample: usize) -> PathBuf {
    run_dir.join(MAPS_DIR).join(format!("image-{sample:04}"))
}

/// The file name of a model's raw map of a method (`smoothed`: smooth MPRT's noise tunnel).
pub fn map_file(slot: &str, method: &str, smoothed: bool) -> String {
    format!("{slot}.{method}{}.npy", if smoothed { ".smoothed" } else { "" })
}

/// Writes `maps/examples.csv` and each example's `input.npy`.
pub fn write_examples(run_dir: &Path, examples: &[(Example, Map)]) -> Result<()> {
    let dir = run_dir.join(MAPS_DIR);
    std::fs::create_dir_all(&dir).map_err(|e| ExperimentError::io(&dir, e))?;
    for (example, image) in examples {
        write_map(&image_dir(run_dir, example.sample).join("input.npy"), image)?;
    }
    let mut csv = RowWriter::create(&dir.join(EXAMPLES_CSV))?;
    csv.write(&examples.iter().map(|(example, _)| example).collect::<Vec<_>>())?;
    csv.finish()
}

/// An example image's ground-truth mask, `[1, h, w]` of 0/1, beside its `input.npy` (images
/// whose mask holds the object only).
pub const MASK_FILE: &str = "mask.npy";

/// Writes `map` as NPY float32 `[c, h, w]` (atomically), creating its directory.
pub fn write_map(path: &Path, map: &Map) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| ExperimentError::io(parent, e))?;
    }
    let partial = path.with_extension("npy.partial");
    std::fs::write(&partial, sanity_data::npy::f32_npy(&map.shape, &map.data))
        .map_err(|e| ExperimentError::io(&partial, e))?;
    std::fs::rename(&partial, path).map_err(|e| ExperimentError::io(path, e))
}

/// Reads a map written by [`write_map`] (or any NPY of 2 or 3 dimensions: `[h, w]` is one
/// channel).
pub fn read_map(path: &Path) -> Result<Map> {
    let bytes = std::fs::read(path).map_err(|e| ExperimentError::io(path, e))?;
    let array = sanity_data::npy::parse_npy(&bytes, &path.display().to_string())?;
    let shape = match *array.shape.as_slice() {
        [c, h, w] => [c, h, w],
        [h, w] => [1, h, w],
        ref other => {
            return Err(ExperimentError::config(
                path.display().to_string(),
                format!("a map of shape {other:?}; accepted: [c, h, w] or [h, w]"),
            ));
        }
    };
    Ok(Map::new(array.values.iter().map(|&v| v as f32).collect(), shape))
}

/// Reads `maps/examples.csv` of a run directory; an empty list when the run kept no examples.
pub fn read_examples(run_dir: &Path) -> Result<Vec<Example>> {
    let path = run_dir.join(MAPS_DIR).join(EXAMPLES_CSV);
    if !path.exists() {
        return Ok(Vec::new());
    }
    RowWriter::read(&path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Maps are written in one call now, byte for byte as candle's `write_npy` wrote them, and
    /// read back as written.
    #[test]
    fn a_map_file_has_the_bytes_candle_wrote() {
        let dir = tempfile::tempdir().expect("tmp");
        for shape in [[3, 224, 224], [1, 5, 7], [1, 1, 1]] {
            let data: Vec<f32> = (0..shape.iter().product::<usize>()).map(|i| i as f32 * 0.37 - 5.0).collect();
            let map = Map::new(data.clone(), shape);
            let ours = dir.path().join("ours.npy");
            write_map(&ours, &map).expect("write");
            let candle = dir.path().join("candle.npy");
            candle_core::Tensor::from_slice(&data, shape.as_slice(), &candle_core::Device::Cpu)
                .and_then(|t| t.write_npy(&candle))
                .expect("candle");
            assert_eq!(std::fs::read(&ours).expect("ours"), std::fs::read(&candle).expect("candle"), "{shape:?}");
            assert_eq!(read_map(&ours).expect("read"), map);
        }
    }

    #[test]
    fn predictions_from_softmax_and_sigmoid() {
        let (class, p) = prediction_of(&[0.0, 2.0, 0.0]);
        assert_eq!(class, 1);
        let e2 = 2f64.exp();
        assert!((p - e2 / (e2 + 2.0)).abs() < 1e-9);
        // A zero logit is class 0, as `classes_of` decides the explained prediction.
        assert_eq!(prediction_of(&[0.0]), (0, 0.5));
        let (class, p) = prediction_of(&[-2.0]);
        assert_eq!(class, 0);
        assert!((p - (1.0 - 1.0 / (1.0 + 2f64.exp()))).abs() < 1e-9);
    }

    #[test]
    fn maps_and_examples_round_trip() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| ExperimentError::io(Path::new("tmp"), e))?;
        let image = Map::new((0..12).map(|v| v as f32).collect(), [1, 3, 4]);
        let example = Example {
            sample: 7,
            label: 2,
            target: 2,
            prediction: 3,
            probability: 0.25,
            label_name: "Pullover".into(),
            prediction_name: "Dress".into(),
        };
        write_examples(dir.path(), &[(example.clone(), image.clone())])?;
        assert_eq!(read_examples(dir.path())?, vec![example]);
        assert_eq!(read_map(&image_dir(dir.path(), 7).join("input.npy"))?, image);
        Ok(())
    }
}
