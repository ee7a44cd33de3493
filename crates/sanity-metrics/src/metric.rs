//! Metric choice (as written in configs) and the outcome of one comparison.

use crate::map::Map;
use crate::rank::spearman;
use crate::ssim::{SsimParams, ssim};
use serde::{Deserialize, Serialize};

/// Why a comparison has no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A map is constant (zero variance), so a correlation or normalisation is undefined.
    ConstantMap,
    /// A map holds NaN or an infinity.
    NonFinite,
    /// The two maps differ in shape.
    ShapeMismatch,
    /// The maps are smaller than the metric's window or hold fewer than two values.
    TooSmall,
}

impl Status {
    /// The value of the `status` CSV column.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::ConstantMap => "constant_map",
            Status::NonFinite => "non_finite",
            Status::ShapeMismatch => "shape_mismatch",
            Status::TooSmall => "too_small",
        }
    }
}

/// A metric value, or the status that says why there is none.
pub type Score = Result<f64, Status>;

/// A similarity metric and its parameters (`metric = "spearman"`, ...).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "metric", rename_all = "snake_case", deny_unknown_fields)]
pub enum MetricSpec {
    /// Spearman's rank correlation over all values (average ranks for ties, as scipy).
    Spearman {},
    /// Mean structural similarity, scikit-image's `structural_similarity`.
    Ssim(SsimParams),
}

impl MetricSpec {
    /// The id used in CSV files.
    pub fn id(&self) -> &'static str {
        match self {
            MetricSpec::Spearman {} => "spearman",
            MetricSpec::Ssim(_) => "ssim",
        }
    }

    /// Checks the parameters; the message says what is accepted.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            MetricSpec::Spearman {} => Ok(()),
            MetricSpec::Ssim(p) => p.validate(),
        }
    }

    /// Compares two maps.
    pub fn score(&self, a: &Map, b: &Map) -> Score {
        if a.shape != b.shape {
            return Err(Status::ShapeMismatch);
        }
        match self {
            MetricSpec::Spearman {} => spearman(&a.data, &b.data),
            MetricSpec::Ssim(p) => ssim(a, b, p),
        }
    }
}
